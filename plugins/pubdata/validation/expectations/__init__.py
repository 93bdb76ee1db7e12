"""Built-in expectations, one per module, and the registry that builds any expectation by name.

GX ships most expectations; the ones it does not (forbidden columns, geo values) are real GX
expectations defined in their module, listed in CUSTOM. Checks GX cannot express (column types
as the warehouse names them, the client counts and differencing, which list the failing rows)
are evaluated by the warehouse directly, listed in NATIVE_CHECKS. Adding a check is adding a
module here and listing it in one of the two.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from pubdata.errors import ExpectationsFileError
from pubdata.validation.expectations import (
    client_counts,
    column_types,
    differencing,
    finite_metrics,
    forbidden_columns,
    geo,
    unique_dimensions,
)
from pubdata.validation.spec import ExpectationSpec

if TYPE_CHECKING:
    from pubdata.declarations import Declaration
    from pubdata.warehouses.base import Column, StagedTable, Warehouse

CUSTOM = (forbidden_columns, geo, finite_metrics, unique_dimensions)
"""Modules defining expectations GX does not ship; each has gx_expectations() -> {name: class}."""

NativeCheck = Callable[[ExpectationSpec, "Declaration", "Warehouse", "StagedTable", "list[Column]"], dict[str, Any]]
NATIVE_CHECKS: dict[str, NativeCheck] = {
    column_types.COLUMN_TYPES_EXPECTATION: column_types.check,
    client_counts.MINIMUM: client_counts.check,
    client_counts.AGREEMENT: client_counts.check,
    differencing.NAME: differencing.check,
}
"""Checks the warehouse evaluates directly: name -> check(spec, decl, warehouse, staged, columns) ->
the fields of a CheckResult (success, observed, expected, unexpected_sample or error)."""


@lru_cache(maxsize=1)
def custom_expectations() -> dict[str, type]:
    out: dict[str, type] = {}
    for module in CUSTOM:
        out.update(module.gx_expectations())
    return out


def gx_class(name: str) -> type | None:
    """The GX expectation class called `name`, ours or GX's own; None when there is none."""
    import great_expectations as gx

    return custom_expectations().get(name) or getattr(gx.expectations, name, None)


def build_expectation(spec: ExpectationSpec) -> Any:
    cls = gx_class(spec.name)
    if cls is None:
        raise ExpectationsFileError(f"unknown expectation {spec.name}")
    return cls(**spec.kwargs, meta={"severity": spec.severity, "description": spec.description})
