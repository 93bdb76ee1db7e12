"""Checks generated from the declaration for one engine, and the consistency checks of the
dataset's expectations file, as ExpectationSpecs the validation suite runs.

- column types: each declared column has a warehouse type its kind allows (DuckDB and BigQuery
  spell types differently, so the accepted names are per engine);
- identifier scan: no value of a published column looks like an identifier (UUID, e-mail, IPv4,
  IPv6, long hex digest). GX's regex expectations refuse the duckdb dialect, so the scan is SQL
  in the engine's own regex function (DuckDB regexp_matches, BigQuery REGEXP_CONTAINS), run as a
  GX UnexpectedRowsExpectation. Both engines use RE2, and the same patterns compile in Python's
  `re`, so alerts and reports recognise exactly what the warehouse flagged;
- totals: a row marked as a total equals the sum of the published cells it covers;
- row-count band: the row count stays within a band of the previous published partition.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from pubdata.declaration import Declaration
from pubdata.validation import ExpectationSpec

# -- column types ------------------------------------------------------------------------------

COLUMN_TYPES_EXPECTATION = "ExpectTableColumnTypesToMatchDeclaration"

_TYPE_NAMES: dict[str, dict[str, frozenset[str]]] = {
    "duckdb": {
        "date": frozenset({"DATE"}),
        "string": frozenset({"VARCHAR"}),
        "boolean": frozenset({"BOOLEAN"}),
        "integer": frozenset({"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT",
                              "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT"}),
        "fractional": frozenset({"FLOAT", "DOUBLE", "DECIMAL"}),
    },
    "bigquery": {
        "date": frozenset({"DATE"}),
        "string": frozenset({"STRING"}),
        "boolean": frozenset({"BOOL"}),
        "integer": frozenset({"INT64"}),
        "fractional": frozenset({"FLOAT64", "NUMERIC", "BIGNUMERIC"}),
    },
}

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


def _base_type(type_name: str) -> str:
    """DECIMAL(18,3) -> DECIMAL, NUMERIC(10) -> NUMERIC."""
    return re.sub(r"\s*\(.*\)$", "", type_name.strip()).upper()


def accepted_types(engine: str, kind: str) -> list[str]:
    names = _TYPE_NAMES.get(engine)
    if names is None:
        raise ValueError(f"no column types known for engine {engine!r} (known: {', '.join(_TYPE_NAMES)})")
    return sorted(set().union(*(names[f] for f in KIND_FAMILIES[kind])))


def column_kinds(decl: Declaration) -> dict[str, str]:
    p = decl.spec.policy
    kinds = {d.name: d.kind for d in p.dimensions}
    kinds.update({m.name: "bucket" if m.name == p.bucket_column else "metric" for m in p.metrics})
    return kinds


def column_types_expectation(decl: Declaration) -> ExpectationSpec:
    return ExpectationSpec(
        COLUMN_TYPES_EXPECTATION, {"column_kinds": column_kinds(decl)},
        description="every declared column has a type its kind allows",
    )


def check_column_types(spec: ExpectationSpec, columns: list, engine: str) -> dict[str, Any]:
    """Evaluate the column-types expectation on the staged table's schema, as the warehouse reports it.

    Columns that are absent are left to the column-set expectation. Returns the fields of a
    CheckResult: success, observed (the wrong types) and expected (the accepted ones).
    """
    kinds: dict[str, str] = spec.kwargs["column_kinds"]
    present = {c.name: c.type for c in columns}
    wrong, expected = {}, {}
    for name, kind in kinds.items():
        if name not in present:
            continue
        accepted = accepted_types(engine, kind)
        if _base_type(present[name]) not in accepted:
            wrong[name] = present[name]
            expected[name] = accepted
    return {"success": not wrong, "observed": wrong or {n: present[n] for n in kinds if n in present},
            "expected": expected or {"kinds": kinds, "engine": engine}}


# -- identifier scan ---------------------------------------------------------------------------

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


WITHHELD = "[redacted]"  # what stands in for a value that may be an identifier
_TOKEN = re.compile(r"[^\s'\"(),;=<>\[\]{}]+")


def redact_text(text: str) -> str:
    """Free text (an error message) with every identifier-looking token replaced by [redacted]."""
    return _TOKEN.sub(lambda m: WITHHELD if looks_like_identifier(m.group(0)) else m.group(0), text)


def _quote(engine: str, column: str) -> str:
    return f"`{column}`" if engine == "bigquery" else '"' + column.replace('"', '""') + '"'


def regex_predicate(engine: str, column: str, pattern: str) -> str:
    """SQL that is true when the column's value, as text, contains a match of pattern."""
    if "'" in pattern:
        raise ValueError("identifier patterns must not contain a single quote")
    col = _quote(engine, column)
    if engine == "duckdb":
        return f"regexp_matches(CAST({col} AS VARCHAR), '{pattern}')"
    if engine == "bigquery":
        return f"REGEXP_CONTAINS(CAST({col} AS STRING), r'{pattern}')"
    raise ValueError(f"no regex function known for engine {engine!r}")


