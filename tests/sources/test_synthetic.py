"""Synthetic sources are deterministic and skewed the way the level-2 example needs."""

from __future__ import annotations

import hashlib

import duckdb

from pubdata.sources.synthetic import SynthSpec, existing_spec, generate


def _digest(path) -> str:
    con = duckdb.connect(str(path), read_only=True)
    rows = con.execute("SELECT * FROM telemetry.clients_daily ORDER BY submission_date, client_id").fetchall()
    con.close()
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def test_same_seed_same_tables_other_seed_other_tables(tmp_path):
    spec = SynthSpec(scale=20_000)
    a, b, c = tmp_path / "a.duckdb", tmp_path / "b.duckdb", tmp_path / "c.duckdb"
    generate(a, spec)
    generate(b, spec)
    generate(c, SynthSpec(scale=20_000, seed=7))
    assert _digest(a) == _digest(b) != _digest(c)
    assert existing_spec(a) == spec


def test_schema_and_skew(source_warehouse):
    con = duckdb.connect(str(source_warehouse), read_only=True)
    cols = [r[0] for r in con.execute("DESCRIBE telemetry.clients_daily").fetchall()]
    assert cols == ["submission_date", "client_id", "sample_id", "country", "city", "os", "os_version", "locale",
                    "normalized_channel", "app_version", "page_loads", "ssl_page_loads", "search_count", "ad_clicks",
                    "active_hours", "cpu_cores", "memory_mb", "gpu_vendor"]
    small, big = con.execute("""
        SELECT count(*) FILTER (WHERE n < 5000), count(*) FILTER (WHERE n >= 5000) FROM (
          SELECT country, os, locale, normalized_channel, count(DISTINCT client_id) AS n
          FROM telemetry.clients_daily WHERE submission_date = DATE '2026-11-01' GROUP BY ALL)""").fetchone()
    assert small > 100 and big >= 1
    assert con.execute("SELECT count(DISTINCT client_id) = count(*) FROM telemetry.clients_daily WHERE submission_date = DATE '2026-11-01'").fetchone()[0]
    events = [r[0] for r in con.execute("DESCRIBE firefox_desktop.events_stream").fetchall()]
    assert events == ["submission_timestamp", "client_id", "normalized_country_code", "event_category", "event_name",
                      "event_extra", "client_info"]
    con.close()
