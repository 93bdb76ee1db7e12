"""The geo rule on staged data: country dimensions hold ISO 3166-1 alpha-2 codes or "Other", city
dimensions hold GeoNames cities of over 15,000 inhabitants or "Other".

The check runs inside the warehouse, like every other expectation. Stock
ExpectColumnValuesToBeInSet cannot carry the city list: Great Expectations copies an
expectation's configuration many times per validation and prints the whole IN list into a
diagnostic query, which with ~32,000 cities takes tens of seconds. Here the allowed set stays out
of the expectation's configuration (which holds only the kind) and reaches the warehouse as one
bound parameter: expanded into placeholders on DuckDB, a single array parameter
(`IN UNNEST(@...)`) on BigQuery.

Great Expectations is imported only when a validation builds the expectation.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pubdata.policy.geo import OTHER, geo_values

NAME = "ExpectColumnValuesToBeValidGeo"
METRIC = "pubdata.column.geo_unexpected_values"
SAMPLE_SIZE = 20
"""How many distinct unexpected values a failed check reports (the most frequent first)."""


def unexpected_values_query(selectable: Any, column: str, kind: str, other_label: str = OTHER) -> Any:
    """SELECT the distinct values of `column` outside the allowed set, with rows per value and in total.

    NULLs are left to the not-null expectation; non-string columns are compared as text, so a
    numeric "country" is a data failure, not an evaluation error.
    """
    import sqlalchemy as sa

    value = sa.cast(sa.column(column), sa.String())
    allowed = sa.bindparam("pubdata_geo_allowed", sorted(geo_values(kind, other_label)), expanding=True, type_=sa.String())
    rows = sa.func.count()
    return (
        sa.select(value.label("value"), rows.label("rows"), sa.func.sum(rows).over().label("total"))
        .select_from(selectable)
        .where(sa.column(column).is_not(None), value.not_in(allowed))
        .group_by(value)
        .order_by(rows.desc(), value)
        .limit(SAMPLE_SIZE)
    )


@lru_cache(maxsize=1)
def gx_expectations() -> dict[str, type]:
    """The geo expectation and its metric, registered with Great Expectations on first use."""
    from typing import ClassVar, Literal

    from great_expectations.core.metric_domain_types import MetricDomainTypes
    from great_expectations.execution_engine import SqlAlchemyExecutionEngine
    from great_expectations.expectations.expectation import ColumnAggregateExpectation
    from great_expectations.expectations.metrics.column_aggregate_metric_provider import (
        ColumnAggregateMetricProvider,
    )
    from great_expectations.expectations.metrics.metric_provider import metric_value

    class ColumnGeoUnexpectedValues(ColumnAggregateMetricProvider):
        """Distinct values outside the geo kind's allowed set: {"total": rows, "values": [[value, rows], ...]}."""

        metric_name = METRIC
        value_keys = ("geo_kind", "other_label")

        @metric_value(engine=SqlAlchemyExecutionEngine)
        def _sqlalchemy(cls, execution_engine, metric_domain_kwargs, metric_value_kwargs,  # noqa: N805 (a GX classmethod)
                        metrics, runtime_configuration):
            selectable, _, accessor = execution_engine.get_compute_domain(metric_domain_kwargs, MetricDomainTypes.COLUMN)
            query = unexpected_values_query(selectable, accessor["column"], metric_value_kwargs["geo_kind"],
                                            metric_value_kwargs.get("other_label") or OTHER)
            rows = execution_engine.execute_query(query).fetchall()
            return {"total": int(rows[0][2]) if rows else 0, "values": [[r[0], int(r[1])] for r in rows]}

    class ExpectColumnValuesToBeValidGeo(ColumnAggregateExpectation):
        """Every non-null value is valid for the geo kind (an ISO country code or a city over 15,000
        inhabitants) or the declaration's grouped label (policy.other_label)."""

        geo_kind: Literal["geo_country", "geo_city"]
        other_label: str = OTHER
        metric_dependencies: ClassVar[tuple[str, ...]] = (METRIC,)
        success_keys: ClassVar[tuple[str, ...]] = ("geo_kind", "other_label")
        args_keys: ClassVar[tuple[str, ...]] = ("column", "geo_kind", "other_label")

        def _validate(self, metrics, runtime_configuration=None, execution_engine=None):
            found = metrics[METRIC]
            return {
                "success": found["total"] == 0,
                "result": {
                    "observed_value": found["total"],
                    "partial_unexpected_list": [value for value, _ in found["values"]],
                    "details": {"unexpected_value_counts": found["values"]},
                },
            }

    ExpectColumnValuesToBeValidGeo.update_forward_refs(Literal=Literal)  # annotations are strings here
    for cls in (ColumnGeoUnexpectedValues, ExpectColumnValuesToBeValidGeo):
        cls.__module__ = __name__
    return {NAME: ExpectColumnValuesToBeValidGeo}
