"""Totals: a row marked as a total equals the sum of the published cells it covers (and a total
over cells that are not published would reveal them)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pubdata.declarations import Declaration
from pubdata.validation.batch_sql import SOURCE_DIALECT, batch_query
from pubdata.validation.spec import ExpectationSpec

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


def totals_expectation(decl: Declaration, total: Total, dialect: str = SOURCE_DIALECT) -> ExpectationSpec:
    """The expectation, its SQL rendered for `dialect` (the warehouse's)."""
    query = batch_query(totals_sql(decl, total), write=dialect)
    return ExpectationSpec(
        "UnexpectedRowsExpectation", {"unexpected_rows_query": query}, total.severity,
        f"rows with {total.dimension} = {total.value} equal the sum of the published cells ({', '.join(total.metrics)})",
        "dataset", columns=tuple([d.name for d in decl.spec.policy.dimensions] + list(total.metrics)),
    )

