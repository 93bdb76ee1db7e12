"""Synthetic source tables for the embedded warehouse, under their production names, columns and types.

Only what the examples and Mozilla's public queries read (TABLES): clients_daily with
clients_daily_v6's column names, the main ping with its environment records and JSON-string
histograms, the Glean metrics and events_stream tables (the client in client_info.client_id), and
mozregression's usage ping. A query written for them runs on BigQuery unchanged.

Deterministic for a (seed, scale): every value is derived from a hash of (seed, row), never from
a random generator, so DuckDB's parallel execution cannot change the output. Skewed like real
telemetry: a few countries, one OS and one channel dominate, so at the default scale some
country/OS/locale/channel cells hold far more than 5,000 clients and many hold fewer.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

import duckdb

DEFAULT_SEED = 20261101
DEFAULT_SCALE = 1_000_000
DEFAULT_END = dt.date(2026, 11, 1)
DEFAULT_DAYS = 3
PROJECT = "moz-fx-data-shared-prod"

# (value, weight). Weights need not sum to anything; they are normalised.
COUNTRIES = [
    ("US", 24), ("DE", 12), ("FR", 7), ("GB", 6), ("BR", 5), ("IN", 5), ("RU", 4), ("PL", 3),
    ("IT", 3), ("ES", 3), ("CA", 2.5), ("JP", 2.5), ("ID", 2), ("MX", 2), ("NL", 1.5), ("CN", 1.5),
    ("TR", 1.2), ("UA", 1.2), ("AU", 1.1), ("AR", 1), ("SE", 0.8), ("CH", 0.7), ("AT", 0.7),
    ("BE", 0.6), ("CZ", 0.6), ("HU", 0.5), ("RO", 0.5), ("PT", 0.4), ("GR", 0.4), ("FI", 0.3),
    ("NO", 0.3), ("DK", 0.3), ("IE", 0.25), ("NZ", 0.2), ("ZA", 0.2), ("EG", 0.2), ("NG", 0.15),
    ("KE", 0.1), ("IS", 0.03), ("LU", 0.03), ("MT", 0.02), ("MC", 0.005), ("LI", 0.005),
    ("SM", 0.002), ("VA", 0.001),
]
LOCALE_OF = {
    "US": "en-US", "GB": "en-GB", "CA": "en-CA", "AU": "en-US", "NZ": "en-US", "IE": "en-GB",
    "ZA": "en-GB", "NG": "en-GB", "KE": "en-GB", "IN": "en-US", "DE": "de", "AT": "de", "CH": "de",
    "LI": "de", "LU": "fr", "FR": "fr", "BE": "fr", "MC": "fr", "BR": "pt-BR", "PT": "pt-PT",
    "RU": "ru", "UA": "uk", "PL": "pl", "IT": "it", "SM": "it", "VA": "it", "ES": "es-ES",
    "AR": "es-AR", "MX": "es-MX", "JP": "ja", "ID": "id", "NL": "nl", "CN": "zh-CN", "TR": "tr",
    "SE": "sv-SE", "CZ": "cs", "HU": "hu", "RO": "ro", "GR": "el", "FI": "fi", "NO": "nb-NO",
    "DK": "da", "EG": "ar", "IS": "is", "MT": "en-GB",
}
OTHER_LOCALES = [("en-US", 60), ("en-GB", 10), ("es-ES", 8), ("fr", 6), ("de", 6), ("zh-TW", 3), ("ko", 3), ("he", 2), ("vi", 2)]
OSES = [("Windows_NT", 74), ("Darwin", 16), ("Linux", 10)]
OS_VERSIONS = {"Windows_NT": [("10.0", 80), ("6.1", 15), ("6.3", 5)], "Darwin": [("23.0", 50), ("22.0", 30), ("21.0", 20)], "Linux": [("6.1", 60), ("5.15", 40)]}
CHANNELS = [("release", 90), ("beta", 5), ("esr", 3), ("nightly", 2)]
APP_VERSIONS = [("132.0", 55), ("131.0", 25), ("133.0", 10), ("128.4.0", 6), ("115.17.0", 4)]
CITIES = {
    "US": ["New York City", "Los Angeles", "Chicago", "Houston", "Seattle"], "DE": ["Berlin", "Hamburg", "Munich", "Cologne"],
    "FR": ["Paris", "Marseille", "Lyon"], "GB": ["London", "Manchester", "Birmingham"], "BR": ["São Paulo", "Rio de Janeiro"],
    "IN": ["Mumbai", "Delhi", "Bengaluru"], "RU": ["Moscow", "Saint Petersburg"], "JP": ["Tokyo", "Osaka"],
}
CPU_CORES = [(2, 15), (4, 40), (6, 15), (8, 20), (12, 5), (16, 5)]
MEMORY_MB = [(2048, 5), (4096, 20), (8192, 40), (16384, 25), (32768, 10)]


@dataclass(frozen=True)
class SynthSpec:
    seed: int = DEFAULT_SEED
    scale: int = DEFAULT_SCALE      # rows of clients_daily
    end_date: dt.date = DEFAULT_END
    days: int = DEFAULT_DAYS


def _u(expr: str, salt: int) -> str:
    """A uniform number in [0, 1) derived from a hash of expr and a salt."""
    return f"((hash({expr}, {salt}) % 1000000007) / 1000000007.0)"


def _pick(pairs: list[tuple], u: str) -> str:
    """A CASE expression choosing a value with the given weights from the uniform u."""
    total = float(sum(w for _, w in pairs))
    acc = 0.0
    parts = []
    for value, weight in pairs[:-1]:
        acc += weight / total
        parts.append(f"WHEN {u} < {acc!r} THEN {_lit(value)}")
    return f"(CASE {' '.join(parts)} ELSE {_lit(pairs[-1][0])} END)"


def _lit(value) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


def _clients_daily_sql(spec: SynthSpec) -> str:
    """telemetry.clients_daily under production column names and types (clients_daily_v6's schema)."""
    s = spec.seed
    per_client = "c"  # a client's stable attributes hash off its index
    country = _pick(COUNTRIES, _u(per_client, s + 1))
    locale_map = " ".join(f"WHEN {_lit(k)} THEN {_lit(v)}" for k, v in LOCALE_OF.items())
    locale = (
        f"(CASE WHEN {_u(per_client, s + 2)} < 0.12 THEN {_pick(OTHER_LOCALES, _u(per_client, s + 3))} "
        f"ELSE (CASE country {locale_map} ELSE 'en-US' END) END)"
    )
    os_ = _pick(OSES, _u(per_client, s + 4))
    os_version = "(CASE os " + " ".join(
        f"WHEN {_lit(o)} THEN {_pick(v, _u(per_client, s + 5))}" for o, v in OS_VERSIONS.items()
    ) + " END)"
    city = "(CASE country " + " ".join(
        f"WHEN {_lit(cc)} THEN (CASE WHEN {_u(per_client, s + 6)} < 0.85 THEN {_pick([(n, 1) for n in names], _u(per_client, s + 7))} ELSE 'Smallville' END)"
        for cc, names in CITIES.items()
    ) + " ELSE '??' END)"
    # Activity varies per (client, day): heavy-tailed page loads, a few searches, rare ad clicks.
    row = "i"
    uri_count = f"CAST(floor(-ln(1 - {_u(row, s + 20)}) * 40) AS BIGINT)"
    return f"""
    WITH idx AS (
        SELECT i, i // {spec.days} AS c, i % {spec.days} AS d FROM range({spec.scale}) r(i)
    ), attrs AS (
        SELECT i, c, d,
               {country} AS country,
               {os_} AS os,
               {_pick(CHANNELS, _u(per_client, s + 10))} AS normalized_channel,
               {_pick(APP_VERSIONS, _u(per_client, s + 11))} AS app_version,
               {_pick(CPU_CORES, _u(per_client, s + 12))} AS cpu_cores,
               {_pick(MEMORY_MB, _u(per_client, s + 13))} AS memory_mb
        FROM idx
    ), loads AS (
        SELECT *, {locale} AS locale, {os_version} AS os_version, {city} AS city
        FROM attrs
    )
    SELECT
        DATE '{spec.end_date.isoformat()}' - CAST(d AS INTEGER) AS submission_date,
        CAST(md5(CAST({s} AS VARCHAR) || ':' || CAST(c AS VARCHAR)) AS UUID)::VARCHAR AS client_id,
        CAST(hash(c, {s} + 30) % 100 AS BIGINT) AS sample_id,
        country, city, os, os_version, locale, normalized_channel, app_version,
        {uri_count} AS scalar_parent_browser_engagement_total_uri_count_sum,
        CAST(floor(-ln(1 - {_u(row, s + 22)}) * 2) AS BIGINT) AS search_count_all,
        CAST(floor(-ln(1 - {_u(row, s + 20)}) * 40 * (0.7 + 0.25 * {_u(row, s + 21)})) AS BIGINT) AS ssl_handshake_result_success_sum,
        CAST(CASE WHEN {_u(row, s + 23)} < 0.05 THEN 1 ELSE 0 END AS BIGINT) AS ad_clicks_count_all,
        round(-ln(1 - {_u(row, s + 24)}) * 1.5, 3) AS active_hours_sum,
        CAST(cpu_cores AS BIGINT) AS cpu_cores,
        CAST(cpu_cores * (CASE WHEN {_u(per_client, s + 14)} < 0.6 THEN 2 ELSE 1 END) AS BIGINT) AS cpu_count,
        CAST(memory_mb AS BIGINT) AS memory_mb
    FROM loads
    """


# PCI vendor ids as Firefox reports them in environment.system.gfx.adapters[].vendor_id.
GPU_VENDOR_IDS = [("0x8086", 55), ("0x10de", 25), ("0x1002", 17)]
APPLE_GPU = "0x106b"


def _main_sql(spec: SynthSpec) -> str:
    """telemetry.main (main_v5's shape): one main ping per client and day, derived from clients_daily.

    The environment carries the client's hardware; payload.histograms hold JSON strings as in
    production, e.g. HTTP_PAGELOAD_IS_SSL ({"values": {"0": not over SSL, "1": over SSL}}), absent
    from some pings.
    """
    s = spec.seed
    u = lambda salt: _u("client_id", s + salt)  # noqa: E731
    ssl = f"CAST(floor(uri * (0.7 + 0.25 * {_u('client_id, submission_date', s + 21)})) AS BIGINT)"
    gpu = f"(CASE WHEN os = 'Darwin' AND {u(8)} < 0.6 THEN '{APPLE_GPU}' ELSE {_pick(GPU_VENDOR_IDS, u(9))} END)"
    return f"""
    SELECT
        CAST(submission_date AS TIMESTAMP) + to_seconds(CAST(floor({_u('client_id', s + 40)} * 86400) AS BIGINT))
            AS submission_timestamp,
        client_id,
        sample_id,
        normalized_channel,
        struct_pack(geo := struct_pack(country := country, city := city)) AS metadata,
        struct_pack(name := 'Firefox', version := app_version) AS application,
        struct_pack(system := struct_pack(
            os := struct_pack(name := os, version := os_version),
            cpu := struct_pack(cores := cpu_cores, count := cpu_count),
            memory_mb := memory_mb,
            gfx := struct_pack(adapters := [struct_pack(vendor_id := {gpu}, device_id := '0x0001')])
        )) AS environment,
        struct_pack(histograms := struct_pack(http_pageload_is_ssl := CASE
            WHEN {_u('client_id, submission_date', s + 41)} < 0.08 THEN CAST(NULL AS VARCHAR)
            ELSE '{{"bucket_count":3,"histogram_type":2,"sum":' || ssl || ',"range":[1,2],"values":{{"0":'
                 || (uri - ssl) || ',"1":' || ssl || '}}}}' END)) AS payload
    FROM (SELECT *, {ssl} AS ssl
          FROM (SELECT *, scalar_parent_browser_engagement_total_uri_count_sum AS uri FROM telemetry.clients_daily))
    """


def _glean_client_info(channel: str) -> str:
    return (f"struct_pack(client_id := client_id, app_channel := {channel}, app_display_version := app_version, "
            "os := os, os_version := os_version)")


def _metrics_sql(spec: SynthSpec) -> str:
    """firefox_desktop.metrics (Glean metrics ping): the client in client_info.client_id, the
    metrics in typed records (counter, quantity, custom_distribution, labeled_custom_distribution),
    one ping per client and day for about half the clients of clients_daily."""
    s = spec.seed
    u = lambda salt: _u("client_id, submission_date", s + salt)  # noqa: E731
    handshakes = f"CAST(floor(-ln(1 - {u(3)}) * 30) AS BIGINT)"
    dist = ("struct_pack(sum := {n}, \"values\" := [struct_pack(key := '0', value := {n} - {n} // 10), "
            "struct_pack(key := '1', value := {n} // 10)])")
    return f"""
    SELECT
        CAST(submission_date AS TIMESTAMP) + to_seconds(CAST(floor({u(1)} * 86400) AS BIGINT)) AS submission_timestamp,
        sample_id,
        country AS normalized_country_code,
        normalized_channel,
        struct_pack(geo := struct_pack(country := country, city := city)) AS metadata,
        {_glean_client_info("normalized_channel")} AS client_info,
        struct_pack(
            counter := struct_pack(
                networking_doh_heuristics_attempts := CASE WHEN {u(4)} < 0.3 THEN CAST(floor({u(5)} * 5) + 1 AS BIGINT) END,
                networking_doh_heuristics_pass_count := CASE WHEN {u(4)} < 0.2 THEN CAST(floor({u(6)} * 3) + 1 AS BIGINT) END),
            quantity := struct_pack(
                networking_doh_heuristics_result := CASE WHEN {u(4)} < 0.3 THEN CAST(floor({u(7)} * 4) AS BIGINT) END),
            custom_distribution := struct_pack(
                ssl_handshake_result_ech := {dist.format(n="h")},
                ssl_handshake_result_ech_grease := {dist.format(n="(h // 2)")},
                ssl_handshake_privacy := {dist.format(n="(h + 1)")}),
            labeled_custom_distribution := struct_pack(
                http3_ech_outcome := [struct_pack(key := 'GREASE', value := {dist.format(n="(h // 3)")})])
        ) AS metrics
    FROM (SELECT *, {handshakes} AS h FROM telemetry.clients_daily)
    WHERE {_u("client_id", s + 42)} < 0.5
    """


def _events_stream_sql(spec: SynthSpec) -> str:
    """firefox_desktop.events_stream (Glean events, one row per event): client_id also at the top
    level, event_extra a JSON object, the channel in client_info."""
    s = spec.seed
    n = max(spec.scale // 4, 1)
    u = lambda salt: _u("i", s + salt)  # noqa: E731
    client_id = f"CAST(md5(CAST({s} AS VARCHAR) || ':' || CAST(c AS VARCHAR)) AS UUID)::VARCHAR"
    return f"""
    WITH base AS (
        SELECT i, (i // 2) AS c, i % {spec.days} AS d FROM range({n}) r(i)
    ), events AS (
        SELECT *, {client_id} AS client_id,
               {_pick(CHANNELS, _u("c", s + 10))} AS channel,
               {_pick(APP_VERSIONS, _u("c", s + 11))} AS app_version,
               {_pick(OSES, _u("c", s + 4))} AS os,
               NULL::VARCHAR AS os_version
        FROM base
    )
    SELECT
        CAST(DATE '{spec.end_date.isoformat()}' - CAST(d AS INTEGER) AS TIMESTAMP)
            + to_seconds(CAST(floor({u(1)} * 86400) AS BIGINT)) AS submission_timestamp,
        client_id,
        CAST(hash(c, {s} + 30) % 100 AS BIGINT) AS sample_id,
        {_pick(COUNTRIES, _u("c", s + 1))} AS normalized_country_code,
        'network.dns' AS event_category,
        {_pick([("trr_enabled", 30), ("trr_disabled", 60), ("trr_fallback", 10)], u(2))} AS event_name,
        json_object('provider', {_pick([("cloudflare", 60), ("nextdns", 30), ("other", 10)], u(3))},
                    'mode', {_pick([("2", 70), ("3", 30)], u(4))}) AS event_extra,
        {_glean_client_info("channel")} AS client_info
    FROM events
    """


MOZREGRESSION_VERSIONS = [("6.1.0", 70), ("6.0.0", 20), ("5.9.1", 7), ("6.2.0.dev3", 3)]
MOZREGRESSION_OS = [("Windows", 60), ("Darwin", 20), ("Linux", 20)]
MOZREGRESSION_OS_VERSIONS = {"Windows": [("10.0", 90), ("6.1", 10)], "Darwin": [("23.6.0", 70), ("22.6.0", 30)],
                             "Linux": [("6.8.0-45-generic", 60), ("5.15.0-122-generic", 40)]}


def _mozregression_usage_sql(spec: SynthSpec) -> str:
    """org_mozilla_mozregression.usage (the Glean usage ping of the mozregression tool, the source of
    Mozilla's public mozregression_aggregates_v1): one ping per bisection, about two per client."""
    s = spec.seed
    n = max(spec.scale // 4, 1)
    u = lambda salt: _u("i", s + salt)  # noqa: E731
    per_client = lambda salt: _u("c", s + salt)  # noqa: E731
    os_version = "(CASE normalized_os " + " ".join(
        f"WHEN {_lit(o)} THEN {_pick(v, per_client(54))}" for o, v in MOZREGRESSION_OS_VERSIONS.items()) + " END)"
    return f"""
    WITH base AS (
        SELECT i, (i // 2) AS c, i % {spec.days} AS d FROM range({n}) r(i)
    ), pings AS (
        SELECT *, {_pick(MOZREGRESSION_OS, per_client(53))} AS normalized_os FROM base
    )
    SELECT
        CAST(DATE '{spec.end_date.isoformat()}' - CAST(d AS INTEGER) AS TIMESTAMP)
            + to_seconds(CAST(floor({u(1)} * 86400) AS BIGINT)) AS submission_timestamp,
        struct_pack(client_id := CAST(md5('mozregression:' || CAST({s} AS VARCHAR) || ':' || CAST(c AS VARCHAR)) AS UUID)::VARCHAR,
                    app_display_version := {_pick(MOZREGRESSION_VERSIONS, per_client(50))},
                    app_channel := 'release') AS client_info,
        struct_pack(string := struct_pack(usage_variant := {_pick([("app", 75), ("console", 25)], per_client(51))},
                                          usage_app := {_pick([("firefox", 85), ("thunderbird", 10), ("fenix", 5)], u(52))}))
            AS metrics,
        normalized_os,
        {os_version} AS normalized_os_version
    FROM pings
    """


TABLES = ("telemetry.clients_daily", "telemetry.main", "firefox_desktop.metrics", "firefox_desktop.events_stream",
          "org_mozilla_mozregression.usage")
"""The synthetic tables, in the order they are generated (main and metrics derive from clients_daily)."""


def generate(path: Path, spec: SynthSpec = SynthSpec()) -> dict[str, int]:
    """Write the synthetic source tables to a DuckDB file (replacing it); return row counts."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    con = duckdb.connect(str(tmp))
    try:
        con.execute("CREATE SCHEMA telemetry")
        con.execute("CREATE SCHEMA firefox_desktop")
        con.execute(f"CREATE TABLE telemetry.clients_daily AS {_clients_daily_sql(spec)} ORDER BY submission_date, client_id")
        # main and metrics keep clients_daily's order (by day, then client): DuckDB preserves the
        # scan's order, so no second sort is needed to store them by day.
        con.execute(f"CREATE TABLE telemetry.main AS {_main_sql(spec)}")
        con.execute(f"CREATE TABLE firefox_desktop.metrics AS {_metrics_sql(spec)}")
        con.execute(f"CREATE TABLE firefox_desktop.events_stream AS {_events_stream_sql(spec)} ORDER BY submission_timestamp, client_id")
        con.execute("CREATE SCHEMA org_mozilla_mozregression")
        con.execute(f"CREATE TABLE org_mozilla_mozregression.usage AS {_mozregression_usage_sql(spec)} "
                    "ORDER BY submission_timestamp, (client_info).client_id")
        con.execute(
            "CREATE TABLE main.pubdata_synthetic AS SELECT ? AS seed, ? AS scale, ? AS end_date, ? AS days, ? AS generator",
            [spec.seed, spec.scale, spec.end_date, spec.days, generator_digest()],
        )
        counts = {f"{PROJECT}.{table}": _count(con, table) for table in TABLES}
        con.execute("CHECKPOINT")
    finally:
        con.close()
    tmp.replace(path)
    return counts


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0]) if row else 0


def generator_digest() -> str:
    """A digest of this module: a warehouse made by another version of it has other tables or columns."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def existing_spec(path: Path) -> SynthSpec | None:
    """The spec a warehouse file was generated with, or None when absent, not synthetic, or made by
    another version of this generator (its tables may lack what today's examples read)."""
    if not Path(path).is_file():
        return None
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error:
        return None
    try:
        row = con.execute("SELECT seed, scale, end_date, days, generator FROM main.pubdata_synthetic").fetchone()
    except duckdb.Error:
        return None
    finally:
        con.close()
    if row is None or row[4] != generator_digest():
        return None
    return SynthSpec(seed=row[0], scale=row[1], end_date=row[2], days=row[3])
