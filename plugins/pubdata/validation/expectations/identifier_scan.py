"""Identifier scan: no value of a published column looks like an identifier (a UUID, an e-mail
address, plain or obfuscated, an IPv4 or IPv6 address, a URL carrying a query or credentials, a
hex digest or a base64 token).

GX's regex expectations refuse the duckdb dialect, so the scan is SQL in the warehouse's own
regex function, run as a GX UnexpectedRowsExpectation. DuckDB and BigQuery both use RE2, and the
same patterns compile in Python's `re` (no \\d, \\s or \\w, whose meaning differs), so redaction
recognises exactly what the warehouse flagged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pubdata.declarations import Declaration
from pubdata.validation.batch_sql import batch_query
from pubdata.validation.expectations.column_types import column_kinds
from pubdata.validation.spec import ExpectationSpec

if TYPE_CHECKING:
    from pubdata.warehouses.base import Warehouse


@dataclass(frozen=True)
class IdentifierPattern:
    """An identifier's shape (`core`) and the characters that may not touch it on either side
    (`apart_from`, a character class body), so that a version 1.2.3.4.5 or a time 12:30 is not
    an address. RE2 has no lookaround: the warehouse's form matches the neighbours too."""

    core: str
    apart_from: str = ""

    @property
    def re2(self) -> str:
        """The pattern the warehouse (and identifier_kinds) searches with."""
        if not self.apart_from:
            return self.core
        return f"(^|[^{self.apart_from}])({self.core})($|[^{self.apart_from}])"

    @property
    def span(self) -> str:
        """The same identifiers in Python's `re`, matching the identifier alone (for redaction)."""
        if not self.apart_from:
            return self.core
        return f"(?<![{self.apart_from}])({self.core})(?![{self.apart_from}])"


def _run_with_pair(chars: str, one: str, other: str, least: int) -> str:
    """RE2 for a run of at least `least` of `chars` in which a character of `one` and one of
    `other` stand side by side, i.e. a run holding both kinds (RE2 cannot look ahead to count)."""
    pair = f"({one}{other}|{other}{one})"
    tails = [f"{chars}{{{a}}}{pair}{chars}{{{least - 2 - a},}}" for a in range(least - 2)]
    return "(" + "|".join([*tails, f"{chars}{{{least - 2},}}{pair}{chars}*"]) + ")"


_V4 = "(25[0-5]|2[0-4][0-9]|[01]?[0-9]?[0-9])"  # zero-padded octets too: 192.168.001.010
_H = "[0-9A-Fa-f]{1,4}"
_OPEN, _CLOSE, _GAP = "[\\[({<]", "[\\])}>]", "[ \\t]*"
_AT = f"({_GAP}{_OPEN}{_GAP}(?i:at){_GAP}{_CLOSE}{_GAP}|[ \\t]+(?i:at)[ \\t]+)"
_DOT = f"({_GAP}{_OPEN}{_GAP}(?i:dot){_GAP}{_CLOSE}{_GAP}|[ \\t]+(?i:dot)[ \\t]+)"

IDENTIFIERS: dict[str, tuple[IdentifierPattern, ...]] = {
    "uuid": (IdentifierPattern("[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"),),
    # A domain may lack a top-level domain (ALICE@EXAMPLE) but starts with a letter: @home, icon@2x are words.
    "e-mail": (IdentifierPattern("[A-Za-z0-9._%+-]+@[A-Za-z][A-Za-z0-9-]*(\\.[A-Za-z0-9-]+)*"),),
    # alice (at) example (dot) com, alice[at]example.com, alice at example dot com
    "obfuscated e-mail": (IdentifierPattern(
        f"[A-Za-z0-9._%+-]+{_AT}[A-Za-z0-9-]+(({_DOT}|\\.)[A-Za-z0-9-]+)*{_DOT}[A-Za-z0-9-]+", "A-Za-z0-9"),
        IdentifierPattern(f"[A-Za-z0-9._%+-]+{_GAP}{_OPEN}{_GAP}(?i:at){_GAP}{_CLOSE}{_GAP}[A-Za-z][A-Za-z0-9-]*"
                          "(\\.[A-Za-z0-9-]+)*", "A-Za-z0-9")),
    "ipv4": (IdentifierPattern(f"{_V4}(\\.{_V4}){{3}}", "0-9A-Za-z."),),
    "ipv6": (IdentifierPattern(f"(({_H}:){{7}}{_H}|({_H}:){{1,7}}:({_H}(:{_H}){{0,5}})?|::{_H}(:{_H}){{0,6}})",
                               "0-9A-Za-z:"),),
    # a query string or a fragment with a value (tokens, session ids, e-mail in a parameter), or credentials
    "url with a query or credentials": (
        IdentifierPattern("(?i:https?|ftp|wss?)://[^ \\t?#]+(\\?[^ \\t#]+(#[^ \\t]*)?|#[^ \\t]*=[^ \\t]*)"),
        IdentifierPattern("(?i:[a-z][a-z0-9+.-]*)://[^ \\t/?#@]+@[^ \\t]*"),
    ),
    # 32 hex digits or more, or 16 or more that mix digits and letters (digits alone are counts)
    "hex digest": (IdentifierPattern(f"([0-9A-Fa-f]{{32,}}|{_run_with_pair('[0-9A-Fa-f]', '[0-9]', '[A-Fa-f]', 16)})",
                                     "0-9A-Za-z"),),
    # 24 or more base64 characters mixing digits and letters, base64 with its padding, or a JWT
    "base64 token": (
        IdentifierPattern(_run_with_pair("[A-Za-z0-9]", "[0-9]", "[A-Za-z]", 24) + "={0,2}", "A-Za-z0-9"),
        IdentifierPattern("[A-Za-z0-9+/]{16,}={1,2}", "A-Za-z0-9+/="),
        IdentifierPattern("eyJ[A-Za-z0-9_-]{8,}\\.[A-Za-z0-9_-]{8,}\\.[A-Za-z0-9_-]{8,}", "A-Za-z0-9_-"),
    ),
}
IDENTIFIER_PATTERNS: dict[str, str] = {
    kind: "|".join(f"({p.re2})" for p in patterns) if len(patterns) > 1 else patterns[0].re2
    for kind, patterns in IDENTIFIERS.items()
}
"""Each kind's pattern as the warehouse searches it (RE2 syntax that Python's re reads the same way)."""
# Four dotted numbers are an IPv4 address anywhere but in a version (10.0.19045.1234).
_PATTERNS_BY_KIND = {"version": [k for k in IDENTIFIER_PATTERNS if k != "ipv4"]}
_COMPILED = {k: re.compile(p) for k, p in IDENTIFIER_PATTERNS.items()}
IDENTIFIER_SPANS = [re.compile(p.span) for patterns in IDENTIFIERS.values() for p in patterns]
"""The identifiers themselves, without their neighbours: what redaction replaces in free text."""
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
