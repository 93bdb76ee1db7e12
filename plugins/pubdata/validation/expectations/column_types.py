"""Each declared column has a warehouse type its kind allows.

Evaluated on the staged table's schema as the warehouse reports it (GX's type expectation cannot
read DuckDB's types); the warehouse says which family each of its type names belongs to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pubdata.declarations import Declaration
from pubdata.validation.spec import ExpectationSpec

if TYPE_CHECKING:
    from pubdata.warehouses.base import Column, StagedTable, Warehouse

COLUMN_TYPES_EXPECTATION = "ExpectTableColumnTypesToMatchDeclaration"

# Declared kind -> the type families a column of that kind may have.
KIND_FAMILIES: dict[str, tuple[str, ...]] = {
    "date": ("date",),
    "categorical": ("string", "integer", "boolean"),
    "geo_country": ("string",),
    "geo_city": ("string",),
    "version": ("string",),
    "numeric_bucket": ("integer", "fractional", "string"),
    "metric": ("integer", "fractional"),
    "bucket": ("integer",),  # distinct clients: a count
}


def accepted_types(warehouse: type[Warehouse] | Warehouse, kind: str) -> list[str]:
    """The warehouse's type names a column of this kind may have."""
    return sorted(set().union(*(warehouse.TYPE_FAMILIES[f] for f in KIND_FAMILIES[kind])))


def column_kinds(decl: Declaration) -> dict[str, str]:
    p = decl.spec.policy
    kinds: dict[str, str] = {d.name: d.kind for d in p.dimensions}
    kinds.update({m.name: "bucket" if m.name == p.bucket_column else "metric" for m in p.metrics})
    return kinds


def column_types_expectation(decl: Declaration) -> ExpectationSpec:
    return ExpectationSpec(
        COLUMN_TYPES_EXPECTATION, {"column_kinds": column_kinds(decl)},
        description="every declared column has a type its kind allows",
    )




def check_column_types(spec: ExpectationSpec, columns: list[Column],
                       warehouse: type[Warehouse] | Warehouse) -> dict[str, Any]:
    """Evaluate the column-types expectation on the staged table's schema.

    Columns that are absent are left to the column-set expectation. Returns the fields of a
    CheckResult: success, observed (the wrong types) and expected (the accepted ones).
    """
    kinds: dict[str, str] = spec.kwargs["column_kinds"]
    present = {c.name: c.type for c in columns}
    wrong, expected = {}, {}
    for name, kind in kinds.items():
        if name not in present:
            continue
        if warehouse.type_family(present[name]) not in KIND_FAMILIES[kind]:
            wrong[name] = present[name]
            expected[name] = accepted_types(warehouse, kind)
    return {"success": not wrong, "observed": wrong or {n: present[n] for n in kinds if n in present},
            "expected": expected or {"kinds": kinds, "engine": warehouse.engine}}


def check(spec: ExpectationSpec, decl: Declaration, warehouse: Warehouse, staged: StagedTable,
          columns: list[Column]) -> dict[str, Any]:
    return check_column_types(spec, columns, warehouse)
