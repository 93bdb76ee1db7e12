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


def _export(wh, staged, order_by, how, dest):
    """(rows, sha256 of every file) through the whole-file COPY or the streamed parts."""
    import hashlib

    if how == "whole file":
        rows = wh.export(staged, dest.with_suffix(".csv"), order_by, "csv")
        return rows, [hashlib.sha256(dest.with_suffix(".csv").read_bytes()).hexdigest()]
    parts = wh.write_parts(staged, order_by, "csv", 10**9, dest)
    return sum(p.rows for p in parts), [p.sha256 for p in parts]


@pytest.mark.parametrize("how", ["whole file", "parts"])
def test_export_sorts_out_of_core_under_the_memory_cap(wh, tmp_path, monkeypatch, how):
    """A sort several times larger than PUBDATA_EXPORT_MEMORY_LIMIT spills and gives the same bytes."""
    query = "SELECT TO_HEX(MD5(CAST(x AS STRING))) AS k, MOD(x, 7) AS m FROM UNNEST(GENERATE_ARRAY(1, 3000000)) AS x"
    staged = wh.stage(DS, query, {}, None)
    monkeypatch.setenv("PUBDATA_EXPORT_MEMORY_LIMIT", "4GB")
    roomy = _export(wh, staged, ["m", "k"], how, tmp_path / "roomy")
    monkeypatch.setenv("PUBDATA_EXPORT_MEMORY_LIMIT", "64MB")  # the keys alone are about 100 MB
    capped = _export(wh, staged, ["m", "k"], how, tmp_path / "capped")
    assert roomy == capped and roomy[0] == 3_000_000
    assert not [p for p in (wh.staging_dir / ".spill").rglob("*") if p.is_file()], "spill files are removed"


@pytest.mark.parametrize("how", ["whole file", "parts"])
def test_running_out_of_the_cap_says_which_setting_to_raise(wh, tmp_path, monkeypatch, how):
    query = "SELECT TO_HEX(MD5(CAST(x AS STRING))) AS k FROM UNNEST(GENERATE_ARRAY(1, 300000)) AS x"
    staged = wh.stage(DS, query, {}, None)
    monkeypatch.setenv("PUBDATA_EXPORT_MEMORY_LIMIT", "1MB")
    with pytest.raises(WarehouseError, match=r"ran out of the 1MB .*PUBDATA_EXPORT_MEMORY_LIMIT=1GB"):
        _export(wh, staged, ["k"], how, tmp_path / "x")


def test_a_bad_memory_cap_is_named(wh, monkeypatch, tmp_path):
    staged = wh.stage(DS, "SELECT 1 AS a", {}, None)
    monkeypatch.setenv("PUBDATA_EXPORT_MEMORY_LIMIT", "lots")
    with pytest.raises(WarehouseError, match="PUBDATA_EXPORT_MEMORY_LIMIT='lots'.*256MB"):
        wh.export(staged, tmp_path / "x.json", ["a"], "json")


# -- streaming export into parts ------------------------------------------------------------------

TRICKY = r"""
    SELECT * FROM (VALUES
      (1, 'plain', 1.5::DOUBLE, DATE '2026-11-01', TIMESTAMP '2026-11-01 10:00:00', true, 1.25::DECIMAL(10,2), [1, 2], {'a': 1, 'b': 'x,y'}, 7::UTINYINT),
      (2, '', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
      (3, NULL, 1e300, DATE '2026-01-01', TIMESTAMP '2026-11-01 10:00:00.123', false, -0.5, [], NULL, 0),
      (4, 'a,b', 0.1, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
      (5, 'say "hi"', -0.0, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
      (6, e'line\nbreak', 3.0, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
      (7, ' lead', 2.0, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
      (8, e'cr\rx', 123456789.123, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
      (9, 'a#b', 1e-7, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
      (10, e'tab\tx', 2, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
      (11, 'ünï ✓', 2, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
      (12, '#hash', 2, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
      (13, '\N', 2, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
      (14, 'NULL', 2, NULL, NULL, NULL, NULL, NULL, NULL, NULL)
    ) t(id, "s,name", d, day, ts, b, dec, l, st, u)
"""


def _stage_duckdb_sql(wh, sql: str, table: str = "stage_full"):
    """Stage rows written in DuckDB SQL directly (types BigQuery SQL cannot spell)."""
    from pubdata.warehouses.base import StagedTable

    path = wh.staging_file(DS)
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path))
    con.execute(f"CREATE OR REPLACE TABLE {table} AS {sql}")
    con.close()
    return StagedTable(DS, str(path), table, None)


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_streamed_parts_hold_the_bytes_of_duckdbs_own_copy(wh, tmp_path, fmt):
    """JSON rows come from to_json and CSV quoting is ours: both must match DuckDB's COPY exactly."""
    from pubdata import formats

    staged = _stage_duckdb_sql(wh, TRICKY)
    wh.export(staged, tmp_path / f"whole.{fmt}", ["id"], fmt)
    expected = formats.split(tmp_path / f"whole.{fmt}", fmt, 10**6, tmp_path / "split")

    parts = wh.write_parts(staged, ["id"], fmt, 10**6, tmp_path / "parts")

    assert [p.path.read_bytes() for p in parts] == [p.path.read_bytes() for p in expected]
    assert parts[0].rows == 14


