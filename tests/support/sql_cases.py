"""SQL test cases, as in bigquery-etl: fixtures in, expected rows out, for every reviewed query.

A case is a directory tests/sql/<ds>/<table>_v<N>/<case>/ holding
  <project>.<dataset>.<table>.yaml | .ndjson   input rows of a source table (project optional);
                                               columns left out are NULL, types are the
                                               production table's (JSON objects stay JSON,
                                               STRUCTs are mappings)
  query_params.yaml                            parameters bound as @name; min_bucket_size
                                               defaults to the declaration's (cases usually lower
                                               it so a handful of clients exercises the grouping)
  expect.yaml | expect.ndjson                  the rows the query must return, as they are
                                               published (dates as YYYY-MM-DD); order is ignored
A case named test_init renders the query's Jinja with `is_init()` true (a full rebuild), as
bigquery-etl's own test_init cases do; every other case renders it as a daily run.
tests/sql/test_cases.py finds every case and runs the reviewed query through the embedded DuckDB
engine (the same stage plan, transpilation, parameter binding and JSON rendering as a real run:
the pipeline's own minimum-bucket HAVING and roll-up included, at the case's min_bucket_size).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from pubdata.declarations import load_declaration
from pubdata.orchestration.tasks import query_params
from pubdata.publishing.rows import write_parts
from pubdata.sources.fixtures import (
    EXPECT_STEM,
    PARAMS_FILE,
    ROW_SUFFIXES,
    jsonable,
    load_case,
    read_rows,
    table_schemas,
)
from pubdata.sql.rewrite import plan
from pubdata.sql.template import initializing
from pubdata.stores.local import LocalStore
from pubdata.warehouses.duckdb import DuckDBWarehouse

REPO = Path(__file__).resolve().parents[2]
CASES_DIR = REPO / "tests" / "sql"
INIT_CASE = "test_init"
source_schemas = table_schemas


def discover(root: Path = CASES_DIR) -> list[Path]:
    return sorted(p for p in root.glob("*/*/*") if p.is_dir())


def _case_id(case: Path) -> str:
    return f"{case.parent.parent.name}.{case.parent.name}/{case.name}"


def load_inputs(case: Path, source: Path, schemas: dict[str, list[tuple[str, str]]]) -> list[str]:
    """Create the case's input tables in a fresh DuckDB file, with production column types
    (the loader `pubdata load` uses: pubdata.sources.fixtures)."""
    return list(load_case(case, source, schemas))


def run_case(case: Path, project: Path, schemas: dict[str, list[tuple[str, str]]], workdir: Path) -> list[dict[str, Any]]:
    """The rows the dataset's reviewed query returns on the case's inputs, as they would be published."""
    ds, stem = case.parent.parent.name, case.parent.name
    metadata = project / "metadata" / ds / f"{stem}.yaml"
    if not metadata.is_file():
        raise FileNotFoundError(f"{case}: no declaration {metadata.relative_to(project)} for this test case; "
                                f"name the case directory tests/sql/<ds>/<table>_v<N>/<case> after a declared dataset")
    decl = load_declaration(metadata, project)
    source = workdir / "source.duckdb"
    load_inputs(case, source, schemas)
    params_file = case / PARAMS_FILE
    case_params = (yaml.safe_load(params_file.read_text(encoding="utf-8")) or {}) if params_file.is_file() else {}
    day = case_params.get(decl.spec.partition_field or "submission_date")
    partition = day if isinstance(day, dt.date) else (dt.date.fromisoformat(day) if day else None)
    params = {**query_params(decl, partition if decl.spec.incremental else None), **case_params}
    spec = decl.spec
    if "min_bucket_size" in case_params:  # the case's minimum is the one the pipeline enforces
        policy = spec.policy.model_copy(update={"min_bucket_size": int(case_params["min_bucket_size"])})
        spec = spec.model_copy(update={"policy": policy})
    warehouse = DuckDBWarehouse(source, workdir / "staging")
    with initializing(case.name == INIT_CASE):
        stage_plan = plan(decl.query, spec)
    staged = warehouse.stage(decl.id, stage_plan, params, partition if decl.spec.incremental else None,
                             partition_field=decl.spec.partition_field)
    store = LocalStore(workdir / "bucket")
    with warehouse.export_source(staged, workdir, store, "_staging") as source:
        parts = write_parts(source, list(decl.spec.policy.columns), "json", 2**40, workdir / "json", what=decl.id)
    return [row for part in parts for row in json.loads(part.path.read_text(encoding="utf-8"))]


def expected_rows(case: Path) -> list[dict[str, Any]]:
    found = [case / f"{EXPECT_STEM}{s}" for s in ROW_SUFFIXES if (case / f"{EXPECT_STEM}{s}").is_file()]
    if len(found) != 1:
        raise FileNotFoundError(f"{case}: expected exactly one expect.yaml or expect.ndjson, found {len(found)}")
    return json.loads(json.dumps(read_rows(found[0]), default=jsonable))


def _normal(row: dict[str, Any]) -> str:
    """A row as canonical text: floats compared to 9 significant digits, keys in order."""
    def norm(v: Any) -> Any:
        if isinstance(v, float) and math.isfinite(v):
            return float(f"{v:.9g}")
        if isinstance(v, dict):
            return {k: norm(x) for k, x in v.items()}
        if isinstance(v, list):
            return [norm(x) for x in v]
        return v
    return json.dumps(norm(row), sort_keys=True)


def diff_rows(actual: list[dict[str, Any]], expected: list[dict[str, Any]]) -> str:
    """Empty when both hold the same rows (as a multiset); else the rows missing and unexpected."""
    a, e = Counter(map(_normal, actual)), Counter(map(_normal, expected))
    if a == e:
        return ""
    lines = [f"{len(actual)} row(s) returned, {len(expected)} expected"]
    lines += [f"  missing:    {r}" for r in (e - a).elements()]
    lines += [f"  unexpected: {r}" for r in (a - e).elements()]
    return "\n".join(lines)




def run_query(query: str, case: Path, schemas: dict[str, list[tuple[str, str]]], workdir: Path) -> list[dict[str, Any]]:
    """The rows a query (BigQuery SQL, bqetl's Jinja and TEMP FUNCTIONs allowed) returns on a case's
    inputs through the embedded engine, rendered as published; no declaration, so no policy rewrite:
    what the engine computes, for constructs (tests/warehouses/corpus)."""
    from pubdata.sql.parse import prepared
    from pubdata.warehouses.base import StagePlan

    source = workdir / "source.duckdb"
    load_inputs(case, source, schemas)
    params_file = case / PARAMS_FILE
    params = (yaml.safe_load(params_file.read_text(encoding="utf-8")) or {}) if params_file.is_file() else {}
    with initializing(case.name == INIT_CASE):
        text = prepared(query)
    warehouse = DuckDBWarehouse(source, workdir / "staging")
    staged = warehouse.stage("corpus.case_v1", StagePlan(text), params, None)
    columns = [c.name for c in warehouse.columns(staged)]
    store = LocalStore(workdir / "bucket")
    with warehouse.export_source(staged, workdir, store, "_staging") as export:
        parts = write_parts(export, columns, "json", 2**40, workdir / "json", what=case.name)
    return [row for part in parts for row in json.loads(part.path.read_text(encoding="utf-8"))]
