"""One task of a dataset's DAG, run the way a worker runs it: `python -m tests.support.worker`.

Reads {"step", "dataset_id", "args", "xcom", "date", "run_id"} as JSON on stdin, calls the DAG's
task callable (pubdata.orchestration.dag_factory) with an Airflow-like context whose
`ti.xcom_pull(task_ids=...)` answers from "xcom" (the earlier steps' results, as Airflow's XCom
backend would), and prints the return value as JSON on stdout, as Airflow would push it to XCom. The environment decides the
worker's home and what it shares with the others.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from types import SimpleNamespace


def main() -> None:
    request = json.load(sys.stdin)
    from pubdata.orchestration import dag_factory

    logical = dt.datetime.fromisoformat(request["date"]).replace(tzinfo=dt.UTC)
    xcom = request.get("xcom") or {}
    ti = SimpleNamespace(task_id=request["step"], try_number=1, xcom_pull=lambda task_ids: xcom.get(task_ids))
    context = {"logical_date": logical, "run_id": request["run_id"], "dag_run": SimpleNamespace(conf={}), "ti": ti}
    callable_ = getattr(dag_factory, f"_{request['step']}")
    result = callable_(*([request["dataset_id"]] if request["dataset_id"] else []), *request["args"], **context)
    sys.stdout.write("\nXCOM " + json.dumps(result) + "\n")
    sys.stdout.flush()
    os._exit(0)  # duckdb's bindings print spurious lines at interpreter teardown


if __name__ == "__main__":
    main()
