"""Airflow DAG file: one DAG per approved dataset declaration under metadata/.

The work is in pubdata.orchestration.dag_factory; this file stays tiny so the dag processor
parses it fast (no Great Expectations, DuckDB or google clients are imported here).
"""

from pubdata.orchestration.dag_factory import build_dags

globals().update(build_dags())
