"""The checks generated from the declaration and the consistency checks, on the embedded engine:
each passes on good data and fails on bad data for its reason; the BigQuery variants are the same
checks in BigQuery's SQL; the expectations file names file and line; quarantine expires."""

from __future__ import annotations

import datetime as dt
import json
import re
import textwrap

import duckdb
import pytest
import sqlglot

from pubdata.config import settings
from pubdata.declarations import load_all
from pubdata.errors import ConfigurationError, ExpectationsFileError, ValidationFailed
from pubdata.orchestration import quarantine, records, tasks
from pubdata.stores import open_store
from pubdata.validation.expectations.column_types import accepted_types, check_column_types, column_types_expectation
from pubdata.validation.expectations.identifier_scan import IDENTIFIER_PATTERNS, identifier_kinds, identifier_scan
from pubdata.validation.expectations.row_count_band import previous_published
from pubdata.validation.expectations_file import load as load_file
from pubdata.validation.redaction import redact_text
from pubdata.validation.run import validate
from pubdata.validation.suite import suite_for
from pubdata.warehouses.base import Column
from pubdata.warehouses.bigquery import BigQueryWarehouse
from pubdata.warehouses.duckdb import DuckDBWarehouse
from tests.support.project import EXAMPLE, GOOD_ROWS, pubdata_cli, staged_exists

EXPECTATIONS = f"expectations/{EXAMPLE.split('.')[0]}/page_loads_by_country_v1.yaml"


def _write_expectations(project, text: str):
    path = project / EXPECTATIONS
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return load_all(project).declarations[EXAMPLE]


def _check(report, start: str):
    found = [c for c in report.checks if c.description.startswith(start)]
    assert found, [c.description for c in report.checks]
    return found[0]


# -- the full suite on good data ---------------------------------------------------------------


def test_full_suite_passes_on_good_data(decl, stage_sql):
    wh, staged = stage_sql(GOOD_ROWS)
    specs = suite_for(decl, wh)
    names = {s.name for s in specs}
    assert "ExpectTableColumnTypesToMatchDeclaration" in names
    assert sum(s.description.startswith("no value of ") for s in specs) == 6  # every column but the date
    report = validate(decl, wh, staged)
    assert report.outcome == "passed", report.summary()
    assert not report.warnings and not report.errors


# -- column types ------------------------------------------------------------------------------


@pytest.mark.parametrize("sql, column, observed", [
    (f"SELECT * REPLACE (CAST(client_count AS VARCHAR) AS client_count) FROM ({GOOD_ROWS})", "client_count", "VARCHAR"),
    (f"SELECT * REPLACE (CAST(submission_date AS TIMESTAMP) AS submission_date) FROM ({GOOD_ROWS})", "submission_date", "TIMESTAMP"),
    (f"SELECT * REPLACE (CAST(client_count AS DOUBLE) AS client_count) FROM ({GOOD_ROWS})", "client_count", "DOUBLE"),
])
def test_column_types_fail_on_the_wrong_type(decl, stage_sql, sql, column, observed):
    wh, staged = stage_sql(sql)
    report = validate(decl, wh, staged, specs=[column_types_expectation(decl)])
    assert report.outcome == "failed", report.summary()
    c = report.failures[0]
    assert c.observed == {column: observed}
    assert observed not in c.expected[column]


def test_column_types_pass_on_good_data_and_know_bigquery_names(decl, stage_sql):
    wh, staged = stage_sql(GOOD_ROWS)
    assert validate(decl, wh, staged, specs=[column_types_expectation(decl)]).outcome == "passed"
    spec = column_types_expectation(decl)
    bq_good = [Column("submission_date", "DATE"), Column("country", "STRING"), Column("os", "STRING"),
               Column("locale", "STRING"), Column("normalized_channel", "STRING"), Column("page_loads", "INT64"),
               Column("client_count", "INT64")]
    assert check_column_types(spec, bq_good, BigQueryWarehouse)["success"]
    bq_bad = bq_good[:-1] + [Column("client_count", "FLOAT64")]
    result = check_column_types(spec, bq_bad, BigQueryWarehouse)
    assert not result["success"] and result["observed"] == {"client_count": "FLOAT64"}
    assert result["expected"] == {"client_count": ["INT64"]}
    assert "DECIMAL" in accepted_types(DuckDBWarehouse, "metric") and "NUMERIC" in accepted_types(BigQueryWarehouse, "metric")
    duck_decimal = [Column(c.name, {"DATE": "DATE", "STRING": "VARCHAR", "INT64": "BIGINT"}[c.type]) for c in bq_good]
    duck_decimal[5] = Column("page_loads", "DECIMAL(38,0)")
    assert check_column_types(spec, duck_decimal, DuckDBWarehouse)["success"]


