"""Built-in expectations, one per module, and the registry that builds any expectation by name.

GX ships most expectations; the ones it does not (forbidden columns, geo values) are real GX
expectations defined in their module. An ExpectationSpec names either kind; `build_expectation`
makes the GX object. Adding a check is adding a module here and listing it in CUSTOM.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pubdata.errors import ExpectationsFileError
from pubdata.validation.expectations import forbidden_columns, geo
from pubdata.validation.spec import ExpectationSpec

CUSTOM = (forbidden_columns, geo)
"""Modules defining expectations GX does not ship; each has gx_expectations() -> {name: class}."""


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
