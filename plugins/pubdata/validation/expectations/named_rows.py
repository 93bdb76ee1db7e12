"""What the built-in expectations that name the rows breaking them share.

GX's UnexpectedRowsExpectation reports how many rows a query returned, not which (only its
COMPLETE result format carries them, and the suite runs in SUMMARY so that no column check
fetches every bad value). A named-rows expectation's metric runs one SQLAlchemy query for the
offending rows (the same on every warehouse) and reports their count and the first SAMPLE_SIZE
of them by their dimensions, so on-call reads which cells to look at. Each expectation (finite
metrics, unique dimensions) defines its own GX classes in its module and builds the query.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

SAMPLE_SIZE = 5
"""How many offending rows a failed check names."""

Offending = Callable[[Any, list[str], list[str]], Any]
"""(selectable, columns, named_by) -> a SQLAlchemy SELECT of the offending rows."""


def offending_rows(execution_engine: Any, metric_domain_kwargs: dict[str, Any],
                   metric_value_kwargs: dict[str, Any], offending: Offending) -> dict[str, Any]:
    """The metric's value: {"total": offending rows, "rows": the first SAMPLE_SIZE, as dicts}."""
    import sqlalchemy as sa
    from great_expectations.core.metric_domain_types import MetricDomainTypes

    selectable, _, _ = execution_engine.get_compute_domain(metric_domain_kwargs, MetricDomainTypes.TABLE)
    query = offending(selectable, list(metric_value_kwargs["columns"]), list(metric_value_kwargs["named_by"]))
    total = execution_engine.execute_query(sa.select(sa.func.count()).select_from(query.subquery())).scalar()
    sample = execution_engine.execute_query(query.limit(SAMPLE_SIZE)).mappings().fetchall()
    return {"total": int(total or 0), "rows": [{k: _plain(v) for k, v in row.items()} for row in sample]}


def _plain(value: Any) -> Any:
    """A value as JSON carries it (a date as YYYY-MM-DD): the sample goes into reports and records."""
    return value if value is None or isinstance(value, (str, int, float, bool)) else str(value)


def named_rows_result(found: dict[str, Any]) -> dict[str, Any]:
    """The expectation's result: success when nothing offends; observed is the count, the sample the rows."""
    return {"success": found["total"] == 0,
            "result": {"observed_value": found["total"], "partial_unexpected_list": found["rows"]}}