# -- identifier scan ---------------------------------------------------------------------------

IDENTIFIER_VALUES = [
    ("uuid", "123e4567-e89b-12d3-a456-426614174000"),
    ("e-mail", "someone@example.org"),
    ("e-mail", "ALICE@EXAMPLE"),
    ("obfuscated e-mail", "alice (at) example (dot) com"),
    ("obfuscated e-mail", "alice[at]example.com"),
    ("obfuscated e-mail", "Alice AT example DOT org"),
    ("ipv4", "192.168.10.20"),
    ("ipv4", "192.168.001.010"),
    ("ipv6", "2001:db8::8a2e:370:7334"),
    ("url with a query or credentials", "https://example.com/reset?token=3f9a"),
    ("url with a query or credentials", "https://example.com/cb#access_token=x"),
    ("hex digest", "d41d8cd98f00b204e9800998ecf8427e"),
    ("hex digest", "d41d8cd98f00b204"),
    ("base64 token", "dGhpcyBpcyBhIHNlY3JldCB0b2tlbjE="),
    ("base64 token", "aGVsbG8gd29ybGQ2MDE0NTMyMTAxMQ"),
    ("base64 token", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"),
]
HARMLESS = ["US", "Other", "en-US", "Windows_NT", "120.0.1", "1.2.3", "12:30:45", "12:30", "2026-11-01", "std::vector",
            "release", "10.0.19045.1234x", "@home", "icon@2x", "meet at home", "AccessibilityServicesEnabled",
            "1234567890123456", "-5", "0.12345678901234567", "deadbeefcafebabe", "https://www.mozilla.org/firefox/",
            "telemetry_public_page_loads_by_country_v1", "application/x-www-form-urlencoded"]


@pytest.mark.parametrize("kind, value", IDENTIFIER_VALUES, ids=[v for _, v in IDENTIFIER_VALUES])
def test_identifier_scan_fails_on_each_kind(decl, stage_sql, kind, value):
    wh, staged = stage_sql(GOOD_ROWS.replace("'de', 'release'", f"'prefix {value} suffix', 'release'"))
    report = validate(decl, wh, staged, specs=identifier_scan(decl, wh))
    assert report.outcome == "failed", report.summary()
    [failure] = report.failures
    assert failure.description.startswith("no value of locale looks like an identifier")
    assert failure.observed == 1 and failure.sensitive
    assert value not in json.dumps(report.to_dict())  # the scan selects no value
    assert kind in identifier_kinds(value)  # a long hex digest is a base64 token too
    assert redact_text(f"seen: prefix {value} suffix.") == "seen: prefix [redacted] suffix."  # redaction agrees


def test_identifier_scan_passes_on_harmless_values(decl, stage_sql):
    rows = " UNION ALL ".join(
        f"SELECT DATE '2026-11-01', 'US', 'Linux', '{v}', 'release', 100000, 6000" for v in HARMLESS)
    wh, staged = stage_sql(f"SELECT * FROM ({rows}) t(submission_date, country, os, locale, normalized_channel, page_loads, client_count)")
    report = validate(decl, wh, staged, specs=identifier_scan(decl, wh))
    assert report.outcome == "passed", report.summary()


def test_redaction_keeps_harmless_values():
    for value in HARMLESS:
        assert redact_text(f"observed {value} twice") == f"observed {value} twice"


def test_duckdb_re2_and_python_agree_on_every_pattern():
    """Alerts redact with Python's re what the warehouse flagged with RE2: they must agree."""
    con = duckdb.connect()
    for value in [*(v for _, v in IDENTIFIER_VALUES), *HARMLESS, "x 10.1.2.3", "::1", "fe80::1%eth0", "1.2.3.4.5",
                  "ＡＢ@ＣＤ", "a\u00a0(at)\u00a0b.com", "x\ty", "٠١٢٣٤٥٦٧٨٩٠١٢٣٤٥a"]:  # Unicode digits and spaces too
        for kind, pattern in IDENTIFIER_PATTERNS.items():
            sql = DuckDBWarehouse.regex_contains(DuckDBWarehouse.as_text('"v"'), pattern)
            in_duckdb = con.execute(f"SELECT {sql} FROM (SELECT ? AS v)", [value]).fetchone()[0]
            assert in_duckdb == (kind in identifier_kinds(value)), (value, kind)
    con.close()


def test_bigquery_identifier_scan_is_bigquery_sql(decl):
    specs = identifier_scan(decl, BigQueryWarehouse)
    assert len(specs) == 6

    def pattern(query: str, dialect: str) -> str:
        tree = sqlglot.parse_one(query.format(batch="t"), read=dialect)
        return tree.find(sqlglot.exp.RegexpLike).expression.this  # the pattern's value, unescaped

    for spec in specs:
        query = spec.kwargs["unexpected_rows_query"]
        assert "REGEXP_CONTAINS(CAST(`" in query and "AS STRING), '" in query and "regexp_matches" not in query
        sql = query.format(batch="(SELECT * FROM `p.staging.t`) AS subselect")  # what GX substitutes
        tree = sqlglot.parse_one(sql, read="bigquery")
        assert tree.find(sqlglot.exp.RegexpLike) is not None
    # the same patterns as DuckDB, once GX has formatted the braces back
    duck = identifier_scan(decl, DuckDBWarehouse)[0].kwargs["unexpected_rows_query"]
    assert pattern(duck, "duckdb") == pattern(specs[0].kwargs["unexpected_rows_query"], "bigquery")
    assert pattern(duck, "duckdb") == "|".join(f"({p})" for p in IDENTIFIER_PATTERNS.values())


def test_version_columns_may_have_four_dotted_numbers(project):
    d = load_all(project).declarations[EXAMPLE]
    dims = [x.model_copy(update={"kind": "version"}) if x.name == "locale" else x for x in d.spec.policy.dimensions]
    spec = d.spec.model_copy(update={"policy": d.spec.policy.model_copy(update={"dimensions": dims})})
    from dataclasses import replace

    scan = identifier_scan(replace(d, spec=spec), DuckDBWarehouse)
    locale = [s for s in scan if s.columns == ("locale",)][0]
    assert "ipv4" not in locale.description and "ipv4" in scan[0].description
    assert "25[0-5]" not in locale.kwargs["unexpected_rows_query"]


# -- totals ------------------------------------------------------------------------------------

TOTALS_FILE = """\
    totals:
      - dimension: os
        value: All
        metrics: [page_loads]
"""
WITH_TOTALS = """
    SELECT * FROM (VALUES
      (DATE '2026-11-01', 'US', 'Windows_NT', 'en-US', 'release', 120000, 6000),
      (DATE '2026-11-01', 'US', 'Linux', 'en-US', 'release', 30000, 5000),
      (DATE '2026-11-01', 'US', 'All', 'en-US', 'release', 150000, 11000),
      (DATE '2026-11-01', 'DE', 'Windows_NT', 'de', 'release', 90000, 5000),
      (DATE '2026-11-01', 'DE', 'All', 'de', 'release', 90000, 5000)
    ) t(submission_date, country, os, locale, normalized_channel, page_loads, client_count)
"""


@pytest.mark.parametrize("sql, outcome", [
    (WITH_TOTALS, "passed"),
    (WITH_TOTALS.replace("'All', 'en-US', 'release', 150000", "'All', 'en-US', 'release', 150001"), "failed"),
    # a total over cells that are not published reveals the suppressed ones
    (WITH_TOTALS.replace("'DE', 'Windows_NT', 'de', 'release', 90000, 5000", "'FR', 'Windows_NT', 'fr', 'release', 90000, 5000"), "failed"),
])
def test_totals_equal_the_sum_of_published_cells(project, stage_sql, sql, outcome):
    d = _write_expectations(project, TOTALS_FILE)
    specs = [s for s in suite_for(d, DuckDBWarehouse) if s.description.startswith("rows with os = All")]
    assert len(specs) == 1 and specs[0].severity == "fail"
    wh, staged = stage_sql(sql)
    report = validate(d, wh, staged, specs=specs)
    assert report.outcome == outcome, report.summary()
    if outcome == "failed":
        assert report.failures[0].observed == 1


def test_totals_count_the_configured_grouped_label_as_a_published_cell(project, stage_sql):
    """With Mozilla's OTHER as the label, its rows are cells a total covers; a total marked with the
    label itself is refused, naming the line."""
    (project / "metadata/telemetry_public/page_loads_by_country_v1.yaml").write_text(
        (project / "metadata/telemetry_public/page_loads_by_country_v1.yaml").read_text()
        .replace("policy:\n", "policy:\n  other_label: OTHER\n", 1))
    d = _write_expectations(project, TOTALS_FILE)
    assert d.spec.policy.other_label == "OTHER"
    grouped = WITH_TOTALS.replace("(DATE '2026-11-01', 'US', 'All', 'en-US', 'release', 150000, 11000)",
                                  "(DATE '2026-11-01', 'US', 'OTHER', 'en-US', 'release', 7, 5000), "
                                  "(DATE '2026-11-01', 'US', 'All', 'en-US', 'release', 150007, 16000)")
    specs = [s for s in suite_for(d, DuckDBWarehouse) if s.description.startswith("rows with os = All")]
    wh, staged = stage_sql(grouped)
    assert validate(d, wh, staged, specs=specs).outcome == "passed"
    wh, staged = stage_sql(grouped.replace("150007", "150000"))
    assert validate(d, wh, staged, specs=specs).outcome == "failed"
    d = _write_expectations(project, TOTALS_FILE.replace("value: All", "value: OTHER"))
    with pytest.raises(ExpectationsFileError, match="OTHER is the grouped label") as exc:
        load_file(project / EXPECTATIONS, d)
    assert str(exc.value).startswith(f"{project / EXPECTATIONS}:3: ")


def test_totals_sql_is_bigquery_sql_too(project):
    from pubdata.validation.expectations.totals import Total, totals_sql

    d = _write_expectations(project, TOTALS_FILE)
    sql = totals_sql(d, Total("os", "All", ("page_loads",))).format(batch="(SELECT * FROM `p.s.t`)")
    sqlglot.parse_one(sql, read="bigquery")
    one_dim = totals_sql(d, Total("os", "All", ("page_loads",)))
    assert "LEFT JOIN" in one_dim and "{batch} AS t" in one_dim


# -- row-count band ----------------------------------------------------------------------------


def _publish_metadata(decl, partitions: dict[str, int]):
    store = open_store(settings().bucket_url)
    meta = {"partitions": {p: {"rows": n} for p, n in partitions.items()}, "row_count": sum(partitions.values())}
    store.write(f"{decl.dataset_id.public_prefix}/metadata.json", json.dumps(meta).encode(), content_type="application/json")
    return store


def test_row_count_band_uses_the_previous_published_partition(decl, stage_sql):
    store = open_store(settings().bucket_url)
    assert previous_published(store, decl, "2026-11-01") is None  # first partition: no band
    assert not [s for s in suite_for(decl, DuckDBWarehouse, None) if s.description.startswith("row count within")]
    store = _publish_metadata(decl, {"2026-10-30": 7, "2026-10-31": 4, "2026-11-01": 999, "2026-11-02": 1})
    assert previous_published(store, decl, "2026-11-01") == ("partition 2026-10-31", 4)
    [band] = [s for s in suite_for(decl, DuckDBWarehouse, ("partition 2026-10-31", 4)) if s.description.startswith("row count")]
    assert band.kwargs == {"min_value": 2, "max_value": 8} and band.severity == "warn"

    wh, staged = stage_sql(GOOD_ROWS)  # 3 rows: inside [2, 8]
    assert validate(decl, wh, staged, specs=[band]).outcome == "passed"
    [far] = [s for s in suite_for(decl, DuckDBWarehouse, ("partition 2026-10-31", 100)) if s.description.startswith("row count")]
    report = validate(decl, wh, staged, specs=[far])
    assert report.outcome == "passed" and report.warnings[0].observed == 3  # warn: publishes, alerts


def test_row_count_band_is_configurable(project, stage_sql):
    d = _write_expectations(project, "row_count: {min_ratio: 0.9, max_ratio: 1.1, severity: fail}\n")
    [band] = [s for s in suite_for(d, DuckDBWarehouse, ("partition 2026-10-31", 10)) if s.description.startswith("row count")]
    wh, staged = stage_sql(GOOD_ROWS)
    report = validate(d, wh, staged, specs=[band])
    assert report.outcome == "failed" and band.kwargs == {"min_value": 9, "max_value": 11}
    d = _write_expectations(project, "row_count: false\n")
    assert not [s for s in suite_for(d, DuckDBWarehouse, ("partition 2026-10-31", 10)) if s.description.startswith("row count")]


# -- the expectations file names file and line ---------------------------------------------------


@pytest.mark.parametrize("text, line, words", [
    ("expectations:\n  - expectation: expect_column_values_to_be_between\n    kwargs: {column: page_loads, min_value: 0}\n"
     "  - expectation: expect_the_impossible\n", 4, "expectations[1].expectation"),
    ("expectations:\n  - expectation: expect_column_values_to_be_between\n    kwargs: {colum: x}\n", 3,
     "expectations[0].kwargs: column: required argument missing; colum: unknown argument (did you mean column?)"),
    ("expectations:\n  - expectation: expect_column_values_to_be_between\n    kwargs: {column: pageloads, min_value: 0}\n",
     3, "expectations[0].kwargs.column: column names column pageloads, which is not a declared column of "
        "telemetry_public.page_loads_by_country_v1 (submission_date, country"),
    ("expectations:\n  - expectation: expect_column_values_to_be_between\n    kwargs: {column: pageloads, min_value: 0}\n",
     3, "did you mean page_loads?"),
    ("expectations:\n  - expectation: expect_compound_columns_to_be_unique\n    kwargs: {column_list: [country, search_count]}\n",
     3, "column_list names column search_count, which is not a declared column"),
    ("expectations:\n  - description: no negative loads\n    sql: SELECT * FROM {batch} WHERE page_load < 0\n", 3,
     "expectations[0].sql: the query reads column page_load, which is not a declared column"),
    ("expectations:\n  - sql: SELECT 1 FROM {batch}\n\n    severity: maybe\n", 4, "expectations[0].severity"),
    ("expectations: []\ntotals:\n  - dimension: os\n    value: All\n    metrics: [page_loads, nope]\n", 5, "totals[0].metrics[1]"),
    ("totals:\n  - dimension: os\n    value: All\n    metrics: [client_count]\n", 4, "counts distinct clients"),
    ("totals:\n  - dimension: os\n    value: \"it's\"\n    metrics: [page_loads]\n", 3, "totals[0].value"),
    ("row_count:\n  min_ratio: 3\n  max_ratio: 2\n", 2, "row_count.min_ratio"),
    ("expectations:\n  - sql: SELECT * FROM staged WHERE x < 0\n", 2, "must read {batch}"),
    ("expectations:\n  - description: d\n    sql: SELECT * FROM {batch} WHERE regexp_matches(x, 'a{2}')\n", 3, "must be doubled"),
    ("checks: []\n", 1, "top-level keys"),
    ("expectations:\n  - expectation: [unclosed\n", 3, "not valid YAML"),
])
def test_expectations_file_errors_name_file_and_line(project, text, line, words):
    path = project / EXPECTATIONS
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    d = load_all(project).declarations[EXAMPLE]
    with pytest.raises(ExpectationsFileError) as exc:
        load_file(path, d)
    assert re.match(rf"{re.escape(str(path))}:{line}(:\d+)?: ", str(exc.value)), str(exc.value)
    assert words in str(exc.value)


def test_expectations_naming_declared_columns_and_their_own_aliases_pass(project):
    """The honest side of the column check: declared columns, and names the query defines itself."""
    path = project / EXPECTATIONS
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "expectations:\n"
        "  - expectation: expect_column_values_to_be_between\n    kwargs: {column: page_loads, min_value: 0}\n"
        "  - expectation: expect_compound_columns_to_be_unique\n    kwargs: {column_list: [country, os, locale, normalized_channel]}\n"
        "  - sql: >-\n      WITH per_os AS (SELECT t.os AS o, SUM(t.page_loads) AS loads FROM {batch} AS t GROUP BY t.os)\n"
        "      SELECT o, loads FROM per_os WHERE loads < 0\n    description: no OS with negative loads\n")
    d = load_all(project).declarations[EXAMPLE]
    assert len(load_file(path, d).specs) == 3