def test_streamed_parquet_parts_hold_duckdbs_types(wh, tmp_path):
    import pyarrow.parquet as pq

    staged = _stage_duckdb_sql(wh, TRICKY)
    wh.export(staged, tmp_path / "whole.parquet", ["id"], "parquet")

    (part,) = wh.write_parts(staged, ["id"], "parquet", 10**6, tmp_path / "parts")

    ours, copied = pq.read_table(part.path), pq.read_table(tmp_path / "whole.parquet")
    assert [(f.name, f.type) for f in ours.schema] == [(f.name, f.type) for f in copied.schema]
    assert ours.to_pylist() == copied.to_pylist()


def test_stage_stores_rows_in_export_order_and_export_scans_them(wh, tmp_path, monkeypatch):
    import pubdata.warehouses.duckdb as duckdb_warehouse

    sorts = []
    real_write_parts = duckdb_warehouse.write_parts

    def spy(con, relation, order_by, *args, **kwargs):
        sorts.append(order_by)
        return real_write_parts(con, relation, order_by, *args, **kwargs)

    monkeypatch.setattr(duckdb_warehouse, "write_parts", spy)
    query = ("SELECT os, country, COUNT(*) AS n FROM `moz-fx-data-shared-prod.telemetry.clients_daily` "
             "WHERE submission_date = @submission_date GROUP BY ALL")
    day = dt.date(2026, 11, 1)
    unsorted = wh.stage(DS, query, {"submission_date": day}, day)
    assert unsorted.ordered_by is None
    sorted_parts = {}
    for fmt in ("json", "csv", "parquet"):
        sorted_parts[fmt] = [p.sha256 for p in wh.write_parts(unsorted, ["country", "os"], fmt, 2048, tmp_path / f"u{fmt}")]

    by_os = [p.sha256 for p in wh.write_parts(unsorted, ["os", "country"], "json", 2048, tmp_path / "uos")]

    staged = wh.stage(DS, query, {"submission_date": day}, day, order_by=["country", "os", "not_in_the_query"])
    assert staged.ordered_by == ("country", "os")  # a declared column the query lacks is validation's to report
    # Asked for another order than the stored one, export sorts.
    assert [p.sha256 for p in wh.write_parts(staged, ["os", "country"], "json", 2048, tmp_path / "sos")] == by_os

    staged = wh.stage(DS, query, {"submission_date": day}, day, order_by=["country", "os"])
    assert staged.ordered_by == ("country", "os")
    assert type(staged).from_dict(json.loads(json.dumps(staged.to_dict()))) == staged
    con = duckdb.connect(staged.location, read_only=True)
    stored = con.execute(f"SELECT country, os FROM {staged.table}").fetchall()  # no ORDER BY: stored order
    con.close()
    assert stored == sorted(stored)
    sorts.clear()
    for fmt in ("json", "csv", "parquet"):
        parts = wh.write_parts(staged, ["country", "os"], fmt, 2048, tmp_path / f"s{fmt}")
        assert [p.sha256 for p in parts] == sorted_parts[fmt]
    assert sorts == [None, None, None], "a table stored in export order is scanned, not sorted"
    assert len(sorted_parts["json"]) > 1


def test_a_scan_too_wide_for_its_first_buffer_is_retried_at_the_export_limit(wh, tmp_path, monkeypatch):
    import pubdata.warehouses.duckdb as duckdb_warehouse

    query = "SELECT x AS k, TO_HEX(MD5(CAST(x AS STRING))) AS v FROM UNNEST(GENERATE_ARRAY(1, 200000)) AS x"
    staged = wh.stage(DS, query, {}, None, order_by=["k"])
    roomy = wh.write_parts(staged, ["k"], "csv", 10**8, tmp_path / "roomy")
    monkeypatch.setattr(duckdb_warehouse, "SCAN_MEMORY_BASE", 64 * 1024)
    monkeypatch.setattr(duckdb_warehouse, "SCAN_MEMORY_PER_COLUMN", 0)

    retried = wh.write_parts(staged, ["k"], "csv", 10**8, tmp_path / "retried")

    assert [p.sha256 for p in retried] == [p.sha256 for p in roomy] and retried[0].rows == 200_000
    monkeypatch.setenv("PUBDATA_EXPORT_MEMORY_LIMIT", "64KB")  # the first buffer alone: it does run out
    with pytest.raises(WarehouseError, match="ran out of the 64KB"):
        wh.write_parts(staged, ["k"], "csv", 10**8, tmp_path / "small")
