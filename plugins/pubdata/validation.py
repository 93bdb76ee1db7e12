"""Validation of a staged table with Great Expectations, inside the warehouse.

The suite is built from the declaration (policy expectations every dataset gets) plus the
dataset's own expectations file. Three outcomes are kept apart, because on-call acts on them
differently:
  passed  - every `fail` expectation held: export may run;
  failed  - the data broke a rule: no export, no retry, the staged table stays as quarantine;
  error   - an expectation could not be evaluated (GX exception, warehouse down): retry, and
            never read as a pass or as a data failure.
Great Expectations is imported only when a validation runs, never at DAG parse time.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from pubdata import geo
from pubdata.declaration import Declaration
from pubdata.policy import GEO_KINDS
from pubdata.warehouses.base import StagedTable, Warehouse

SEVERITIES = ("fail", "warn")


class DataValidationFailed(Exception):
    """The staged data broke at least one `fail` expectation. Not retryable: fix data or query."""

    def __init__(self, report: ValidationReport):
        self.report = report
        super().__init__(report.summary())


class ValidationInfrastructureError(Exception):
    """An expectation could not be evaluated. Retryable; never a pass, never a data failure."""

    def __init__(self, report: ValidationReport):
        self.report = report
        super().__init__(report.summary())


class ExpectationsFileError(ValueError):
    """expectations/<ds>/<table>_v<N>.yaml is malformed; the message names file, entry and fix."""


@dataclass
class CheckResult:
    expectation: str
    description: str
    severity: str
    success: bool
    column: str | None = None
    observed: Any = None
    expected: Any = None
    unexpected_sample: list[Any] = field(default_factory=list)
    error: str | None = None
    sensitive: bool = False  # its values may be identifiers: alerts and reports withhold them

    @property
    def status(self) -> str:
        if self.error:
            return "error"
        return "passed" if self.success else ("failed" if self.severity == "fail" else "warning")


@dataclass
class ValidationReport:
    dataset_id: str
    partition: str | None
    outcome: str  # passed | failed | error
    checks: list[CheckResult]
    row_count: int | None
    started_at: str
    seconds: float

    @property
    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if c.status == "failed"]

    @property
    def warnings(self) -> list[CheckResult]:
        return [c for c in self.checks if c.status == "warning"]

    @property
    def errors(self) -> list[CheckResult]:
        return [c for c in self.checks if c.status == "error"]

    def summary(self) -> str:
        head = f"{self.dataset_id} [{self.partition or 'full'}]: validation {self.outcome}"
        lines = [head]
        for c in self.errors:
            lines.append(f"  ERROR   {c.description}: {c.error}")
        for c in self.failures:
            lines.append(f"  FAILED  {c.description}: observed {_short(c.observed)}, expected {_short(c.expected)}")
        for c in self.warnings:
            lines.append(f"  WARNING {c.description}: observed {_short(c.observed)}, expected {_short(c.expected)}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for c, raw in zip(d["checks"], self.checks):
            c["status"] = raw.status
        return d


def _short(value: Any, limit: int = 200) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- the expectations --------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _custom_expectations():
    """Expectations GX does not ship, written as real GX expectations over GX metrics."""
    from typing import ClassVar

    from great_expectations.expectations.expectation import BatchExpectation

    from pubdata import policy

    class ExpectTableColumnsToExcludeForbidden(BatchExpectation):
        """No column of the table is forbidden in public output (identifiers, IPs, raw URLs, ...)."""

        extra_forbidden: list[str] = []
        metric_dependencies: ClassVar[tuple[str, ...]] = ("table.columns",)
        success_keys: ClassVar[tuple[str, ...]] = ("extra_forbidden",)
        args_keys: ClassVar[tuple[str, ...]] = ("extra_forbidden",)

        def _validate(self, metrics, runtime_configuration=None, execution_engine=None):
            columns = [str(c) for c in metrics["table.columns"]]
            extra = {n.lower() for n in (self.extra_forbidden or [])}
            found = {}
            for col in columns:
                reason = policy.forbidden_reason(col) or ("forbidden by this dataset" if col.lower() in extra else None)
                if reason:
                    found[col] = reason
            return {"success": not found, "result": {"observed_value": found or columns}}

    ExpectTableColumnsToExcludeForbidden.__module__ = __name__
    return {"ExpectTableColumnsToExcludeForbidden": ExpectTableColumnsToExcludeForbidden, **geo.gx_expectations()}


@dataclass(frozen=True)
class ExpectationSpec:
    """One expectation to run: a GX class name and its arguments, with our severity."""

    name: str
    kwargs: dict[str, Any]
    severity: str = "fail"
    description: str = ""
    source: str = "policy"
    columns: tuple[str, ...] = ()  # columns it reads besides kwargs["column"]; absent ones fail it unrun
    sensitive: bool = False         # its failures may show identifiers: withhold values outside the warehouse

    @property
    def reads(self) -> list[str]:
        column = self.kwargs.get("column")
        return ([column] if column is not None else []) + list(self.columns)

    def build(self):
        import great_expectations as gx

        cls = _custom_expectations().get(self.name) or getattr(gx.expectations, self.name, None)
        if cls is None:
            raise ExpectationsFileError(f"unknown expectation {self.name}")
        return cls(**self.kwargs, meta={"severity": self.severity, "description": self.description})


def policy_expectations(decl: Declaration) -> list[ExpectationSpec]:
    """What the publishing policy requires of every staged table of this dataset."""
    p = decl.spec.policy
    specs = [
        ExpectationSpec(
            "ExpectTableColumnsToMatchSet",
            {"column_set": p.columns, "exact_match": True},
            description="columns equal the declared dimensions and metrics",
        ),
        ExpectationSpec(
            "ExpectTableColumnsToExcludeForbidden",
            {},
            description="no forbidden column (identifiers, IP addresses, raw URLs, ...)",
            sensitive=True,
        ),
        ExpectationSpec(
            "ExpectTableRowCountToBeBetween",
            {"min_value": 1},
            description="the query returned rows",
        ),
    ]
    if p.bucket_column:
        specs += [
            ExpectationSpec(
                "ExpectColumnValuesToNotBeNull",
                {"column": p.bucket_column},
                description=f"{p.bucket_column} is never null",
            ),
            ExpectationSpec(
                "ExpectColumnValuesToBeBetween",
                {"column": p.bucket_column, "min_value": p.min_bucket_size},
                description=f"every row, Other rows included, has {p.bucket_column} >= {p.min_bucket_size}",
            ),
        ]
    for d in p.dimensions:
        specs.append(ExpectationSpec(
            "ExpectColumnValuesToNotBeNull", {"column": d.name}, description=f"dimension {d.name} is never null",
        ))
        if d.kind in GEO_KINDS:
            specs.append(ExpectationSpec(
                "ExpectColumnValuesToBeValidGeo", {"column": d.name, "geo_kind": d.kind},
                description=f"dimension {d.name} holds {geo.describe(d.kind)}",
            ))
    return specs


def load_dataset_expectations(path: Path | None, decl: Declaration | None = None) -> list[ExpectationSpec]:
    """The expectations the dataset's own file adds (see pubdata.expectations_file for the format).

    Raises ExpectationsFileError as `file:line: where: what`.
    """
    from pubdata import expectations_file

    return expectations_file.load(path, decl).specs


def suite_for(decl: Declaration, engine: str = "duckdb", previous: tuple[str, int] | None = None) -> list[ExpectationSpec]:
    """The whole suite: the policy's expectations, the checks the declaration implies on this
    engine (column types, identifier scan), the dataset's own file, and the row-count band
    against `previous` (label, rows), the last published partition, when there is one."""
    from pubdata import expectations_file, validation_checks

    own = expectations_file.load(decl.expectations_path, decl)
    return (policy_expectations(decl) + validation_checks.declared_checks(decl, engine) + own.specs
            + validation_checks.row_count_band(own.row_count, previous))


# -- running -----------------------------------------------------------------------------------


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
    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.monotonic()
    specs = suite_for(decl, warehouse.engine) if specs is None else specs
    checks: list[CheckResult] = []
    try:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        from pubdata.validation_checks import COLUMN_TYPES_EXPECTATION, check_column_types

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
            elif spec.name == COLUMN_TYPES_EXPECTATION:
                # Types as the warehouse itself names them (GX's type expectation cannot read DuckDB's).
                checks.append(CheckResult(spec.name, spec.description, spec.severity,
                                          **check_column_types(spec, columns, warehouse.engine)))
            else:
                runnable.append(spec)
        specs = runnable
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        batch = warehouse.gx_batch(context, staged)
        try:
            expectations = [s.build() for s in specs]
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
                column=(spec.reads or [None])[0],
                observed=res.get("observed_value", res.get("unexpected_count")),
                expected=_expected(spec.kwargs),
                unexpected_sample=list(res.get("partial_unexpected_list") or [])[:5],
                error=_raised(r.exception_info),
                sensitive=spec.sensitive,
            ))
    except Exception as exc:  # the suite could not run at all
        checks.append(CheckResult("suite", "run the validation suite", "fail", False, error=f"{type(exc).__name__}: {exc}"))
    row_count = None
    try:
        row_count = int(warehouse.scalar(staged, "SELECT count(*) FROM {table}"))
    except Exception:  # reported through the checks above when the table is unreachable
        pass
    if any(c.status == "error" for c in checks):
        outcome = "error"
    elif any(c.status == "failed" for c in checks):
        outcome = "failed"
    else:
        outcome = "passed"
    return ValidationReport(decl.id, staged.partition, outcome, checks, row_count,
                            started.isoformat(timespec="seconds"), round(time.monotonic() - t0, 3))


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
