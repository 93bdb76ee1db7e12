"""Each combination of dimension values is published once: duplicate cells are refused, named.

Two rows for the same cell leave a reader to guess which is right (or add them up), and usually
mean the query grouped by fewer columns than it publishes. The check groups by every declared
dimension in the warehouse and names the first duplicated cells with how often each occurs.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pubdata.declarations import Declaration
from pubdata.validation.expectations.named_rows import gx_classes
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
    return gx_classes(__name__, NAME, METRIC, duplicate_cells, "No combination of the dimension columns occurs in more than one row.")