def test_pubdata_check_finds_an_expectation_left_over_from_a_removed_metric(project):
    """A metric removed from the declaration (and the query) whose expectation stayed: `check` says so."""
    meta = project / f"metadata/{EXAMPLE.split('.')[0]}/page_loads_by_country_v1.yaml"
    meta.write_text(meta.read_text().replace("page_loads", "page_views"))
    sql = project / f"sql/{EXAMPLE.split('.')[0]}/page_loads_by_country_v1.sql"
    sql.write_text(sql.read_text().replace("AS page_loads", "AS page_views"))
    (project / EXPECTATIONS).parent.mkdir(parents=True, exist_ok=True)
    (project / EXPECTATIONS).write_text(
        "expectations:\n  - expectation: expect_column_values_to_be_between\n    kwargs: {column: page_loads, min_value: 0}\n")
    proc = pubdata_cli("check", EXAMPLE)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = " ".join(proc.stdout.split())
    assert f"✗ {EXPECTATIONS}:3: expectations: expectations[0].kwargs.column: column names column page_loads, " \
           "which is not a declared column" in out, out
    assert "did you mean page_views?" in out


def test_pubdata_check_points_at_the_line(project):
    (project / EXPECTATIONS).parent.mkdir(parents=True, exist_ok=True)
    (project / EXPECTATIONS).write_text(
        "expectations:\n  - expectation: expect_column_values_to_be_between\n    kwargs: {column: page_loads, mni_value: 0}\n")
    proc = pubdata_cli("check", EXAMPLE)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = " ".join(proc.stdout.split())
    assert f"✗ {EXPECTATIONS}:3: expectations: expectations[0].kwargs" in out, proc.stdout


