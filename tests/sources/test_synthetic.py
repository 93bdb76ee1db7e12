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


def test_a_warehouse_made_by_another_version_of_the_generator_is_not_up_to_date(tmp_path):
    spec = SynthSpec(scale=2_000)
    path = tmp_path / "w.duckdb"
    generate(path, spec)
    assert existing_spec(path) == spec
    con = duckdb.connect(str(path))
    con.execute("UPDATE main.pubdata_synthetic SET generator = 'an-older-one'")
    con.close()
    assert existing_spec(path) is None  # `pubdata synth` regenerates it instead of calling it up to date


def test_schema_and_skew(source_warehouse):
    con = duckdb.connect(str(source_warehouse), read_only=True)
    cols = [r[0] for r in con.execute("DESCRIBE telemetry.clients_daily").fetchall()]
    assert cols == ["submission_date", "client_id", "sample_id", "country", "city", "os", "os_version", "locale",
                    "normalized_channel", "app_version", "scalar_parent_browser_engagement_total_uri_count_sum",
                    "search_count_all", "ssl_handshake_result_success_sum", "ad_clicks_count_all", "active_hours_sum", "cpu_cores",
                    "cpu_count", "memory_mb"]
    small, big = con.execute("""
        SELECT count(*) FILTER (WHERE n < 5000), count(*) FILTER (WHERE n >= 5000) FROM (
          SELECT country, os, locale, normalized_channel, count(DISTINCT client_id) AS n
          FROM telemetry.clients_daily WHERE submission_date = DATE '2026-11-01' GROUP BY ALL)""").fetchone()
    assert small > 100 and big >= 1
    assert con.execute("SELECT count(DISTINCT client_id) = count(*) FROM telemetry.clients_daily WHERE submission_date = DATE '2026-11-01'").fetchone()[0]
    events = [r[0] for r in con.execute("DESCRIBE firefox_desktop.events_stream").fetchall()]
    assert events == ["submission_timestamp", "client_id", "sample_id", "normalized_country_code", "event_category",
                      "event_name", "event_extra", "client_info"]
    con.close()


def test_main_and_glean_tables_have_production_shapes(source_warehouse):
    """The fields Mozilla's queries read, at their production paths and types: main's histograms
    are JSON strings, Glean pings name the client in client_info.client_id."""
    con = duckdb.connect(str(source_warehouse), read_only=True)
    try:
        main = con.execute("""
            SELECT count(*), count(payload.histograms.http_pageload_is_ssl),
                   min(json_extract(payload.histograms.http_pageload_is_ssl, '$.values."1"')::BIGINT),
                   count(DISTINCT environment.system.gfx.adapters[1].vendor_id),
                   typeof(any_value(environment.system.cpu.cores)), typeof(any_value(metadata.geo.country))
            FROM telemetry.main WHERE CAST(submission_timestamp AS DATE) = DATE '2026-11-01'""").fetchone()
        usage = con.execute("""
            SELECT count(DISTINCT client_info.client_id), max(n) FROM (
              SELECT client_info, count(DISTINCT client_info.client_id) OVER (PARTITION BY
                     client_info.app_display_version, metrics.string.usage_variant, normalized_os) AS n
              FROM org_mozilla_mozregression.usage)""").fetchone()
        metrics = con.execute("""
            SELECT count(DISTINCT client_info.client_id), count(metrics.counter.networking_doh_heuristics_attempts),
                   typeof(any_value(metrics.custom_distribution.ssl_handshake_result_ech."values"))
            FROM firefox_desktop.metrics""").fetchone()
    finally:
        con.close()
    pings, with_histogram, min_ssl, vendors, cores_type, country_type = main
    assert 0.85 * pings < with_histogram < pings and min_ssl >= 0 and vendors == 4
    assert (cores_type, country_type) == ("BIGINT", "VARCHAR")
    clients, doh_counters, ech_type = metrics
    assert clients > 0 and 0 < doh_counters < clients
    assert ech_type == 'STRUCT("key" VARCHAR, "value" BIGINT)[]'
    clients, biggest_cell = usage
    assert 0 < biggest_cell < clients

