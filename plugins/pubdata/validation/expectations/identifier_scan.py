"""Identifier scan: no value of a published column looks like an identifier (UUID, e-mail, IPv4,
IPv6, long hex digest).

GX's regex expectations refuse the duckdb dialect, so the scan is SQL in the warehouse's own
regex function, run as a GX UnexpectedRowsExpectation. DuckDB and BigQuery both use RE2, and the
same patterns compile in Python's `re`, so redaction recognises exactly what the warehouse flagged.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pubdata.declarations import Declaration
from pubdata.validation.batch_sql import batch_query
from pubdata.validation.expectations.column_types import column_kinds
from pubdata.validation.spec import ExpectationSpec

if TYPE_CHECKING:
    from pubdata.warehouses.base import Warehouse

_V4 = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_H = r"[0-9A-Fa-f]{1,4}"

# RE2 syntax that Python's re reads the same way. Each pattern stands alone: the characters
# around a match must not continue it (so a version 1.2.3 or a time 12:30 is not an address).
IDENTIFIER_PATTERNS: dict[str, str] = {
    "uuid": r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}",
    "e-mail": r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
    "ipv4": rf"(^|[^0-9A-Za-z.]){_V4}(\.{_V4}){{3}}($|[^0-9A-Za-z.])",
    "ipv6": (rf"(^|[^0-9A-Za-z:])(({_H}:){{7}}{_H}|({_H}:){{1,7}}:({_H}(:{_H}){{0,5}})?|::{_H}(:{_H}){{0,6}})"
             r"($|[^0-9A-Za-z:])"),
    "hex digest": r"(^|[^0-9A-Za-z])[0-9A-Fa-f]{32,}($|[^0-9A-Za-z])",
}
# Four dotted numbers are an IPv4 address anywhere but in a version (10.0.19045.1234).
_PATTERNS_BY_KIND = {"version": [k for k in IDENTIFIER_PATTERNS if k != "ipv4"]}
_COMPILED = {k: re.compile(p) for k, p in IDENTIFIER_PATTERNS.items()}
IDENTIFIER_SCAN_PREFIX = "no value of "


def identifier_kinds(value: Any) -> list[str]:
    """Which identifier patterns a value matches (empty when it looks like none)."""
    if value is None or isinstance(value, bool):
        return []
    text = value if isinstance(value, str) else str(value)
    return [k for k, rx in _COMPILED.items() if rx.search(text)]


def looks_like_identifier(value: Any) -> bool:
    return bool(identifier_kinds(value))



def identifier_scan_sql(warehouse: type[Warehouse] | Warehouse, column: str, kinds: list[str]) -> str:
    """An unexpected-rows query: one row per value of `column` that looks like an identifier.

    It selects no value, only a marker, so nothing identifying leaves the warehouse through the
    validation result. Braces are doubled because GX formats `{batch}` into the query.
    """
    pattern = "|".join(f"({IDENTIFIER_PATTERNS[k]})" for k in kinds)
    predicate = warehouse.regex_contains(warehouse.as_text(warehouse.quote(column)), pattern)
    predicate = predicate.replace("{", "{{").replace("}", "}}")
    dialect = warehouse.SQL_DIALECT
    return batch_query(f"SELECT 1 AS looks_like_identifier FROM {{batch}} WHERE {predicate}", read=dialect, write=dialect)


def identifier_scan(decl: Declaration, warehouse: type[Warehouse] | Warehouse) -> list[ExpectationSpec]:
    """One expectation per published column (dates cannot hold an identifier and are skipped)."""
    specs = []
    for name, kind in column_kinds(decl).items():
        if kind == "date":
            continue
        kinds = _PATTERNS_BY_KIND.get(kind, list(IDENTIFIER_PATTERNS))
        specs.append(ExpectationSpec(
            "UnexpectedRowsExpectation", {"unexpected_rows_query": identifier_scan_sql(warehouse, name, kinds)},
            description=f"{IDENTIFIER_SCAN_PREFIX}{name} looks like an identifier ({', '.join(kinds)})",
            columns=(name,), sensitive=True,
        ))
    return specs
