"""What a failed check found, in words, and the cells that broke it.

GX reports "observed 5, expected max 20,000", which reads as a value when it is a count of rows.
A finding says it as on-call would: "5 rows above 20,000", "the query returned no rows". The
failing cells are the rows that broke a column check, named by their dimension values (published
rows are aggregates: a cell is a combination of dimensions, not a person); values that look like
identifiers are still withheld when shown (redaction), and checks that may see identifiers (the
identifier scan, forbidden columns) get neither.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from pubdata.validation.expectations.named_rows import SAMPLE_SIZE

if TYPE_CHECKING:
    from pubdata.validation.report import CheckResult
    from pubdata.validation.spec import ExpectationSpec
    from pubdata.warehouses.base import StagedTable, Warehouse


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _n(value: int | float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,}"


def _rows(n: int) -> str:
    return f"{n:,} row" + ("" if n == 1 else "s")


def _bounds(spec: ExpectationSpec) -> tuple[int | float | None, int | float | None] | None:
    """(min, max) of a between check, when both are numbers or absent (anything else: no SQL from them)."""
    low, high = spec.kwargs.get("min_value"), spec.kwargs.get("max_value")
    for bound in (low, high):
        if bound is not None and not (_number(bound) and math.isfinite(bound)):
            return None
    return None if low is None and high is None else (low, high)


def _violation(spec: ExpectationSpec, warehouse: Warehouse) -> str | None:
    """The SQL condition a row breaking this column check meets, for the checks that have one."""
    column = spec.kwargs.get("column")
    if not isinstance(column, str):
        return None
    col = warehouse.quote(column)
    if spec.name == "ExpectColumnValuesToNotBeNull":
        return f"{col} IS NULL"
    if spec.name == "ExpectColumnValuesToBeBetween" and (bounds := _bounds(spec)) is not None:
        low, high = bounds
        sides = ([f"{col} < {low!r}"] if low is not None else []) + ([f"{col} > {high!r}"] if high is not None else [])
        return " OR ".join(sides)
    return None


def describe(check: CheckResult, spec: ExpectationSpec | None, warehouse: Warehouse | None = None,
             staged: StagedTable | None = None, dimensions: list[str] | None = None) -> None:
    """Fill check.finding (and check.cells) for a failed check; leave them empty when unsure."""
    if check.success or check.error or check.sensitive or spec is None:
        return
    observed = check.observed
    count = observed if _number(observed) else None
    if spec.name == "ExpectTableRowCountToBeBetween" and count is not None:
        check.finding = "the query returned no rows" if count == 0 else f"the query returned {_rows(int(count))}"
    elif spec.name == "UnexpectedRowsExpectation" and count is not None:
        check.finding = f"the expectation's query found {_rows(int(count))} breaking it"
    elif check.unexpected_sample and all(isinstance(r, dict) for r in check.unexpected_sample):
        # a check that names its rows (client counts, named rows): its sample is the cells
        check.finding = _rows(int(count)) if count is not None else observed if isinstance(observed, str) else None
        check.cells = list(check.unexpected_sample)
    elif warehouse is not None and staged is not None and (where := _violation(spec, warehouse)) is not None:
        _column_check(check, spec, warehouse, staged, where, dimensions or [])


def _column_check(check: CheckResult, spec: ExpectationSpec, warehouse: Warehouse, staged: StagedTable,
                  where: str, dimensions: list[str]) -> None:
    column = spec.kwargs["column"]
    col = warehouse.quote(column)
    if spec.name == "ExpectColumnValuesToNotBeNull":
        n = int(warehouse.scalar(staged, f"SELECT count(*) FROM {{table}} WHERE {where}") or 0)
        check.finding = f"{_rows(n)} with no {column}"
    else:
        low, high = _bounds(spec) or (None, None)
        below = f"SUM(CASE WHEN {col} < {low!r} THEN 1 ELSE 0 END)" if low is not None else "0"
        above = f"SUM(CASE WHEN {col} > {high!r} THEN 1 ELSE 0 END)" if high is not None else "0"
        [(n_below, n_above)] = warehouse.rows(staged, f"SELECT {below}, {above} FROM {{table}}", limit=1)
        parts = ([f"{_rows(int(n_below))} below {_n(low)}"] if n_below and low is not None else []) + \
                ([f"{_rows(int(n_above))} above {_n(high)}"] if n_above and high is not None else [])
        if not parts:
            return  # GX counted what this SQL does not (nulls, strictness): keep GX's own words
        check.finding = " and ".join(parts)
    named_by = [d for d in dimensions if d != column] + [column]
    select = ", ".join(warehouse.quote(c) for c in named_by)
    order = ", ".join(warehouse.quote(c) for c in named_by)
    rows = warehouse.rows(staged, f"SELECT {select} FROM {{table}} WHERE {where} ORDER BY {order}", limit=SAMPLE_SIZE)
    check.cells = [{name: _plain(v) for name, v in zip(named_by, row, strict=True)} for row in rows]


def _plain(value: Any) -> Any:
    return value if value is None or isinstance(value, (str, int, float, bool)) else str(value)
