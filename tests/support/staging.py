"""Stage a query on a handful of crafted clients_daily rows, as a run stages it, and run the
warehouse-side checks (the minimum, the bucket column's agreement, differencing) on the result.

For tests of the minimum bucket at a small minimum (2 or 3), where every row of the input is
chosen by the test: the same plan (sql.rewrite), engine and checks as a real run, without a project.
"""

from __future__ import annotations

import copy
import datetime as dt
from functools import lru_cache
from pathlib import Path
from typing import Any

import duckdb
import yaml

from pubdata.declarations.loader import Declaration
from pubdata.declarations.spec import DeclarationFile
from pubdata.ids import DatasetId
from pubdata.sql.rewrite import plan
from pubdata.validation.expectations import client_counts, differencing
from pubdata.warehouses.duckdb import DuckDBWarehouse
from tests.support.project import REPO

DAY = dt.date(2026, 11, 1)
DATASET = "telemetry_public.crafted_v1"


@lru_cache(maxsize=1)
def clients_daily_schema() -> tuple[tuple[str, str], ...]:
    """Column names and types of the synthetic clients_daily (the production table's shape)."""
    import tempfile

    from pubdata.sources.synthetic import SynthSpec, generate

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.duckdb"
        generate(path, SynthSpec(scale=1, days=1))
        con = duckdb.connect(str(path), read_only=True)
        try:
            return tuple(con.execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'telemetry' "
                "AND table_name = 'clients_daily' ORDER BY ordinal_position").fetchall())
        finally:
            con.close()


def declaration(base: str = "page_loads_by_country_v1", *, rollup: bool = False, **policy: Any) -> dict:
    raw = copy.deepcopy(yaml.safe_load((REPO / "metadata" / "telemetry_public" / f"{base}.yaml").read_text()))
    if not rollup:
        raw["policy"].pop("rollup", None)
    raw["policy"].update(policy)
    return raw


def write_source(path: Path, rows: list[dict[str, Any]]) -> None:
    con = duckdb.connect(str(path))
    try:
        con.execute("CREATE SCHEMA telemetry")
        con.execute("CREATE TABLE telemetry.clients_daily ("
                    + ", ".join(f'"{c}" {t}' for c, t in clients_daily_schema()) + ")")
        for row in rows:
            row = {"submission_date": DAY, **row}
            names = ", ".join(f'"{n}"' for n in row)
            con.execute(f"INSERT INTO telemetry.clients_daily ({names}) VALUES ({', '.join('?' for _ in row)})",
                        list(row.values()))
    finally:
        con.close()


def write_table(path: Path, table: str, rows: list[dict[str, Any]]) -> None:
    """A source table (`project.dataset.table`) holding exactly these rows, with its production
    types, through the loader `pubdata load` uses (nested records as mappings)."""
    from pubdata.sources.fixtures import load_case

    case = path.parent / f"{path.stem}-rows"
    case.mkdir(parents=True, exist_ok=True)
    (case / f"{table}.yaml").write_text(yaml.safe_dump(rows), encoding="utf-8")
    load_case(case, path)


def stage(sql: str, raw: dict, rows: list[dict[str, Any]], workdir: Path, *, k: int = 2,
          table: str | None = None) -> dict[str, Any]:
    """{rows: staged rows (internal columns included), checks: {name: check result}, plan}.

    The rows are clients_daily's unless `table` names another source table."""
    raw = copy.deepcopy(raw)
    raw["policy"]["min_bucket_size"] = k
    spec = DeclarationFile.model_validate(raw)
    workdir.mkdir(parents=True, exist_ok=True)
    source = workdir / "source.duckdb"
    if table is None:
        write_source(source, rows)
    else:
        write_table(source, table, rows)
    warehouse = DuckDBWarehouse(source, workdir / "staging")
    stage_plan = plan(sql, spec)
    staged = warehouse.stage(DATASET, stage_plan, {"submission_date": DAY, "min_bucket_size": k}, DAY,
                             partition_field="submission_date")
    con = duckdb.connect(staged.location, read_only=True)
    try:
        result = con.execute(f'SELECT * FROM "{staged.table}"')
        names = [d[0] for d in result.description]
        staged_rows = [dict(zip(names, r, strict=True)) for r in result.fetchall()]
    finally:
        con.close()
    decl = Declaration(DatasetId.parse(DATASET), spec, sql, workdir / "m.yaml", workdir / "q.sql", None)
    columns = warehouse.columns(staged)
    checks = {}
    for module in (client_counts, differencing):
        for expectation in module.expectations(decl):
            checks[expectation.name] = module.check(expectation, decl, warehouse, staged, columns)
    return {"rows": staged_rows, "checks": checks, "plan": stage_plan}


def published(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if not k.startswith("_pubdata")} for r in rows]
