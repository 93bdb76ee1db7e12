"""Every published metric is a finite number: NaN and ±Infinity are refused, naming the rows.

JSON has no NaN or Infinity (a published `NaN` breaks every strict parser) and CSV readers turn
`nan`/`inf` into whatever they like; a ratio whose denominator was zero is the usual source. A
value is non-finite when its text is one of nan, inf, -inf: both engines cast non-finite floats
so, and the cast works for every column type, so a metric of the wrong type is the column-type
check's to report, not an evaluation error here. Export refuses non-finite floats too, as a last
line of defence (publishing.rows.check_finite).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pubdata.declarations import Declaration
from pubdata.validation.expectations.named_rows import gx_classes
from pubdata.validation.spec import ExpectationSpec

NAME = "ExpectMetricsToBeFinite"
METRIC = "pubdata.table.non_finite_rows"
NON_FINITE_TEXTS = ("nan", "inf", "-inf", "infinity", "-infinity")


def non_finite_rows(selectable: Any, columns: list[str], named_by: list[str]) -> Any:
    """SELECT the dimensions of the rows where any of `columns` is NaN or ±Infinity."""
    import sqlalchemy as sa

    bad = sa.or_(*(sa.func.lower(sa.cast(sa.column(c), sa.String())).in_(NON_FINITE_TEXTS) for c in columns))
    names: list[Any] = [sa.column(n) for n in named_by]
    return sa.select(*names).select_from(selectable).where(bad).order_by(*names)


def finite_metrics(decl: Declaration) -> list[ExpectationSpec]:
    p = decl.spec.policy
    metrics, dimensions = [m.name for m in p.metrics], [d.name for d in p.dimensions]
    return [ExpectationSpec(
        NAME, {"columns": metrics, "named_by": dimensions},
        description=f"every metric is a finite number, never NaN or Infinity ({', '.join(metrics)})",
        columns=tuple(metrics + dimensions),
    )]


@lru_cache(maxsize=1)
def gx_expectations() -> dict[str, type]:
    """The expectation and its metric, registered with Great Expectations on first use."""
    return gx_classes(__name__, NAME, METRIC, non_finite_rows, "No value of the metric columns is NaN, Infinity or -Infinity.")