# -- quarantine --------------------------------------------------------------------------------


def _stage_record(cfg, wh, staged, day: str):
    records.RunRecords.open(cfg).start(EXAMPLE, day, f"manual__{day}")
    records.RunRecords.open(cfg).update(EXAMPLE, day, state="staged", staged=staged.to_dict())


def test_failed_validation_is_quarantined_then_purged_after_retention(decl, stage_sql, monkeypatch):
    cfg = settings()
    wh, staged = stage_sql(GOOD_ROWS.replace("90000, 5000", "90000, 10"))
    _stage_record(cfg, wh, staged, "2026-11-01")
    monkeypatch.setenv("PUBDATA_QUARANTINE_DAYS", "3")
    with pytest.raises(ValidationFailed):
        tasks.validate(EXAMPLE, staged.to_dict())
    rec = records.RunRecords.open(cfg).get(EXAMPLE, "2026-11-01")
    assert rec.state == "quarantined"
    since = dt.datetime.fromisoformat(rec.quarantine.since)
    assert dt.datetime.fromisoformat(rec.quarantine.expires) - since == dt.timedelta(days=3)
    assert staged_exists(wh, staged) and [r.dataset for r in quarantine.held(cfg)] == [EXAMPLE]

    assert quarantine.purge(cfg, now=since + dt.timedelta(days=2)) == []  # not yet expired
    assert staged_exists(wh, staged)
    purged = quarantine.purge(cfg, now=since + dt.timedelta(days=3))
    assert [r.partition for r in purged] == ["2026-11-01"]
    assert not staged_exists(wh, staged)
    rec = records.RunRecords.open(cfg).get(EXAMPLE, "2026-11-01")
    assert rec.state == "quarantined" and rec.quarantine.purged_at
    assert quarantine.held(cfg) == []