def identifier_scan_sql(engine: str, column: str, kinds: list[str]) -> str:
    """An unexpected-rows query: one row per value of `column` that looks like an identifier.

    It selects no value, only a marker, so nothing identifying leaves the warehouse through the
    validation result. Braces are doubled because GX formats `{batch}` into the query.
    """
    pattern = "|".join(f"({IDENTIFIER_PATTERNS[k]})" for k in kinds)
    predicate = regex_predicate(engine, column, pattern).replace("{", "{{").replace("}", "}}")
    return f"SELECT 1 AS looks_like_identifier FROM {{batch}} WHERE {predicate}"


def identifier_scan(decl: Declaration, engine: str) -> list[ExpectationSpec]:
    """One expectation per published column (dates cannot hold an identifier and are skipped)."""
    specs = []
    for name, kind in column_kinds(decl).items():
        if kind == "date":
            continue
        kinds = _PATTERNS_BY_KIND.get(kind, list(IDENTIFIER_PATTERNS))
        specs.append(ExpectationSpec(
            "UnexpectedRowsExpectation", {"unexpected_rows_query": identifier_scan_sql(engine, name, kinds)},
            description=f"{IDENTIFIER_SCAN_PREFIX}{name} looks like an identifier ({', '.join(kinds)})",
            columns=(name,), sensitive=True,
        ))
    return specs


def declared_checks(decl: Declaration, engine: str) -> list[ExpectationSpec]:
    """What the declaration implies beyond the policy basics, for this engine."""
    return [column_types_expectation(decl), *identifier_scan(decl, engine)]


# -- totals ------------------------------------------------------------------------------------

MARKER_RE = re.compile(r"^[A-Za-z0-9 _.\-]{1,64}$")


@dataclass(frozen=True)
class Total:
    """Rows whose `dimension` is `value` are totals: each metric equals the sum of the published
    rows that share the other dimensions and have any other value of `dimension`."""

    dimension: str
    value: str
    metrics: tuple[str, ...]
    tolerance: float = 0.0
    severity: str = "fail"


def totals_sql(decl: Declaration, total: Total) -> str:
    """Unexpected rows: total rows whose metrics differ from the sum of their published cells.

    Portable between DuckDB and BigQuery (no quoting needed: names are declared identifiers,
    the marker is checked against MARKER_RE). A total with no published cells under it is
    unexpected too: it would reveal suppressed cells.
    """
    others = [d.name for d in decl.spec.policy.dimensions if d.name != total.dimension]
    sums = ", ".join(f"SUM(c.{m}) AS {m}" for m in total.metrics)
    differs = " OR ".join(f"s.{m} IS NULL OR ABS(t.{m} - s.{m}) > {total.tolerance!r}" for m in total.metrics)
    marker = f"'{total.value}'"
    if others:
        keys = ", ".join(f"c.{o}" for o in others)
        cells = f"SELECT {keys}, {sums} FROM {{batch}} AS c WHERE c.{total.dimension} <> {marker} GROUP BY {keys}"
        on = " AND ".join(f"t.{o} = s.{o}" for o in others)
        join = f"LEFT JOIN ({cells}) AS s ON {on}"
    else:
        join = f"CROSS JOIN (SELECT {sums} FROM {{batch}} AS c WHERE c.{total.dimension} <> {marker}) AS s"
    return f"SELECT t.{total.dimension} FROM {{batch}} AS t {join} WHERE t.{total.dimension} = {marker} AND ({differs})"


def totals_expectation(decl: Declaration, total: Total) -> ExpectationSpec:
    return ExpectationSpec(
        "UnexpectedRowsExpectation", {"unexpected_rows_query": totals_sql(decl, total)}, total.severity,
        f"rows with {total.dimension} = {total.value} equal the sum of the published cells ({', '.join(total.metrics)})",
        "dataset", columns=tuple([d.name for d in decl.spec.policy.dimensions] + list(total.metrics)),
    )


# -- row-count band ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RowCountBand:
    """The row count must lie within [min_ratio, max_ratio] times the previous published partition's."""

    min_ratio: float = 0.5
    max_ratio: float = 2.0
    severity: str = "warn"


DEFAULT_ROW_COUNT_BAND = RowCountBand()


def row_count_band(band: RowCountBand | None, previous: tuple[str, int] | None) -> list[ExpectationSpec]:
    """The band expectation, or none on the first partition (nothing to compare with) or when disabled."""
    if band is None or previous is None:
        return []
    where, rows = previous
    low, high = math.floor(rows * band.min_ratio), math.ceil(rows * band.max_ratio)
    return [ExpectationSpec(
        "ExpectTableRowCountToBeBetween", {"min_value": low, "max_value": high}, band.severity,
        f"row count within {band.min_ratio:g}x-{band.max_ratio:g}x of the previous published {where} ({rows} rows)",
        "dataset",
    )]


def previous_published(store, decl: Declaration, partition: str | None) -> tuple[str, int] | None:
    """(label, rows) of the publication to compare with: the latest published partition before
    this one (incremental), or the current publication (full tables); None the first time.

    Read from the public metadata.json, i.e. what was really published, through the store.
    """
    from pubdata.publish import table_prefix

    obj = store.read(f"{table_prefix(decl)}/metadata.json")
    if obj is None:
        return None
    meta = json.loads(obj.data)
    if decl.spec.incremental:
        earlier = sorted(p for p in (meta.get("partitions") or {}) if partition is None or p < partition)
        if not earlier:
            return None
        return f"partition {earlier[-1]}", int(meta["partitions"][earlier[-1]]["rows"])
    if meta.get("row_count") is None:
        return None
    return "version", int(meta["row_count"])
