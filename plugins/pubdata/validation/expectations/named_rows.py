"""What the built-in expectations that name the rows breaking them share.

GX's UnexpectedRowsExpectation reports how many rows a query returned, not which (only its
COMPLETE result format carries them, and the suite runs in SUMMARY so that no column check
fetches every bad value). A named-rows expectation's metric runs one SQLAlchemy query for the
offending rows (the same on every warehouse) and reports their count and the first SAMPLE_SIZE
of them by their dimensions, so on-call reads which cells to look at. Each expectation (finite
metrics, unique dimensions) builds its query and gets its GX classes from gx_classes.
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


def gx_classes(module: str, name: str, metric: str, offending: Offending, doc: str) -> dict[str, type]:
    """The GX metric and expectation (named `name`) of a named-rows check, registered with GX.

    Built with type() because GX registers a metric and an expectation when their classes are
    created (the expectation under its class name); `module` is the defining module, as a class
    statement there would record it.
    """
    from typing import ClassVar

    from great_expectations.execution_engine import SqlAlchemyExecutionEngine
    from great_expectations.expectations.expectation import BatchExpectation
    from great_expectations.expectations.metrics.metric_provider import metric_value
    from great_expectations.expectations.metrics.table_metric_provider import TableMetricProvider

    def _sqlalchemy(cls, execution_engine, metric_domain_kwargs, metric_value_kwargs, metrics, runtime_configuration):
        return offending_rows(execution_engine, metric_domain_kwargs, metric_value_kwargs, offending)

    type(f"Table{name}Rows", (TableMetricProvider,), {
        "__module__": module, "__doc__": f"{{'total': offending rows, 'rows': the first of them}}: {doc}",
        "metric_name": metric, "value_keys": ("columns", "named_by"),
        "_sqlalchemy": metric_value(engine=SqlAlchemyExecutionEngine)(_sqlalchemy),
    })

    def _validate(self, metrics, runtime_configuration=None, execution_engine=None):
        return named_rows_result(metrics[metric])

    keys = ("columns", "named_by")
    expectation = type(name, (BatchExpectation,), {
        "__module__": module, "__doc__": doc,
        "__annotations__": {"columns": list[str], "named_by": list[str], "metric_dependencies": ClassVar[tuple[str, ...]],
                            "success_keys": ClassVar[tuple[str, ...]], "args_keys": ClassVar[tuple[str, ...]]},
        "metric_dependencies": (metric,), "success_keys": keys, "args_keys": keys, "_validate": _validate,
    })
    return {name: expectation}
