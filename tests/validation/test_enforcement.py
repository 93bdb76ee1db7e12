"""The minimum bucket at run time: the warehouse counts the clients of every row, whatever the query says.

The attacks `pubdata check` cannot refuse from the SQL alone (tests/sql/test_shape.py, RUNTIME)
are staged and validated here through the real tasks on the synthetic warehouse: rows under the
minimum never leave the warehouse (the HAVING stage adds), a bucket column that disagrees with the
warehouse's count fails validation naming the rows, nested rows that differ by a few clients fail
the differencing check, and none of it reaches the public bucket. The honest example still
publishes, every row at or over the minimum by the warehouse's own count.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import pytest

from pubdata.config import settings
from pubdata.errors import PolicyRefused, ValidationFailed
from pubdata.orchestration import tasks
from pubdata.sql.rewrite import MAX_WORK_ENV
from pubdata.validation.expectations.client_counts import AGREEMENT, MINIMUM
from pubdata.validation.expectations.differencing import NAME as DIFFERENCING
from pubdata.warehouses.base import UNITS
from tests.sql.test_shape import ATTACKS, CD, RUNTIME
from tests.support.derive import DS, derive

DAY = dt.date(2026, 11, 1)
K = 5000


def without_rollup(spec: dict) -> None:
    """The SSL example's declaration for the attacks' queries: no roll-up, and clients_daily (what they read)."""
    spec["policy"].pop("rollup", None)
    spec["source_tables"] = ["moz-fx-data-shared-prod.telemetry.clients_daily"]


def decl_columns(dataset_id: str) -> list[str]:
    from pubdata.declarations import load_all

    return load_all(settings().project).declarations[dataset_id].spec.policy.columns


def public_files() -> list[Path]:
    return [p for p in (Path(settings().home) / "public").rglob("*") if p.is_file()]


def staged_units(staged: dict) -> list[int]:
    con = duckdb.connect(staged["location"], read_only=True)
    try:
        return [r[0] for r in con.execute(f'SELECT {UNITS} FROM "{staged["table"]}"').fetchall()]
    finally:
        con.close()


def failures(exc: pytest.ExceptionInfo[ValidationFailed]) -> dict[str, object]:
    return {c.expectation: c for c in exc.value.report.failures}


@pytest.mark.parametrize("name", [n for n, (_, rules) in ATTACKS.items() if rules is RUNTIME])
def test_a_lying_bucket_column_fails_validation_and_nothing_is_public(project, name):
    ds = derive(project, "ssl_ratio_by_country_v1", "ssl_attack_v1", without_rollup, ATTACKS[name][0])
    staged = tasks.stage(ds, DAY, run_id="attack")
    assert min(staged_units(staged)) >= K, "a row under the minimum left the warehouse"
    with pytest.raises(ValidationFailed) as exc:
        tasks.validate(ds, staged)
    failed = failures(exc)
    assert AGREEMENT in failed, list(failed)
    assert "client_count" in failed[AGREEMENT].description
    assert failed[AGREEMENT].unexpected_sample, "the failure names the rows"
    assert "distinct clients (warehouse)" in failed[AGREEMENT].unexpected_sample[0]
    assert public_files() == []


def test_small_cells_never_leave_the_warehouse_even_when_the_query_keeps_them(project):
    """A careless query with no grouping into Other: the cells under the minimum are dropped by the
    warehouse, the rest validate and publish."""
    sql = (f"SELECT @submission_date AS submission_date, country, os, SUM(scalar_parent_browser_engagement_total_uri_count_sum) AS page_loads, "
           f"SUM(ssl_handshake_result_success_sum) AS ssl_page_loads, ROUND(SAFE_DIVIDE(SUM(ssl_handshake_result_success_sum), SUM(scalar_parent_browser_engagement_total_uri_count_sum)), 4) "
           f"AS ssl_ratio, COUNT(DISTINCT client_id) AS client_count FROM {CD} "
           f"WHERE submission_date = @submission_date GROUP BY country, os")
    ds = derive(project, "ssl_ratio_by_country_v1", "ssl_careless_v1", without_rollup, sql)
    source = duckdb.connect(str(settings().warehouse_url).removeprefix("duckdb://"), read_only=True)
    try:
        cells = source.execute(
            "SELECT COUNT(*) FILTER (WHERE n < ?), COUNT(*) FILTER (WHERE n >= ?) FROM (SELECT COUNT(DISTINCT client_id) "
            "AS n FROM telemetry.clients_daily WHERE submission_date = ? GROUP BY country, os)", [K, K, DAY]).fetchone()
    finally:
        source.close()
    small, big = cells
    assert small > 0 and big > 0, "the synthetic day should have cells on both sides of the minimum"
    staged = tasks.stage(ds, DAY, run_id="careless")
    units = staged_units(staged)
    assert len(units) == big and min(units) >= K
    validation = tasks.validate(ds, staged)
    tasks.publish(ds, staged, validation, tasks.export(ds, staged, validation, "careless"), "careless")
    # the SSL example's export is not incremental (incremental_export: false): the whole table, flat under files/
    [part] = [p for p in public_files() if "ssl_careless" in str(p) and p.parent.name == "files"
              and p.name == "000000000000.json"]
    rows = json.loads(part.read_text())
    assert len(rows) == big and min(r["client_count"] for r in rows) >= K
    assert all(not k.startswith("_pubdata") for r in rows for k in r)


def test_the_honest_example_publishes_with_every_row_counted(project):
    ds = f"{DS}.page_loads_by_country_v1"
    staged = tasks.stage(ds, DAY, run_id="honest")
    units = staged_units(staged)
    assert min(units) >= K
    report = tasks.validate(ds, staged)
    assert report["outcome"] == "passed"
    result = tasks.publish(ds, staged, report, tasks.export(ds, staged, report, "honest"), "honest")
    assert result["rows"] == len(units)
    metadata = json.loads(next(p for p in public_files() if p.name == "metadata.json" and "page_loads" in str(p)).read_text())
    assert [f["name"] for f in metadata["schema"]] == list(decl_columns(ds))


def _small_group() -> tuple[str, int]:
    """A condition on US clients that few of them meet (1 to 4,999), from non-identifying columns."""
    source = duckdb.connect(str(settings().warehouse_url).removeprefix("duckdb://"), read_only=True)
    try:
        found = source.execute(
            "SELECT os, locale, normalized_channel, COUNT(DISTINCT client_id) AS n FROM telemetry.clients_daily "
            "WHERE submission_date = ? AND country = 'US' GROUP BY ALL HAVING n < ? ORDER BY n LIMIT 1",
            [DAY, K]).fetchone()
    finally:
        source.close()
    assert found, "the synthetic day should have a small group of US clients"
    os_, locale, channel, n = found
    return f"(os = '{os_}' AND locale = '{locale}' AND normalized_channel = '{channel}')", n


def _differencing_sql(excluded: str) -> str:
    """Two rows: every US client, and every US client but a few (a filter the static checks allow)."""
    select = ("SELECT @submission_date AS submission_date, country, {os} AS os, SUM(scalar_parent_browser_engagement_total_uri_count_sum) AS page_loads, "
              "SUM(ssl_handshake_result_success_sum) AS ssl_page_loads, ROUND(SAFE_DIVIDE(SUM(ssl_handshake_result_success_sum), SUM(scalar_parent_browser_engagement_total_uri_count_sum)), 4) "
              f"AS ssl_ratio, COUNT(DISTINCT client_id) AS client_count FROM {CD} "
              "WHERE submission_date = @submission_date AND country = 'US'{more} GROUP BY country")
    return (select.format(os="'all'", more="") + "\nUNION ALL\n"
            + select.format(os="'all but a few'", more=f" AND NOT {excluded}"))


def test_rows_differing_by_a_few_clients_fail_the_differencing_check(project):
    condition, few = _small_group()
    ds = derive(project, "ssl_ratio_by_country_v1", "ssl_difference_v1", without_rollup, _differencing_sql(condition))
    staged = tasks.stage(ds, DAY, run_id="difference")
    units = sorted(staged_units(staged))
    assert len(units) == 2 and units[1] - units[0] == few and units[0] >= K  # both rows pass the minimum
    with pytest.raises(ValidationFailed) as exc:
        tasks.validate(ds, staged)
    failed = failures(exc)
    assert list(failed) == [DIFFERENCING]
    assert "1 pair(s) of nested rows differ by fewer than 5,000 clients" in str(failed[DIFFERENCING].observed)
    [pair] = [p for p in failed[DIFFERENCING].unexpected_sample if "inside" in p]
    assert pair["difference"] == few
    assert pair["row"]["os"] == "all but a few" and pair["inside"]["os"] == "all" and pair["row"]["country"] == "US"
    assert public_files() == []


def test_differencing_fails_closed_when_too_large_to_check(project, monkeypatch):
    monkeypatch.setenv(MAX_WORK_ENV, "1")
    ds = derive(project, "ssl_ratio_by_country_v1", "ssl_difference_v1", without_rollup, _differencing_sql(_small_group()[0]))
    staged = tasks.stage(ds, DAY, run_id="too-large")
    with pytest.raises(ValidationFailed) as exc:
        tasks.validate(ds, staged)
    assert "too large to check" in str(failures(exc)[DIFFERENCING].observed)
    assert public_files() == []


def test_rows_far_apart_pass_the_differencing_check(project):
    """Overlapping but not close: every US client, and the US clients on Linux only (far fewer)."""
    select = ("SELECT @submission_date AS submission_date, country, {os} AS os, SUM(scalar_parent_browser_engagement_total_uri_count_sum) AS page_loads, "
              "SUM(ssl_handshake_result_success_sum) AS ssl_page_loads, ROUND(SAFE_DIVIDE(SUM(ssl_handshake_result_success_sum), SUM(scalar_parent_browser_engagement_total_uri_count_sum)), 4) "
              f"AS ssl_ratio, COUNT(DISTINCT client_id) AS client_count FROM {CD} "
              "WHERE submission_date = @submission_date AND country = 'US'{more} GROUP BY country")
    sql = select.format(os="'all'", more="") + "\nUNION ALL\n" + select.format(os="'Windows_NT'", more=" AND os = 'Windows_NT'")
    ds = derive(project, "ssl_ratio_by_country_v1", "ssl_overlap_v1", without_rollup, sql)
    staged = tasks.stage(ds, DAY, run_id="overlap")
    units = sorted(staged_units(staged))
    assert len(units) == 2 and units[1] - units[0] >= K
    assert tasks.validate(ds, staged)["outcome"] == "passed"


def test_stage_refuses_what_check_refuses_before_the_warehouse_is_reached(project):
    sql = ATTACKS["string_agg of identifiers"][0]
    ds = derive(project, "ssl_ratio_by_country_v1", "ssl_packed_v1", without_rollup, sql)
    with pytest.raises(PolicyRefused, match="forbidden_lineage"):
        tasks.stage(ds, DAY, run_id="packed")
    staging = Path(settings().home)
    assert not any("ssl_packed" in str(p) for p in staging.rglob("*.duckdb"))


def test_minimum_check_names_rows_under_the_minimum(project, stage_sql, decl):
    """Belt and braces: a staged table that somehow holds a row under the minimum fails, naming it."""
    from pubdata.validation.run import validate
    from pubdata.validation.suite import suite_for

    wh, staged = stage_sql("""
        SELECT * FROM (VALUES
          (DATE '2026-11-01', 'US', 'Windows_NT', 'en-US', 'release', 120000, 6000, 6000),
          (DATE '2026-11-01', 'DE', 'Linux', 'de', 'release', 30, 5000, 3)
        ) t(submission_date, country, os, locale, normalized_channel, scalar_parent_browser_engagement_total_uri_count_sum, client_count, _pubdata_units)""")
    report = validate(decl, wh, staged, suite_for(decl, wh))
    failed = {c.expectation: c for c in report.failures}
    assert MINIMUM in failed and AGREEMENT in failed
    assert failed[MINIMUM].unexpected_sample == [{"submission_date": "2026-11-01", "country": "DE", "os": "Linux",
                                                  "locale": "de", "normalized_channel": "release",
                                                  "distinct clients (warehouse)": 3}]
