"""The geo rule on staged data, evaluated in the warehouse: countries are ISO 3166-1 alpha-2 codes
or Other, cities are GeoNames cities of over 15,000 inhabitants or Other."""

from __future__ import annotations

import dataclasses

import pytest

from pubdata.declarations.spec import Dimension
from pubdata.policy.geo import geo_values
from pubdata.validation.expectations.geo import SAMPLE_SIZE, unexpected_values_query
from pubdata.validation.run import validate
from pubdata.validation.suite import policy_expectations, suite_for
from pubdata.warehouses.duckdb import DuckDBWarehouse
from tests.support.project import GOOD_ROWS


def rows(us: str = "'US'", de: str = "'DE'") -> str:
    """The good rows with other values in the US and DE cells' country column."""
    return GOOD_ROWS.replace("'US', 'Windows_NT'", f"{us}, 'Windows_NT'").replace("'DE', 'Windows_NT'", f"{de}, 'Windows_NT'")


@pytest.fixture()
def city_decl(decl):
    """The example with a city dimension instead of the country."""
    p = decl.spec.policy
    dims = [Dimension(name="city", category=1, kind="geo_city") if d.name == "country" else d for d in p.dimensions]
    spec = decl.spec.model_copy(update={"policy": p.model_copy(update={"dimensions": dims})})
    return dataclasses.replace(decl, spec=spec)


GEO = "ExpectColumnValuesToBeValidGeo"


def geo_specs(decl) -> list:
    return [s for s in policy_expectations(decl) if s.name == GEO]


def geo_checks(report) -> list:
    return [c for c in report.checks if c.expectation == GEO]


def test_every_geo_dimension_gets_a_geo_expectation(decl, city_decl):
    [country] = geo_specs(decl)
    assert country.kwargs == {"column": "country", "geo_kind": "geo_country", "other_label": "Other"}
    assert "ISO 3166-1 alpha-2" in country.description
    [city] = geo_specs(city_decl)
    assert city.kwargs == {"column": "city", "geo_kind": "geo_city", "other_label": "Other"}
    assert "15,000" in city.description
    assert [s for s in suite_for(decl, DuckDBWarehouse) if s.name == GEO] == [country]  # part of every run's suite


def test_good_countries_pass_the_policy_suite(decl, stage_sql):
    wh, staged = stage_sql(rows())
    report = validate(decl, wh, staged, specs=policy_expectations(decl))
    assert report.outcome == "passed", report.summary()
    assert [(c.column, c.status, c.observed) for c in geo_checks(report)] == [("country", "passed", 0)]


@pytest.mark.parametrize("bad", ["XX", "??", "us", "Germany", "USA", "XK", "", "other"])
def test_a_value_that_is_not_a_country_fails_the_export(decl, stage_sql, bad):
    wh, staged = stage_sql(rows(de=f"'{bad}'"))
    report = validate(decl, wh, staged, specs=policy_expectations(decl))
    assert report.outcome == "failed", report.summary()
    [failed] = geo_checks(report)
    assert failed.status == "failed"
    assert failed.description == "dimension country holds an ISO 3166-1 alpha-2 country code or Other"
    assert failed.observed == 1 and failed.unexpected_sample == [bad]
    assert not report.errors


def with_label(decl, label: str):
    p = decl.spec.policy
    return dataclasses.replace(decl, spec=decl.spec.model_copy(
        update={"policy": p.model_copy(update={"other_label": label})}))


def test_the_configured_grouped_label_is_the_one_accepted(decl, stage_sql):
    """Mozilla writes OTHER: with policy.other_label OTHER that label passes, and Other no longer does."""
    mozilla = with_label(decl, "OTHER")
    [spec] = geo_specs(mozilla)
    assert spec.kwargs["other_label"] == "OTHER" and spec.description.endswith("country code or OTHER")
    def relabelled(de: str) -> str:
        return rows(de=de).replace("'Other', 'Other', 'Other', 'Other'", "'OTHER', 'OTHER', 'OTHER', 'OTHER'")

    wh, staged = stage_sql(relabelled("'OTHER'"))
    passed = validate(mozilla, wh, staged, specs=policy_expectations(mozilla))
    assert passed.outcome == "passed", passed.summary()
    assert validate(decl, wh, staged, specs=policy_expectations(decl)).outcome == "failed"
    wh, staged = stage_sql(relabelled("'Other'"))
    report = validate(mozilla, wh, staged, specs=policy_expectations(mozilla))
    assert report.outcome == "failed" and geo_checks(report)[0].unexpected_sample == ["Other"]


def test_unexpected_values_are_reported_most_frequent_first(decl, stage_sql):
    sql = f"""
        SELECT * FROM ({rows()})
        UNION ALL SELECT DATE '2026-11-01', 'ZZ', 'Linux', 'de', 'beta', 1, 6000
        UNION ALL SELECT DATE '2026-11-01', 'XX', 'Linux', 'de', 'beta', 1, 6000
        UNION ALL SELECT DATE '2026-11-01', 'XX', 'Darwin', 'de', 'beta', 1, 6000
    """
    wh, staged = stage_sql(sql)
    report = validate(decl, wh, staged, specs=geo_specs(decl))
    [failed] = report.failures
    assert failed.observed == 3
    assert failed.unexpected_sample == ["XX", "ZZ"]


