"""Validation: the Great Expectations suite on a staged table, beside the same checks in plain SQL.

The suite is the pipeline's own (validation.suite_for); each expectation is translated into one
SQL query with the same meaning, and the benchmark checks both sides reach the same verdicts,
so the comparison is like for like. Expectations without a translation are left out of both
sides and named in the note. Each side runs in a fresh process twice: the first run pays the
imports and setup (what every Airflow validate task pays), the second is the warm per-run cost.
Fixed overhead: the whole GX validation of a one-row table in a fresh process.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from bench import child, sources
from bench.report import Row

FIXED_OVERHEAD_TARGET_S = 5.0
WIDE_ID = "bench_validate.rows_v1"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def translate(spec, table: str, columns: list[str]) -> tuple[str, Any] | None:
    """(kind, payload) evaluating one expectation in SQL, or None when there is no translation.

    kind "sql": payload is (query, params) counting the violating rows (0 = the check holds);
    kind "columns": payload is a function of the table's column names returning success.
    """
    from pubdata.policy import verdict as policy

    name, kw = spec.name, spec.kwargs
    col = _quote(kw["column"]) if "column" in kw else None
    if name == "ExpectTableColumnsToMatchSet":
        wanted = set(kw["column_set"])
        return "columns", (lambda cols: set(cols) == wanted if kw.get("exact_match", True) else wanted <= set(cols))
    if name == "ExpectTableColumnsToExcludeForbidden":
        extra = {n.lower() for n in kw.get("extra_forbidden") or []}
        return "columns", (lambda cols: not any(policy.forbidden_reason(c) or c.lower() in extra for c in cols))
    if name == "ExpectTableRowCountToBeBetween":
        cond = []
        if kw.get("min_value") is not None:
            cond.append(f"n < {int(kw['min_value'])}")
        if kw.get("max_value") is not None:
            cond.append(f"n > {int(kw['max_value'])}")
        return "sql", (f"SELECT count(*) FROM (SELECT count(*) AS n FROM {table}) WHERE {' OR '.join(cond) or 'false'}", [])
    if name == "ExpectColumnValuesToNotBeNull":
        return "sql", (f"SELECT count(*) FROM {table} WHERE {col} IS NULL", [])
    if name == "ExpectColumnValuesToBeBetween":
        cond = []
        if kw.get("min_value") is not None:
            cond.append(f"{col} < ?")
        if kw.get("max_value") is not None:
            cond.append(f"{col} > ?")
        params = [v for v in (kw.get("min_value"), kw.get("max_value")) if v is not None]
        return "sql", (f"SELECT count(*) FROM {table} WHERE {' OR '.join(cond) or 'false'}", params)
    if name == "ExpectColumnValuesToBeInSet":
        return "sql", (f"SELECT count(*) FROM {table} WHERE {col} IS NOT NULL AND {col} NOT IN (SELECT unnest(?))",
                       [list(kw["value_set"])])
    if name == "ExpectColumnValuesToBeValidGeo":
        allowed = sorted(policy.geo_values(kw["geo_kind"]))
        return "sql", (f"SELECT count(*) FROM {table} WHERE {col} IS NOT NULL "
                       f"AND CAST({col} AS VARCHAR) NOT IN (SELECT unnest(?))", [allowed])
    if name == "UnexpectedRowsExpectation":
        return "sql", (f"SELECT count(*) FROM ({kw['unexpected_rows_query'].format(batch=table)})", [])
    return None


def _suite(decl) -> list:
    from pubdata import validation

    return validation.suite_for(decl, "duckdb")


def split_suite(specs: list) -> tuple[list, list[str]]:
    """The expectations with an SQL translation, and the names of the others."""
    kept, skipped = [], []
    for s in specs:
        (kept if translate(s, "t", []) is not None else skipped).append(s)
    return kept, sorted({s.name for s in skipped})


def gx_child(dataset_id: str, staged: dict[str, Any], breakdown: bool = False) -> dict[str, Any]:
    """The pipeline's validation (validation.validate) twice in a fresh process.

    breakdown: time GX's import, context and expectation building apart first (diagnostic: the
    validation then finds them done, so its first run is not the cold cost).
    """
    started = time.perf_counter()
    from pubdata import validation
    from pubdata.config import settings
    from pubdata.orchestration import tasks
    from pubdata.warehouses import open_warehouse
    from pubdata.warehouses.base import StagedTable

    cfg = settings()
    decl = tasks.load(dataset_id, cfg)
    wh = open_warehouse(cfg.warehouse_url, home=cfg.home)
    table = StagedTable.from_dict(staged)
    specs, skipped = split_suite(_suite(decl))
    setup: dict[str, float] = {"import pubdata, load suite": time.perf_counter() - started}
    if breakdown:
        t = time.perf_counter()
        import great_expectations as gx

        setup["import great_expectations"] = time.perf_counter() - t
        t = time.perf_counter()
        gx.get_context(mode="ephemeral")
        setup["ephemeral context"] = time.perf_counter() - t
        t = time.perf_counter()
        [s.build() for s in specs]
        setup["build expectations"] = time.perf_counter() - t
    runs = []
    for _ in range(2):
        t = time.perf_counter()
        report = validation.validate(decl, wh, table, specs)
        runs.append({"seconds": time.perf_counter() - t, "outcome": report.outcome,
                     "verdicts": {c.description: c.status for c in report.checks}})
    setup["first validate"] = runs[0]["seconds"]
    return {
        "first_total_s": sum(setup.values()), "warm_s": runs[1]["seconds"], "setup": setup,
        "verdicts": runs[1]["verdicts"], "outcome": runs[1]["outcome"], "checks": len(specs), "skipped": skipped,
    }


def sql_child(dataset_id: str, staged: dict[str, Any]) -> dict[str, Any]:
    """The same expectations as plain SQL on one DuckDB connection, twice in a fresh process."""
    started = time.perf_counter()
    import duckdb

    from pubdata.orchestration import tasks

    decl = tasks.load(dataset_id)
    specs, skipped = split_suite(_suite(decl))
    t_setup = time.perf_counter()
    runs = []
    for _ in range(2):
        t = time.perf_counter()
        con = duckdb.connect(staged["location"], read_only=True)
        table = _quote(staged["table"])
        columns = [r[0] for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position",
            [staged["table"]]).fetchall()]
        verdicts = {}
        for s in specs:
            kind, payload = translate(s, table, columns)
            if kind == "columns":
                ok = payload(columns)
            else:
                query, params = payload
                ok = con.execute(query, params).fetchone()[0] == 0
            verdicts[s.description] = "passed" if ok else ("failed" if s.severity == "fail" else "warning")
        con.close()
        runs.append({"seconds": time.perf_counter() - t, "verdicts": verdicts})
    return {"first_total_s": runs[0]["seconds"] + (t_setup - started), "warm_s": runs[1]["seconds"],
            "verdicts": runs[1]["verdicts"], "checks": len(specs), "skipped": skipped}


WIDE_DECLARATION = """\
friendly_name: Benchmark rows
description: One day of clients_daily without identifiers, to measure validation and export per row.
owners: [bench@example.org]
review:
  bugs: ["https://bugzilla.mozilla.org/show_bug.cgi?id=1"]
  data_reviews: ["https://bugzilla.mozilla.org/show_bug.cgi?id=1"]
  steward: {name: Bench, approved_on: 2026-11-01, link: "https://bugzilla.mozilla.org/show_bug.cgi?id=1"}
