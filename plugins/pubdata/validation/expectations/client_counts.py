"""The minimum bucket, as the warehouse counts it: every staged row stands for at least
min_bucket_size distinct privacy units, and the declared bucket column says the same.

Stage adds the warehouse's own count to every row (_pubdata_units, sql.rewrite); these checks
compare it with the policy and with the column the query author computed, so a literal, a window
count, a count inflated by a join or a scaled count fails here, naming the rows. They run as SQL
in the warehouse (`Warehouse.rows`), not through Great Expectations, so failures list the rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pubdata.declarations import Declaration
from pubdata.sql.rewrite import enforces_minimum
from pubdata.sql.rules import analyze_query
from pubdata.validation.spec import ExpectationSpec
from pubdata.warehouses.base import UNITS

if TYPE_CHECKING:
    from pubdata.warehouses.base import Column, StagedTable, Warehouse

MINIMUM = "ExpectEveryRowToCountTheMinimumOfClients"
AGREEMENT = "ExpectBucketColumnToMatchTheClientCount"
SAMPLE = 20


def expectations(decl: Declaration) -> list[ExpectationSpec]:
    policy = decl.spec.policy
    if not enforces_minimum(decl.spec):
        return []
    k, bucket = policy.min_bucket_size, policy.bucket_column
    analysis = analyze_query(decl.query, decl.spec)
    kind = analysis.shape.bucket if analysis.shape is not None else None
    filtered = kind == "filtered_units"
    agreement = (f"{bucket} counts clients of the row (at least {k:,} and at most the row's distinct clients)"
                 if filtered else f"{bucket} equals the row's distinct clients as the warehouse counts them")
    return [
        ExpectationSpec(MINIMUM, {"minimum": k}, columns=(UNITS,),
                        description=f"every row stands for at least {k:,} distinct clients, counted by the warehouse"),
        ExpectationSpec(AGREEMENT, {"column": bucket, "minimum": k, "filtered": filtered}, columns=(UNITS,),
                        description=agreement),
    ]


def _dimensions(decl: Declaration, warehouse: type[Warehouse] | Warehouse) -> list[str]:
    return [warehouse.quote(d.name) for d in decl.spec.policy.dimensions]


def check(spec: ExpectationSpec, decl: Declaration, warehouse: Warehouse, staged: StagedTable,
          columns: list[Column]) -> dict[str, Any]:
    """Evaluate MINIMUM or AGREEMENT on the staged table; the fields of a CheckResult."""
    units = warehouse.quote(UNITS)
    if spec.name == MINIMUM:
        k = int(spec.kwargs["minimum"])
        where = f"{units} IS NULL OR {units} < {k}"
        shown = [*_dimensions(decl, warehouse), units]
        expected: Any = {"clients per row": f">= {k:,}"}
        why = f"under {k:,} distinct clients"
    else:
        bucket = warehouse.quote(spec.kwargs["column"])
        k = int(spec.kwargs["minimum"])
        if spec.kwargs.get("filtered"):
            where = f"{bucket} IS NULL OR {bucket} < {k} OR {bucket} > {units}"
            expected = {spec.kwargs["column"]: f">= {k:,} and <= the row's distinct clients"}
        else:
            where = f"{bucket} IS NULL OR {bucket} <> {units}"
            expected = {spec.kwargs["column"]: "= the row's distinct clients"}
        shown = [*_dimensions(decl, warehouse), bucket, units]
        why = f"whose {spec.kwargs['column']} disagrees with the warehouse's count"
    count = int(warehouse.scalar(staged, f"SELECT COUNT(*) FROM {{table}} WHERE {where}") or 0)
    sample: list[dict[str, Any]] = []
    if count:
        names = [d.name for d in decl.spec.policy.dimensions] + (
            [] if spec.name == MINIMUM else [spec.kwargs["column"]]) + ["distinct clients (warehouse)"]
        rows = warehouse.rows(staged, f"SELECT {', '.join(shown)} FROM {{table}} WHERE {where} ORDER BY {units}",
                              SAMPLE)
        sample = [{n: _plain(v) for n, v in zip(names, row, strict=True)} for row in rows]
    observed = f"{count:,} row{'' if count == 1 else 's'} {why}" if count else "every row"
    return {"success": count == 0, "observed": observed, "expected": expected, "unexpected_sample": sample}


def _plain(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value
