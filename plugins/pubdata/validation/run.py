"""Running the suite on a staged table with Great Expectations, inside the warehouse.

Great Expectations is imported only when a validation runs, never at DAG parse time.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from pubdata.declarations import Declaration
from pubdata.validation.expectations import NATIVE_CHECKS, build_expectation
from pubdata.validation.report import CheckResult, Outcome, ValidationReport
from pubdata.validation.spec import ExpectationSpec
from pubdata.validation.suite import suite_for
from pubdata.warehouses.base import StagedTable, Warehouse


def _raised(exception_info: dict | None) -> str | None:
    """The exception message GX recorded for an expectation, if any (its shape varies)."""
    if not exception_info:
        return None
    if "raised_exception" in exception_info:
        return exception_info.get("exception_message") or "exception" if exception_info["raised_exception"] else None
    for value in exception_info.values():
        if isinstance(value, dict) and value.get("raised_exception"):
            return value.get("exception_message") or "exception"
    return None


def _expected(kwargs: dict[str, Any]) -> Any:
    keys = {k: v for k, v in kwargs.items() if k not in ("column", "meta", "result_format")}
    return keys or None


def validate(decl: Declaration, warehouse: Warehouse, staged: StagedTable,
             specs: list[ExpectationSpec] | None = None) -> ValidationReport:
    """Run the suite on exactly the staged table; return the report (never raises for data)."""
    started = dt.datetime.now(dt.UTC)
    t0 = time.monotonic()
    specs = suite_for(decl, warehouse) if specs is None else specs
    all_specs = list(specs)
    checks: list[CheckResult] = []
    try:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        columns = warehouse.columns(staged)
        present = {c.name for c in columns}
        runnable = []
        for spec in specs:
            missing = [c for c in spec.reads if c not in present]
            if missing:
                # The column check reports the difference; this one cannot apply, and that is
                # the data's fault (the query's output), not an evaluation error.
                checks.append(CheckResult(spec.name, spec.description, spec.severity, False, missing[0],
                                          observed=f"column missing: {', '.join(missing)}",
                                          expected=_expected(spec.kwargs), sensitive=spec.sensitive))
            elif spec.name in NATIVE_CHECKS:
                # Evaluated by the warehouse directly: GX cannot read DuckDB's types, and the client
                # counts list the rows that break them, which GX's unexpected-rows result does not.
                try:
                    found = NATIVE_CHECKS[spec.name](spec, decl, warehouse, staged, columns)
                except Exception as exc:  # could not be evaluated: an error, never a pass
                    found = {"success": False, "error": f"{type(exc).__name__}: {exc}"}
                checks.append(CheckResult(spec.name, spec.description, spec.severity, column=spec.reads[0] if spec.reads else None,
                                          sensitive=spec.sensitive, **found))
            else:
                runnable.append(spec)
        specs = runnable
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        batch = warehouse.gx_batch(context, staged)
        try:
            expectations = [build_expectation(s) for s in specs]
            for i, e in enumerate(expectations):
                e.meta["pubdata_index"] = i  # GX reorders results (table-level first): match them back
            suite = gx.ExpectationSuite(name=f"{decl.id}", expectations=expectations)
            result = batch.validate(suite, result_format={"result_format": "SUMMARY", "partial_unexpected_count": 5})
        finally:
            _release(context, batch)
        by_index = {(r.expectation_config.meta or {}).get("pubdata_index"): r for r in result.results}
        for i, spec in enumerate(specs):
            r = by_index.get(i)
            if r is None:
                checks.append(CheckResult(spec.name, spec.description, spec.severity, False,
                                          error="Great Expectations returned no result for this expectation"))
                continue
            res = r.result or {}
            checks.append(CheckResult(
                expectation=spec.name,
                description=spec.description,
                severity=spec.severity,
                success=bool(r.success),
                column=spec.reads[0] if spec.reads else None,
                observed=res.get("observed_value", res.get("unexpected_count")),
                expected=_expected(spec.kwargs),
                unexpected_sample=list(res.get("partial_unexpected_list") or [])[:5],
                error=_raised(r.exception_info),
                sensitive=spec.sensitive,
            ))
    except Exception as exc:  # the suite could not run at all
        checks.append(CheckResult("suite", "run the validation suite", "fail", False, error=f"{type(exc).__name__}: {exc}"))
    _describe(checks, all_specs, decl, warehouse, staged)
    row_count = None
    try:
        row_count = int(warehouse.scalar(staged, "SELECT count(*) FROM {table}"))
    except Exception:  # reported through the checks above when the table is unreachable
        pass
    outcome: Outcome
    if any(c.status == "error" for c in checks):
        outcome = "error"
    elif any(c.status == "failed" for c in checks):
        outcome = "failed"
    else:
        outcome = "passed"
    return ValidationReport(decl.id, staged.partition, outcome, checks, row_count,
                            started.isoformat(timespec="seconds"), round(time.monotonic() - t0, 3))


def _describe(checks: list[CheckResult], specs: list[ExpectationSpec], decl: Declaration, warehouse: Warehouse,
              staged: StagedTable) -> None:
    """Each failed check's finding in words and its failing cells (validation.findings)."""
    from pubdata.validation import findings

    by_check = {(s.name, s.description): s for s in specs}
    dimensions = [d.name for d in decl.spec.policy.dimensions]
    for check in checks:
        try:
            findings.describe(check, by_check.get((check.expectation, check.description)), warehouse, staged, dimensions)
        except Exception:  # the words are a courtesy: the check's own observed and expected stay
            check.finding, check.cells = None, []


def _release(context, batch) -> None:
    """Close every connection GX opened on the staged table, so later steps can open it.

    GX caches a SQLAlchemy engine on the datasource and another in its execution engine (which,
    for DuckDB, keeps one persisted connection); DuckDB allows no second connection with another
    configuration to the same file while any of them lives.
    """
    import gc

    engines = [getattr(getattr(batch, "data", None), "execution_engine", None)]
    for ds in list(context.data_sources.all().values()):
        engines.append(getattr(ds, "_execution_engine", None))
        sa_engine = getattr(ds, "_engine", None)
        if sa_engine is not None:
            sa_engine.dispose()
    for ee in engines:
        if ee is None:
            continue
        conn = getattr(ee, "_connection", None)
        if conn is not None:
            conn.close()
            ee._connection = None
        if getattr(ee, "engine", None) is not None:
            ee.engine.dispose()
    del engines
    gc.collect()
