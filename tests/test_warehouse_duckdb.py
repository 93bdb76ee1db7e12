"""The embedded warehouse: reviewed BigQuery SQL on DuckDB, production names, real parameters."""

from __future__ import annotations

import datetime as dt
import json

import duckdb
import pytest

from pubdata.config import settings
from pubdata.warehouses import open_warehouse
from pubdata.warehouses.base import QueryError, WarehouseError
from pubdata.warehouses.duckdb import transpile

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


@pytest.mark.parametrize("fmt", ["json", "csv", "parquet"])
def test_export_is_deterministic_and_ordered(wh, tmp_path, fmt):
    query = ("SELECT os, country, COUNT(*) AS n FROM `moz-fx-data-shared-prod.telemetry.clients_daily` "
             "WHERE submission_date = @submission_date GROUP BY ALL")
    staged = wh.stage(DS, query, {"submission_date": dt.date(2026, 11, 1)}, dt.date(2026, 11, 1))
    a, b = tmp_path / f"a.{fmt}", tmp_path / f"b.{fmt}"
    rows = wh.export(staged, a, ["country", "os"], fmt)
    wh.stage(DS, query, {"submission_date": dt.date(2026, 11, 1)}, dt.date(2026, 11, 1))
    assert wh.export(staged, b, ["country", "os"], fmt) == rows
    assert a.read_bytes() == b.read_bytes()
    if fmt == "json":
        data = json.loads(a.read_text())
        assert isinstance(data, list) and len(data) == rows
        keys = [(r["country"], r["os"]) for r in data]
        assert keys == sorted(keys)


def test_columns_and_drop(wh):
    staged = wh.stage(DS, "SELECT 1 AS a, 'x' AS b", {}, None)
    assert [(c.name, c.type) for c in wh.columns(staged)] == [("a", "INTEGER"), ("b", "VARCHAR")]
    assert wh.exists(staged)
    wh.drop(staged)
    assert not wh.exists(staged)


def test_export_sorts_out_of_core_under_the_memory_cap(wh, tmp_path, monkeypatch):
    """A sort several times larger than PUBDATA_EXPORT_MEMORY_LIMIT spills and gives the same bytes."""
    query = "SELECT TO_HEX(MD5(CAST(x AS STRING))) AS k, MOD(x, 7) AS m FROM UNNEST(GENERATE_ARRAY(1, 3000000)) AS x"
    staged = wh.stage(DS, query, {}, None)
    monkeypatch.setenv("PUBDATA_EXPORT_MEMORY_LIMIT", "4GB")
    roomy = wh.export(staged, tmp_path / "roomy.csv", ["m", "k"], "csv")
    monkeypatch.setenv("PUBDATA_EXPORT_MEMORY_LIMIT", "64MB")  # the keys alone are about 100 MB
    capped = wh.export(staged, tmp_path / "capped.csv", ["m", "k"], "csv")
    assert roomy == capped == 3_000_000
    assert (tmp_path / "roomy.csv").read_bytes() == (tmp_path / "capped.csv").read_bytes()
    assert not [p for p in (wh.staging_dir / ".spill").rglob("*") if p.is_file()], "spill files are removed"


def test_running_out_of_the_cap_says_which_setting_to_raise(wh, tmp_path, monkeypatch):
    query = "SELECT TO_HEX(MD5(CAST(x AS STRING))) AS k FROM UNNEST(GENERATE_ARRAY(1, 300000)) AS x"
    staged = wh.stage(DS, query, {}, None)
    monkeypatch.setenv("PUBDATA_EXPORT_MEMORY_LIMIT", "1MB")
    with pytest.raises(WarehouseError, match=r"ran out of the 1MB .*PUBDATA_EXPORT_MEMORY_LIMIT=1GB"):
        wh.export(staged, tmp_path / "x.csv", ["k"], "csv")


def test_a_bad_memory_cap_is_named(wh, monkeypatch, tmp_path):
    staged = wh.stage(DS, "SELECT 1 AS a", {}, None)
    monkeypatch.setenv("PUBDATA_EXPORT_MEMORY_LIMIT", "lots")
    with pytest.raises(WarehouseError, match="PUBDATA_EXPORT_MEMORY_LIMIT='lots'.*256MB"):
        wh.export(staged, tmp_path / "x.json", ["a"], "json")