def test_stage_purges_this_datasets_expired_quarantine(decl, stage_sql, monkeypatch):
    cfg = settings()
    meta = decl.metadata_path  # the day staged below is the day before the example's start_date
    meta.write_text(meta.read_text().replace("start_date: 2026-11-01", "start_date: 2026-10-01"))
    wh, staged = stage_sql(GOOD_ROWS)  # plays a quarantined partition of 2026-11-01
    _stage_record(cfg, wh, staged, "2026-11-01")
    records.RunRecords.open(cfg).update(EXAMPLE, "2026-11-01", state="quarantined")
    monkeypatch.setenv("PUBDATA_QUARANTINE_DAYS", "0")
    quarantine.mark(cfg, EXAMPLE, "2026-11-01", staged.to_dict())
    new = tasks.stage(EXAMPLE, dt.date(2026, 10, 31), "manual__2026-10-31")
    assert new["table"] == "stage_20261031"
    assert not staged_exists(wh, staged)
    assert records.RunRecords.open(cfg).get(EXAMPLE, "2026-11-01").quarantine.purged_at


def test_quarantine_retention_must_be_days(monkeypatch):
    monkeypatch.setenv("PUBDATA_QUARANTINE_DAYS", "two weeks")
    with pytest.raises(ConfigurationError, match="PUBDATA_QUARANTINE_DAYS"):
        quarantine.retention_days()