def test_null_country_is_left_to_the_not_null_expectation(decl, stage_sql):
    wh, staged = stage_sql(rows(de="NULL"))
    report = validate(decl, wh, staged, specs=policy_expectations(decl))
    assert "dimension country is never null" in [c.description for c in report.failures]
    assert [(c.status, c.observed) for c in geo_checks(report)] == [("passed", 0)]


def test_a_numeric_geo_column_is_a_data_failure_not_an_error(decl, stage_sql):
    wh, staged = stage_sql(f"SELECT * REPLACE (CAST(length(country) AS INTEGER) AS country) FROM ({rows()})")
    report = validate(decl, wh, staged, specs=geo_specs(decl))
    assert report.outcome == "failed", report.summary()
    assert report.failures[0].unexpected_sample == ["2", "5"]


CITY_ROWS = """
    SELECT * FROM (VALUES
      (DATE '2026-11-01', {a}, 'Windows_NT', 'en-US', 'release', 120000, 6000),
      (DATE '2026-11-01', {b}, 'Windows_NT', 'de', 'release', 90000, 5000),
      (DATE '2026-11-01', 'Other', 'Other', 'Other', 'Other', 400000, 25000)
    ) t(submission_date, city, os, locale, normalized_channel, page_loads, client_count)
"""


def _lit(name: str) -> str:
    return "'" + name.replace("'", "''") + "'"


@pytest.mark.parametrize("good", [("Berlin", "São Paulo"), ("Villeneuve-d'Ascq", "New York City"), ("Köln", "Munich")])
def test_cities_over_15000_pass(city_decl, stage_sql, good):
    wh, staged = stage_sql(CITY_ROWS.format(a=_lit(good[0]), b=_lit(good[1])))
    report = validate(city_decl, wh, staged, specs=policy_expectations(city_decl))
    assert report.outcome == "passed", report.summary()
    assert [(c.column, c.status) for c in geo_checks(report)] == [("city", "passed")]


@pytest.mark.parametrize(
    "bad, why",
    [
        ("Mariehamn", "in GeoNames' cities15000 file, but 10,682 inhabitants"),
        ("Cologne", "an English exonym; GeoNames names the city Köln"),
        ("Smallville", "not a city in GeoNames"),
        ("berlin", "names are matched exactly"),
        ("??", "unknown geolocation must be grouped into Other"),
    ],
)
def test_a_value_that_is_not_a_city_over_15000_fails(city_decl, stage_sql, bad, why):
    wh, staged = stage_sql(CITY_ROWS.format(a="'Berlin'", b=_lit(bad)))
    report = validate(city_decl, wh, staged, specs=policy_expectations(city_decl))
    assert report.outcome == "failed", why
    [failed] = report.failures
    assert failed.description == "dimension city holds a GeoNames city of over 15,000 inhabitants or Other"
    assert failed.observed == 1 and failed.unexpected_sample == [bad], why


def test_at_most_a_sample_of_bad_values_is_reported_but_every_row_is_counted(city_decl, stage_sql):
    n = SAMPLE_SIZE + 5
    sql = f"""
        SELECT DATE '2026-11-01' AS submission_date, 'Village ' || i AS city, 'Linux' AS os, 'de' AS locale,
               'beta' AS normalized_channel, 1 AS page_loads, 6000 AS client_count
        FROM range({n}) r(i)
    """
    wh, staged = stage_sql(sql)
    report = validate(city_decl, wh, staged, specs=geo_specs(city_decl))
    [failed] = report.failures
    assert failed.observed == n
    assert len(failed.unexpected_sample) == 5  # what the run record keeps of the sample


def test_bigquery_gets_the_city_list_as_one_array_parameter():
    """~32,000 names as one array parameter (BigQuery allows 10,000 parameters per query)."""
    import sqlalchemy as sa
    from sqlalchemy_bigquery import BigQueryDialect

    query = unexpected_values_query(sa.table("stage_20261101", sa.column("city")), "city", "geo_city")
    compiled = query.compile(dialect=BigQueryDialect())
    assert "NOT IN UNNEST(" in str(compiled)
    arrays = [v for v in compiled.params.values() if isinstance(v, list)]
    assert len(arrays) == 1 and set(arrays[0]) == geo_values("geo_city")
    assert len(arrays[0]) > 30_000


def test_geo_values_include_other_and_refuse_other_kinds():
    assert {"US", "DE", "Other"} <= geo_values("geo_country")
    assert "XK" not in geo_values("geo_country")
    assert {"Berlin", "Other"} <= geo_values("geo_city") and "Mariehamn" not in geo_values("geo_city")
    with pytest.raises(ValueError, match="not a geo dimension kind"):
        geo_values("categorical")
