"""Each combination of dimension values is published once: duplicate cells are refused, named.

Two rows for the same cell leave a reader to guess which is right (or add them up), and usually
mean the query grouped by fewer columns than it publishes. The check groups by every declared
dimension in the warehouse and names the first duplicated cells with how often each occurs.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pubdata.declarations import Declaration
from pubdata.validation.expectations.named_rows import named_rows_result, offending_rows
from pubdata.validation.spec import ExpectationSpec

NAME = "ExpectDimensionsToBeUnique"
METRIC = "pubdata.table.duplicate_cells"


def duplicate_cells(selectable: Any, columns: list[str], named_by: list[str]) -> Any:
    """SELECT each combination of `columns` that occurs more than once, with its number of rows."""
    import sqlalchemy as sa

    keys: list[Any] = [sa.column(c) for c in columns]
    copies = sa.func.count()
    return (sa.select(*keys, copies.label("rows")).select_from(selectable)
            .group_by(*keys).having(copies > 1).order_by(*keys))


def unique_dimensions(decl: Declaration) -> list[ExpectationSpec]:
    dimensions = [d.name for d in decl.spec.policy.dimensions]
    return [ExpectationSpec(
        NAME, {"columns": dimensions, "named_by": dimensions},
        description=f"one row per combination of the dimensions ({', '.join(dimensions)})",
        columns=tuple(dimensions),
    )]


@lru_cache(maxsize=1)
def gx_expectations() -> dict[str, type]:
    """The expectation and its metric, registered with Great Expectations on first use."""
    from typing import ClassVar

    from great_expectations.execution_engine import SqlAlchemyExecutionEngine
    from great_expectations.expectations.expectation import BatchExpectation
    from great_expectations.expectations.metrics.metric_provider import metric_value
    from great_expectations.expectations.metrics.table_metric_provider import TableMetricProvider

    class TableDuplicateCells(TableMetricProvider):
        """{"total": duplicated cells, "rows": the first of them, with their number of rows}."""

        metric_name = METRIC
        value_keys = ("columns", "named_by")

        @metric_value(engine=SqlAlchemyExecutionEngine)
        def _sqlalchemy(cls, execution_engine, metric_domain_kwargs, metric_value_kwargs,  # noqa: N805 (a GX classmethod)
                        metrics, runtime_configuration):
            return offending_rows(execution_engine, metric_domain_kwargs, metric_value_kwargs, duplicate_cells)

    class ExpectDimensionsToBeUnique(BatchExpectation):
        """No combination of the dimension columns occurs in more than one row."""

        columns: list[str]
        named_by: list[str]
        metric_dependencies: ClassVar[tuple[str, ...]] = (METRIC,)
        success_keys: ClassVar[tuple[str, ...]] = ("columns", "named_by")
        args_keys: ClassVar[tuple[str, ...]] = ("columns", "named_by")

        def _validate(self, metrics, runtime_configuration=None, execution_engine=None):
            return named_rows_result(metrics[METRIC])

    for cls in (TableDuplicateCells, ExpectDimensionsToBeUnique):
        cls.__module__ = __name__
    return {NAME: ExpectDimensionsToBeUnique}