policy:
  aggregation_level: 3
  dimensions:
    - {name: submission_date, category: 1, kind: date}
    - {name: country, category: 1, kind: geo_country}
    - {name: os, category: 1}
    - {name: locale, category: 1}
    - {name: normalized_channel, category: 1}
    - {name: app_version, category: 1, kind: version}
  metrics:
    - {name: page_loads, sensitive: false}
    - {name: active_hours, sensitive: false}
schedule: null
start_date: 2026-11-01
incremental: true
partition_field: submission_date
"""
WIDE_QUERY = """\
SELECT submission_date, country, os, locale, normalized_channel, app_version, page_loads, active_hours
FROM `moz-fx-data-shared-prod.telemetry.clients_daily`
WHERE submission_date = @submission_date
"""


def add_wide_dataset(project: Path) -> str:
    """A row-level declaration (one source day, no identifiers): staged rows grow with the source."""
    ds, table = WIDE_ID.split(".")
    for sub, text, ext in (("metadata", WIDE_DECLARATION, "yaml"), ("sql", WIDE_QUERY, "sql")):
        (project / sub / ds).mkdir(parents=True, exist_ok=True)
        (project / sub / ds / f"{table}.{ext}").write_text(text, encoding="utf-8")
    return WIDE_ID


def _measure(dataset_id: str, env: dict[str, str], log) -> dict[str, Any]:
    stage = child.run("bench.sources:stage_child", env=env, dataset_id=dataset_id, day=sources.DAY)
    staged = stage["staged"]
    log(f"  validating {dataset_id}: Great Expectations, then plain SQL ...")
    gx = child.run("bench.validate:gx_child", env=env, dataset_id=dataset_id, staged=staged)
    sql = child.run("bench.validate:sql_child", env=env, dataset_id=dataset_id, staged=staged)
    if gx["verdicts"] != sql["verdicts"]:
        diff = {k: (gx["verdicts"].get(k), sql["verdicts"].get(k)) for k in set(gx["verdicts"]) | set(sql["verdicts"])
                if gx["verdicts"].get(k) != sql["verdicts"].get(k)}
        raise RuntimeError(f"GX and the SQL translation disagree on {dataset_id}: {diff}")
    return {"gx": gx, "sql": sql, "rows": stage["rows"]}


def tiny_child(dataset_id: str) -> dict[str, Any]:
    """Stage a one-row table with the example's columns (the query's output shape, one cell)."""
    import duckdb

    from pubdata.config import settings
    from pubdata.warehouses import open_warehouse
    from pubdata.warehouses.base import StagedTable

    cfg = settings()
    wh = open_warehouse(cfg.warehouse_url, home=cfg.home)
    path = wh.staging_file(dataset_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path))
    con.execute("CREATE OR REPLACE TABLE stage_20261101 AS SELECT DATE '2026-11-01' AS submission_date, 'US' AS country, "
                "'Windows_NT' AS os, 'en-US' AS locale, 'release' AS normalized_channel, "
                "CAST(900000 AS BIGINT) AS page_loads, CAST(6000 AS BIGINT) AS client_count")
    con.close()
    return {"staged": StagedTable(dataset_id, str(path), "stage_20261101", "2026-11-01").to_dict()}


def run(scales: tuple[int, ...], work: Path, log=print) -> list[Row]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="pubdata-bench-validate-", dir=work) as tmp:
        project = sources.copy_project(Path(tmp) / "project")
        add_wide_dataset(project)
        env = sources.pubdata_env(project, Path(tmp) / "home-tiny", sources.source_warehouse(work, min(scales), log))
        staged = child.run("bench.validate:tiny_child", env=env, dataset_id=sources.EXAMPLE_ID)["staged"]
        log("  fixed overhead: the example's suite on a one-row table ...")
        gx = child.run("bench.validate:gx_child", env=env, dataset_id=sources.EXAMPLE_ID, staged=staged)
        sql = child.run("bench.validate:sql_child", env=env, dataset_id=sources.EXAMPLE_ID, staged=staged)
        parts = child.run("bench.validate:gx_child", env=env, dataset_id=sources.EXAMPLE_ID, staged=staged, breakdown=True)
        setup = ", ".join(f"{k} {v:.2f}" for k, v in parts["setup"].items())
        rows.append(Row("validate", "fixed overhead (1-row table)", gx["first_total_s"], "s", sql["first_total_s"],
                        "same checks in SQL", f"<= {FIXED_OVERHEAD_TARGET_S:g} s",
                        gx["first_total_s"] <= FIXED_OVERHEAD_TARGET_S,
                        f"{gx['checks']} expectations, fresh process; where it goes (s): {setup}; "
                        f"warm rerun {gx['warm_s']:.2f}", detail={"gx": gx, "sql": sql, "breakdown": parts}))
        for scale in scales:
            warehouse = sources.source_warehouse(work, scale, log)
            env = sources.pubdata_env(project, Path(tmp) / f"home-{scale}", warehouse)
            for dataset_id, label in ((sources.EXAMPLE_ID, "example"), (WIDE_ID, "one source day, row level")):
                r = _measure(dataset_id, env, log)
                gx, sql = r["gx"], r["sql"]
                skipped = f"; left out (no SQL translation): {', '.join(gx['skipped'])}" if gx["skipped"] else ""
                rows.append(Row("validate", f"{label}, {scale:,} source rows, warm", gx["warm_s"], "s", sql["warm_s"],
                                "same checks in SQL",
                                note=f"{r['rows']:,} staged rows; {gx['checks']} expectations, same verdicts "
                                f"({gx['outcome']}){skipped}", detail=r))
                rows.append(Row("validate", f"{label}, {scale:,} source rows, fresh process", gx["first_total_s"], "s",
                                sql["first_total_s"], "same checks in SQL", note="imports and setup included"))
    return rows
