"""No published row's clients are another row's minus fewer than min_bucket_size clients.

Two rows whose client sets are nested (one a subset of the other) reveal their difference: a row
of 5,000 clients and one of the same 5,000 plus 3 more publish those 3. So does a row less all the
rows nested in it: a total published beside its cells, one cell withheld, reveals that cell. Stage computes the nested
pairs in the warehouse (sql.rewrite, the differencing side table) unless every client is in one
row only; this check fails on any pair it found, or when there were too many pairs to compare
(PUBDATA_DIFFERENCING_MAX_WORK): a check that could not run never passes.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pubdata.declarations import Declaration
from pubdata.sql.rewrite import enforces_minimum, max_work
from pubdata.validation.spec import ExpectationSpec
from pubdata.warehouses.base import DIFFERENCING, DISJOINT, ROW

if TYPE_CHECKING:
    from pubdata.warehouses.base import Column, StagedTable, Warehouse

NAME = "ExpectNoRowToDifferFromANestedRowByFewerThanTheMinimum"
SAMPLE = 10


def expectations(decl: Declaration) -> list[ExpectationSpec]:
    if not enforces_minimum(decl.spec):
        return []
    k = decl.spec.policy.min_bucket_size
    return [ExpectationSpec(NAME, {"minimum": k, "max_work": max_work()}, columns=(DISJOINT,),
                            description=f"no row's clients are another row's minus fewer than {k:,} clients "
                                        "(differencing)")]


def check(spec: ExpectationSpec, decl: Declaration, warehouse: Warehouse, staged: StagedTable,
          columns: list[Column]) -> dict[str, Any]:
    overlapping = int(warehouse.scalar(staged, f"SELECT COUNT(*) FROM {{table}} WHERE NOT {DISJOINT}") or 0)
    if not overlapping:
        return {"success": True, "observed": "every client is in one row: no row can contain another",
                "expected": "no nested rows"}
    side = warehouse.side(staged, DIFFERENCING)
    summary = warehouse.rows(side, "SELECT units_a, units_b, difference FROM {table} WHERE kind = 'summary'", 1)
    if not summary:
        return {"success": False, "error": f"the differencing check of {decl.id} was not computed: stage again"}
    shared, patterns, work = (int(v or 0) for v in summary[0])
    if work > int(spec.kwargs["max_work"]):
        return {"success": False, "expected": f"at most {int(spec.kwargs['max_work']):,} pairs to compare",
                "observed": f"too large to check: {shared:,} clients in several rows, {patterns:,} sets of rows, "
                            f"{work:,} pairs; publish fewer overlapping rows, or raise PUBDATA_DIFFERENCING_MAX_WORK"}
    k = int(spec.kwargs["minimum"])
    found = warehouse.rows(side, "SELECT kind, row_a, row_b, units_a, units_b, difference FROM {table} "
                                 "WHERE kind IN ('nested', 'rest') ORDER BY difference, kind, row_b, row_a", SAMPLE)
    nested = int(warehouse.scalar(side, "SELECT COUNT(*) FROM {table} WHERE kind = 'nested'") or 0)
    rest = int(warehouse.scalar(side, "SELECT COUNT(*) FROM {table} WHERE kind = 'rest'") or 0)
    shown = _published_rows(decl, warehouse, staged, [key for f in found for key in f[1:3] if key is not None])
    sample = [{"row": shown.get(a, _key(a)), "inside": shown.get(b, _key(b)), "clients": ua,
               "clients of the larger": ub, "difference": d}
              if kind == "nested" else
              {"row": shown.get(b, _key(b)), "clients": ub, "clients in the rows inside it": ua, "difference": d}
              for kind, a, b, ua, ub, d in found]
    parts = []
    if nested:
        parts.append(f"{nested:,} pair(s) of nested rows differ by fewer than {k:,} clients")
    if rest:
        parts.append(f"{rest:,} row(s) less the rows nested in them leave fewer than {k:,} clients")
    observed = "; ".join(parts) or f"no nested rows ({shared:,} clients in several rows compared)"
    return {"success": not parts, "observed": observed, "expected": "no nested rows", "unexpected_sample": sample}


SHOWN_ROWS = 100_000
"""Staged rows read to show the sampled rows' dimensions; a larger table shows group keys instead."""


def _published_rows(decl: Declaration, warehouse: Warehouse, staged: StagedTable, keys: list[str]) -> dict[str, Any]:
    """The declared dimensions of the staged rows with these row keys, as on-call reads them."""
    if not keys:
        return {}
    dims = [d.name for d in decl.spec.policy.dimensions]
    columns = ", ".join(warehouse.quote(c) for c in [ROW, *dims])
    rows = warehouse.rows(staged, f"SELECT {columns} FROM {{table}}", SHOWN_ROWS)
    wanted = set(keys)
    return {row[0]: {d: _plain(v) for d, v in zip(dims, row[1:], strict=True)} for row in rows if row[0] in wanted}


def _plain(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def _key(text: Any) -> Any:
    """A row's group key (JSON of its grouping values), for people."""
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return text
    if isinstance(value, dict):
        value.pop("b", None)
        return list(value.values())
    return value
