"""The embedded warehouse: reviewed BigQuery SQL on DuckDB, production names, real parameters."""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest

from pubdata.config import settings
from pubdata.warehouses import open_warehouse
from pubdata.warehouses.base import QueryError, WarehouseError
from pubdata.warehouses.duckdb import transpile
from tests.support.project import staged_exists

DS = "t.sample_v1"


@pytest.fixture()
def wh(project):
    return open_warehouse(settings().warehouse_url, home=settings().home)


def test_transpile_maps_production_names_and_keeps_parameters():
    sql = transpile("SELECT country FROM `moz-fx-data-shared-prod.telemetry.clients_daily` WHERE submission_date = @submission_date")
    assert 'FROM source."telemetry"."clients_daily"' in sql and "moz-fx" not in sql
    assert "$submission_date" in sql


def test_transpile_leaves_ctes_alone():
    sql = transpile("WITH clients_daily AS (SELECT 1 AS x) SELECT x FROM clients_daily")
    assert "source" not in sql


def test_transpile_rejects_non_select():
    with pytest.raises(QueryError, match="SELECT"):
        transpile("DELETE FROM `p.d.t` WHERE true")
    with pytest.raises(QueryError, match="parse"):
        transpile("SELECT FROM WHERE (")


def test_stage_binds_parameters_as_values(wh):
    query = ("SELECT country, COUNT(*) AS n FROM `moz-fx-data-shared-prod.telemetry.clients_daily` "
             "WHERE submission_date = @submission_date AND os = @os GROUP BY country")
    staged = wh.stage(DS, query, {"submission_date": dt.date(2026, 11, 1), "os": "Linux"}, dt.date(2026, 11, 1))
    assert staged.partition == "2026-11-01" and staged.table == "stage_20261101"
    n = wh.scalar(staged, "SELECT sum(n) FROM {table}")
    assert n > 0
    # A value that looks like SQL stays a value: nothing matches, nothing is injected.
    staged = wh.stage(DS, query, {"submission_date": dt.date(2026, 11, 1), "os": "Linux' OR '1'='1"}, dt.date(2026, 11, 1))
    assert wh.scalar(staged, "SELECT count(*) FROM {table}") == 0


def test_stage_reports_missing_parameter(wh):
    with pytest.raises(QueryError, match="@os"):
        wh.stage(DS, "SELECT 1 AS x FROM `moz-fx-data-shared-prod.telemetry.clients_daily` WHERE os = @os", {}, None)


def test_query_errors_are_query_errors(wh):
    with pytest.raises(QueryError, match="no_such_column"):
        wh.stage(DS, "SELECT no_such_column FROM `moz-fx-data-shared-prod.telemetry.clients_daily`", {}, None)


def test_missing_source_warehouse_says_what_to_do(project, tmp_path):
    wh = open_warehouse(f"duckdb://{tmp_path / 'nope.duckdb'}", home=tmp_path)
    with pytest.raises(WarehouseError, match="pubdata synth"):
        wh.stage(DS, "SELECT 1 AS x", {}, None)


def test_source_is_attached_read_only(wh):
    wh.stage(DS, "SELECT 1 AS x", {}, None)
    con = duckdb.connect(str(wh.staging_file(DS)))
    con.execute(f"ATTACH '{wh.source}' AS s (READ_ONLY)")
    with pytest.raises(duckdb.Error):
        con.execute("DELETE FROM s.telemetry.clients_daily")
    con.close()


def test_columns_and_drop(wh):
    staged = wh.stage(DS, "SELECT 1 AS a, 'x' AS b", {}, None)
    assert [(c.name, c.type) for c in wh.columns(staged)] == [("a", "INTEGER"), ("b", "VARCHAR")]
    assert staged_exists(wh, staged)
    wh.drop(staged)
    assert not staged_exists(wh, staged)


def test_staging_directory_comes_from_the_url_when_workers_share_the_warehouse(tmp_path, source_warehouse):
    """Workers with homes of their own share the staged tables only when the URL names the directory."""
    from pubdata.errors import ConfigurationError
    from pubdata.warehouses.duckdb import DuckDBWarehouse

    shared = DuckDBWarehouse.from_url(f"duckdb://{source_warehouse}?staging_dir={tmp_path / 'shared'}",
                                      home=tmp_path / "worker-a")
    assert shared.staging_dir == tmp_path / "shared" and shared.source == source_warehouse
    assert DuckDBWarehouse.from_url(f"duckdb://{source_warehouse}", home=tmp_path / "a").staging_dir == \
        tmp_path / "a" / "internal" / "staging"
    with pytest.raises(ConfigurationError, match="unknown option 'staging'"):
        DuckDBWarehouse.from_url(f"duckdb://{source_warehouse}?staging=/x")


def test_a_source_is_ready_when_its_day_has_rows(wh):
    clients_daily = "moz-fx-data-shared-prod.telemetry.clients_daily"
    events = "moz-fx-data-shared-prod.firefox_desktop.events_stream"  # partitioned on a timestamp
    assert wh.source_ready(clients_daily, dt.date(2026, 11, 1)) is True
    assert wh.source_ready(events, dt.date(2026, 11, 1)) is True
    assert wh.source_ready(clients_daily, dt.date(2027, 1, 1)) is False  # not arrived (yet)
    with pytest.raises(QueryError, match="source_tables name .*no_such_table, which the local warehouse .* does not hold"):
        wh.source_ready("moz-fx-data-shared-prod.telemetry.no_such_table", dt.date(2026, 11, 1))


def test_a_missing_source_table_names_the_command_that_creates_it(wh):
    """Not DuckDB's bare catalog error: the table, that the local warehouse is synthetic, and the fix."""
    with pytest.raises(QueryError) as exc:
        wh.stage(DS, "SELECT COUNT(*) AS n FROM `moz-fx-data-shared-prod.org_mozilla_fenix.baseline`", {}, None)
    text = str(exc.value)
    assert "moz-fx-data-shared-prod.org_mozilla_fenix.baseline" in text and "Catalog Error" not in text
    assert "synthetic" in text and "pubdata load tests/sql/" in text
    assert wh.missing_sources(["moz-fx-data-shared-prod.telemetry.main", "moz-fx-data-shared-prod.x.y"]).keys() \
        == {"moz-fx-data-shared-prod.x.y"}  # the synthetic tables are there


def test_a_missing_synthetic_table_says_pubdata_synth(project, source_warehouse, tmp_path, monkeypatch):
    import shutil

    path = tmp_path / "old.duckdb"
    shutil.copyfile(source_warehouse, path)
    con = duckdb.connect(str(path))
    con.execute("DROP TABLE telemetry.main")  # a warehouse generated before the table existed
    con.close()
    monkeypatch.setenv("PUBDATA_WAREHOUSE", f"duckdb://{path}")
    old = open_warehouse(settings().warehouse_url, home=settings().home)
    with pytest.raises(QueryError, match=r"telemetry\.main, which the local warehouse .* does not hold .*`pubdata synth --force`"):
        old.stage(DS, "SELECT COUNT(*) AS n FROM `moz-fx-data-shared-prod.telemetry.main`", {}, None)
    with pytest.raises(QueryError, match=r"`pubdata synth --force` to generate the synthetic telemetry\.main"):
        old.source_ready("moz-fx-data-shared-prod.telemetry.main", dt.date(2026, 11, 1))
    # a table the query lacks a column of is still DuckDB's own error, naming the column
    with pytest.raises(QueryError, match="no_such_column"):
        old.stage(DS, "SELECT no_such_column FROM `moz-fx-data-shared-prod.telemetry.clients_daily`", {}, None)
