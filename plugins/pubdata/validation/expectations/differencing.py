"""No published row's clients are another row's minus fewer than min_bucket_size clients.

Two rows whose client sets are nested (one a subset of the other) reveal their difference: a row
of 5,000 clients and one of the same 5,000 plus 3 more publish those 3. Stage computes the nested
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
from pubdata.warehouses.base import DIFFERENCING, DISJOINT

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
    nested = warehouse.rows(side, "SELECT row_a, row_b, units_a, units_b, difference FROM {table} "
                                  "WHERE kind = 'nested' ORDER BY difference, row_a, row_b", SAMPLE)
    count = int(warehouse.scalar(side, "SELECT COUNT(*) FROM {table} WHERE kind = 'nested'") or 0)
    sample = [{"row": _key(a), "inside": _key(b), "clients": ua, "clients of the larger": ub, "difference": d}
              for a, b, ua, ub, d in nested]
    observed = (f"{count:,} pair(s) of nested rows differ by fewer than {int(spec.kwargs['minimum']):,} clients"
                if count else f"no nested rows ({shared:,} clients in several rows compared)")
    return {"success": count == 0, "observed": observed, "expected": "no nested rows", "unexpected_sample": sample}


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
