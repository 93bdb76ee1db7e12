"""The validation suite of a dataset: what the policy requires of every staged table, the checks
the declaration implies on the warehouse's engine (column types, finite metrics, one row per
cell, the identifier scan), the dataset's own expectations file and the row-count band."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pubdata.declarations import Declaration
from pubdata.policy.geo import GEO_KINDS, describe
from pubdata.sql.rewrite import enforces_minimum
from pubdata.validation import expectations_file
from pubdata.validation.expectations import client_counts, differencing
from pubdata.validation.expectations.column_types import column_types_expectation
from pubdata.validation.expectations.finite_metrics import finite_metrics
from pubdata.validation.expectations.identifier_scan import identifier_scan
from pubdata.validation.expectations.row_count_band import row_count_band
from pubdata.validation.expectations.unique_dimensions import unique_dimensions
from pubdata.validation.spec import ExpectationSpec
from pubdata.warehouses.base import INTERNAL_COLUMNS

if TYPE_CHECKING:
    from pubdata.warehouses.base import Warehouse


def policy_expectations(decl: Declaration) -> list[ExpectationSpec]:
    """What the publishing policy requires of every staged table of this dataset."""
    p = decl.spec.policy
    specs = [
        ExpectationSpec(
            "ExpectTableColumnsToMatchSet",
            {"column_set": p.columns + (list(INTERNAL_COLUMNS) if enforces_minimum(decl.spec) else []),
             "exact_match": True},
            description="columns equal the declared dimensions and metrics",
        ),
        ExpectationSpec(
            "ExpectTableColumnsToExcludeForbidden",
            {},
            description="no forbidden column (identifiers, IP addresses, raw URLs, ...)",
            sensitive=True,
        ),
        ExpectationSpec(
            "ExpectTableRowCountToBeBetween",
            {"min_value": 1},
            description="the query returns at least one row",
        ),
    ]
    if p.bucket_column:
        specs += [
            ExpectationSpec(
                "ExpectColumnValuesToNotBeNull",
                {"column": p.bucket_column},
                description=f"{p.bucket_column} is never null",
            ),
            ExpectationSpec(
                "ExpectColumnValuesToBeBetween",
                {"column": p.bucket_column, "min_value": p.min_bucket_size},
                description=f"every row, {p.other_label} rows included, has {p.bucket_column} >= {p.min_bucket_size}",
            ),
        ]
    for d in p.dimensions:
        specs.append(ExpectationSpec(
            "ExpectColumnValuesToNotBeNull", {"column": d.name}, description=f"dimension {d.name} is never null",
        ))
        if d.kind in GEO_KINDS:
            specs.append(ExpectationSpec(
                "ExpectColumnValuesToBeValidGeo", {"column": d.name, "geo_kind": d.kind, "other_label": p.other_label},
                description=f"dimension {d.name} holds {describe(d.kind, p.other_label)}",
            ))
    return specs


def suite_for(decl: Declaration, warehouse: type[Warehouse] | Warehouse,
              previous: tuple[str, int] | None = None) -> list[ExpectationSpec]:
    """The whole suite: the policy's expectations, the checks the declaration implies on this
    warehouse (column types, identifier scan), the dataset's own file, and the row-count band
    against `previous` (label, rows), the last published partition, when there is one."""
    own = expectations_file.load(decl.expectations_path, decl, warehouse)
    declared = [column_types_expectation(decl), *finite_metrics(decl), *unique_dimensions(decl),
                *identifier_scan(decl, warehouse)]
    counted = client_counts.expectations(decl) + differencing.expectations(decl)
    return policy_expectations(decl) + counted + declared + own.specs + row_count_band(own.row_count, previous)
