"""Static checks of reviewed queries: declared output columns, forbidden lineage, source tables,
determinism, and parse errors."""

from __future__ import annotations

import pytest

from pubdata.declarations import DeclarationFile
from pubdata.sql.rules import (
    RULE_FORBIDDEN_COLUMN,
    RULE_FORBIDDEN_LINEAGE,
    RULE_NONDETERMINISTIC,
    RULE_OUTPUT_COLUMNS,
    RULE_PARSE,
    RULE_SOURCE_TABLES,
    Finding,
    check_query,
)
from pubdata.sql.shape import (
    RULE_AGGREGATES,
    RULE_AGGREGATION,
    RULE_LEVEL,
    RULE_PRIVACY_UNIT,
    RULE_PROVENANCE,
)

SHAPE_RULES = (RULE_AGGREGATION, RULE_AGGREGATES, RULE_LEVEL, RULE_PRIVACY_UNIT, RULE_PROVENANCE)
CLIENTS_DAILY = "moz-fx-data-shared-prod.telemetry.clients_daily"
EVENTS_STREAM = "moz-fx-data-shared-prod.firefox_desktop.events_stream"
CD = f"`{CLIENTS_DAILY}`"

PAGE_LOADS_SQL = f"""
-- Daily page loads and active clients by country and OS.
-- Cells with fewer than 5,000 clients are grouped into 'Other'; 'Other' rows obey the same minimum.
WITH base AS (
  SELECT
    submission_date,
    client_id,
    country,
    os,
    scalar_parent_browser_engagement_total_uri_count_sum
  FROM {CD}
  WHERE submission_date = @submission_date
),
cell_sizes AS (
  SELECT country, os, COUNT(DISTINCT client_id) AS clients
  FROM base
  GROUP BY country, os
),
labelled AS (
  SELECT
    base.submission_date,
    base.client_id,
    IF(cell_sizes.clients >= 5000, base.country, 'Other') AS country,
    IF(cell_sizes.clients >= 5000, base.os, 'Other') AS os,
    base.scalar_parent_browser_engagement_total_uri_count_sum
  FROM base
  JOIN cell_sizes USING (country, os)
)
SELECT
  submission_date,
  country,
  os,
  SUM(scalar_parent_browser_engagement_total_uri_count_sum) AS page_loads,
  COUNT(DISTINCT client_id) AS client_count
FROM labelled
GROUP BY submission_date, country, os
HAVING client_count >= 5000
"""


def make_spec(
    dimensions: list[str] | None = None,
    metrics: list[str] | None = None,
    source_tables: list[str] | None = None,
) -> DeclarationFile:
    dimensions = ["submission_date", "country", "os"] if dimensions is None else dimensions
    metrics = ["page_loads", "client_count"] if metrics is None else metrics
    return DeclarationFile.model_validate({
        "friendly_name": "Page loads by country and OS",
        "description": "Daily page loads and active clients.",
        "owners": ["data-eng@example.org"],
        "review": {
            "bugs": ["https://bugzilla.mozilla.org/show_bug.cgi?id=1414839"],
            "data_reviews": ["https://example.org/data-review/123"],
        },
        "policy": {
            "aggregation_level": 2 if "client_count" in metrics else 3,
            "bucket_column": "client_count" if "client_count" in metrics else None,
            "dimensions": [{"name": d, "category": 1} for d in dimensions],
            "metrics": [{"name": m, "sensitive": False} for m in metrics],
        },
        "start_date": "2026-11-01",
        "source_tables": [CLIENTS_DAILY] if source_tables is None else source_tables,
    })


def columns_spec(*dimensions: str, source_tables: list[str] | None = None) -> DeclarationFile:
    """A declaration whose output columns are exactly `dimensions` plus client_count."""
    return make_spec(list(dimensions), ["client_count"], source_tables)


def rules(findings: list[Finding]) -> list[str]:
    return [f.rule for f in findings]


def only(findings: list[Finding], rule: str) -> list[Finding]:
    return [f for f in findings if f.rule == rule]


# ---------------------------------------------------------------------------------------------
# The realistic level-2 query passes every rule
# ---------------------------------------------------------------------------------------------


def test_realistic_level_2_query_passes() -> None:
    assert check_query(PAGE_LOADS_SQL, make_spec()) == []


def test_realistic_query_wrapped_in_a_final_cte_and_star_passes() -> None:
    sql = f"WITH final AS (\n{PAGE_LOADS_SQL}\n)\nSELECT * FROM final"
    assert check_query(sql, make_spec()) == []


def test_findings_carry_rule_message_and_fix() -> None:
    finding = check_query(f"SELECT client_id AS country FROM {CD}", columns_spec("country"))[0]
    assert finding.rule and finding.message and finding.fix
    assert "Fix:" in str(finding)


# ---------------------------------------------------------------------------------------------
# Output columns equal the declared dimensions and metrics
# ---------------------------------------------------------------------------------------------


def test_missing_declared_column() -> None:
    sql = f"SELECT submission_date, country, SUM(scalar_parent_browser_engagement_total_uri_count_sum) AS page_loads, COUNT(DISTINCT client_id) AS client_count FROM {CD} GROUP BY 1, 2"
    findings = check_query(sql, make_spec())
    assert rules(findings) == [RULE_OUTPUT_COLUMNS]
    assert "declared but not produced by the query: os." in findings[0].message


def test_extra_undeclared_column() -> None:
    sql = PAGE_LOADS_SQL.replace("  os,\n  SUM(scalar_parent_browser_engagement_total_uri_count_sum)", "  os,\n  'en-US' AS locale,\n  SUM(scalar_parent_browser_engagement_total_uri_count_sum)")
    findings = check_query(sql, make_spec())
    assert rules(findings) == [RULE_OUTPUT_COLUMNS]
    assert "not declared: locale." in findings[0].message
    assert "declare them" in findings[0].fix


def test_unnamed_output_column() -> None:
    sql = f"SELECT submission_date, country, os, SUM(scalar_parent_browser_engagement_total_uri_count_sum), COUNT(DISTINCT client_id) AS client_count FROM {CD} GROUP BY ALL"
    findings = only(check_query(sql, make_spec()), RULE_OUTPUT_COLUMNS)
    assert any("output column 4 (SUM(scalar_parent_browser_engagement_total_uri_count_sum)) has no name" in f.message for f in findings)
    assert any("page_loads" in f.message and "declared but not produced" in f.message for f in findings)


def test_duplicate_output_column() -> None:
    sql = f"SELECT country, os, os, COUNT(DISTINCT client_id) AS client_count FROM {CD} GROUP BY ALL"
    findings = check_query(sql, columns_spec("country", "os"))
    assert rules(findings) == [RULE_OUTPUT_COLUMNS]
    assert "os appears more than once" in findings[0].message


def test_case_only_difference() -> None:
    sql = f"SELECT Country, COUNT(DISTINCT client_id) AS client_count FROM {CD} GROUP BY ALL"
    findings = check_query(sql, columns_spec("country"))
    assert rules(findings) == [RULE_OUTPUT_COLUMNS]
    assert "Country differs from declared country only in case" in findings[0].message


def test_star_is_resolved_through_ctes_and_except() -> None:
    sql = f"""
    WITH base AS (SELECT country, os, client_id FROM {CD}),
    counted AS (SELECT country, os, COUNT(DISTINCT client_id) AS client_count FROM base GROUP BY ALL),
    trimmed AS (SELECT * EXCEPT (os) FROM counted)
    SELECT t.* FROM trimmed AS t
    """
    assert check_query(sql, columns_spec("country")) == []
    findings = check_query(sql, columns_spec("country", "os"))
    assert rules(findings) == [RULE_OUTPUT_COLUMNS]
    assert "declared but not produced by the query: os." in findings[0].message


def test_star_with_using_join_yields_the_join_column_once() -> None:
    sql = f"""
    WITH a AS (SELECT country, COUNT(DISTINCT client_id) AS client_count FROM {CD} GROUP BY ALL),
    b AS (SELECT country, MAX(os) AS os FROM {CD} GROUP BY ALL)
    SELECT * FROM a JOIN b USING (country)
    """
    findings = check_query(sql, columns_spec("country", "os"))
    assert only(findings, RULE_OUTPUT_COLUMNS) == []
    # Joining two aggregations publishes rows whose clients no one count covers.
    assert [f.rule for f in findings] == [RULE_AGGREGATION] and "joins" in findings[0].message


def test_star_over_a_warehouse_table_cannot_be_checked() -> None:
    findings = check_query(f"SELECT * FROM {CD}", make_spec())
    outputs = only(findings, RULE_OUTPUT_COLUMNS)
    assert len(outputs) == 1
    assert CLIENTS_DAILY in outputs[0].message and "list the published columns" in outputs[0].fix


def test_forbidden_output_name() -> None:
    sql = f"SELECT country, COUNT(*) AS client_count, COUNT(*) AS client_id FROM {CD} GROUP BY ALL"
    findings = check_query(sql, columns_spec("country"))
    forbidden = only(findings, RULE_FORBIDDEN_COLUMN)
    assert len(forbidden) == 1 and "output column client_id is forbidden" in forbidden[0].message


# ---------------------------------------------------------------------------------------------
# Lineage: no output column derives from a forbidden column
# ---------------------------------------------------------------------------------------------

COUNT = "COUNT(DISTINCT client_id) AS client_count"


@pytest.mark.parametrize(
    ("sql", "source"),
    [
        pytest.param(f"SELECT client_id AS cid, {COUNT} FROM {CD} GROUP BY 1", "client_id", id="alias"),
        pytest.param(f"SELECT TO_HEX(SHA256(client_id)) AS cid, {COUNT} FROM {CD} GROUP BY 1", "client_id", id="hash"),
        pytest.param(f"SELECT SUBSTR(client_id, 1, 8) AS cid, {COUNT} FROM {CD} GROUP BY 1", "client_id", id="substr"),
        pytest.param(
            f"WITH renamed AS (SELECT client_id AS harmless, client_id FROM {CD}) "
            f"SELECT harmless AS cid, {COUNT} FROM renamed GROUP BY 1",
            "client_id", id="cte-rename",
        ),
        pytest.param(
            f"WITH a AS (SELECT client_id AS x, client_id FROM {CD}), b AS (SELECT UPPER(x) AS y, client_id FROM a) "
            f"SELECT CONCAT('id-', y) AS cid, {COUNT} FROM b GROUP BY 1",
            "client_id", id="two-ctes-and-functions",
        ),
        pytest.param(
            f"SELECT sub.c AS cid, {COUNT} FROM (SELECT client_id AS c, client_id FROM {CD}) AS sub GROUP BY 1",
            "client_id", id="derived-table",
        ),
        pytest.param(
            f"WITH s AS (SELECT 'x' AS cid, client_id FROM {CD} UNION ALL SELECT client_id, client_id FROM {CD}) "
            f"SELECT cid, {COUNT} FROM s GROUP BY 1",
            "client_id", id="union-second-branch",
        ),
        pytest.param(f"SELECT MAX(client_id) AS cid, {COUNT} FROM {CD}", "client_id", id="max"),
        pytest.param(
            f"SELECT (SELECT ANY_VALUE(client_id) FROM {CD}) AS cid, {COUNT} FROM {CD}", "client_id", id="scalar-subquery"
        ),
        pytest.param(
            f"SELECT CASE WHEN client_id IS NULL THEN 'none' ELSE 'some' END AS cid, {COUNT} FROM {CD} GROUP BY 1",
            "client_id", id="case",
        ),
        pytest.param(
            f"SELECT COUNT(*) OVER (ORDER BY client_id) AS cid, {COUNT} FROM {CD} GROUP BY client_id",
            "client_id", id="window-ranking-clients",
        ),
        pytest.param(
            f"SELECT client_info.client_id AS cid, {COUNT} FROM `{EVENTS_STREAM}` GROUP BY 1",
            "client_info.client_id", id="struct-field",
        ),
        pytest.param(
            f"SELECT JSON_VALUE(event_extra, '$.url') AS cid, {COUNT} FROM `{EVENTS_STREAM}` GROUP BY 1",
            "event_extra.url", id="json-url",
        ),
        pytest.param(
            f"SELECT term AS cid, {COUNT} FROM {CD}, UNNEST(search_terms) AS term GROUP BY 1",
            "search_terms", id="unnest",
        ),
        pytest.param(f"SELECT user_agent AS cid, {COUNT} FROM {CD} GROUP BY 1", "user_agent", id="user-agent"),
        pytest.param(f"SELECT NET.HOST(url) AS cid, {COUNT} FROM {CD} GROUP BY 1", "url", id="url-host"),
        pytest.param(f"SELECT remote_addr AS cid, {COUNT} FROM {CD} GROUP BY 1", "remote_addr", id="ip"),
    ],
)
def test_forbidden_lineage_is_caught(sql: str, source: str) -> None:
    findings = check_query(sql, columns_spec("cid", source_tables=[]))
    lineage = only(findings, RULE_FORBIDDEN_LINEAGE)
    assert lineage, findings
    assert all(f.message.startswith("output column cid ") for f in lineage)
    assert any(f"derives from {source} " in f.message for f in lineage)
    # Besides lineage, only the query's shape may be refused (an aggregate, a subquery, a level).
    assert set(rules(findings)) <= {RULE_FORBIDDEN_LINEAGE, *SHAPE_RULES}


@pytest.mark.parametrize(
    "expression",
    [
        "COUNT(DISTINCT client_id)",
        "COUNT(client_id)",
        "COUNTIF(client_id IS NOT NULL)",
        "APPROX_COUNT_DISTINCT(client_id)",
        "HLL_COUNT.EXTRACT(HLL_COUNT.INIT(client_id))",
        "SUM(IF(search_count_all > 0, 1, 0))",
        "SUM(ssl_handshake_result_success_sum)",
    ],
)
def test_counts_of_identifiers_are_allowed(expression: str) -> None:
    sql = f"SELECT country, {expression} AS client_count FROM {CD} GROUP BY country"
    assert check_query(sql, columns_spec("country")) == []


def test_count_computed_in_a_cte_and_summed_outside_is_allowed() -> None:
    sql = f"""
    WITH per_cell AS (SELECT country, os, COUNT(DISTINCT client_id) AS clients FROM {CD} GROUP BY ALL),
    sketches AS (SELECT country, HLL_COUNT.INIT(client_id) AS sketch FROM {CD} GROUP BY ALL)
    SELECT per_cell.country, SUM(clients) AS client_count, HLL_COUNT.MERGE(sketch) AS users
    FROM per_cell JOIN sketches USING (country)
    GROUP BY 1
    """
    findings = check_query(sql, make_spec(["country"], ["client_count", "users"]))
    assert only(findings, RULE_FORBIDDEN_LINEAGE) == []  # client_id reaches the output only through counts
    # ... but summing per-cell counts double-counts clients, and the join hides whose clients they are.
    assert {f.rule for f in findings} == {RULE_PRIVACY_UNIT}


def test_a_published_sketch_is_caught() -> None:
    sql = f"""
    WITH sketches AS (SELECT country, HLL_COUNT.INIT(client_id) AS sketch FROM {CD} GROUP BY ALL)
    SELECT country, sketch, HLL_COUNT.EXTRACT(sketch) AS client_count FROM sketches
    """
    findings = check_query(sql, columns_spec("country", "sketch"))
    (lineage,) = only(findings, RULE_FORBIDDEN_LINEAGE)
    assert "output column sketch is a sketch of client_id" in lineage.message
    assert "level 4" in lineage.message
    assert rules(findings) == [RULE_FORBIDDEN_LINEAGE, RULE_LEVEL]  # the shape says the same: level 4


def test_whole_row_as_a_value_is_caught() -> None:
    sql = f"SELECT TO_JSON_STRING(t) AS row_json, COUNT(*) AS client_count FROM {CD} AS t GROUP BY 1"
    findings = check_query(sql, columns_spec("row_json"))
    assert rules(findings) == [RULE_FORBIDDEN_LINEAGE]
    assert "whole rows" in findings[0].message


@pytest.mark.parametrize(
    "expression",
    [
        "DATE(submission_timestamp)",
        "TIMESTAMP_TRUNC(submission_timestamp, DAY)",
        "TIMESTAMP_TRUNC(submission_timestamp, WEEK(MONDAY))",
        "DATE_TRUNC(DATE(submission_timestamp), MONTH)",
        "CAST(submission_timestamp AS DATE)",
        "EXTRACT(DATE FROM submission_timestamp)",
    ],
)
def test_submission_timestamp_truncated_to_a_day_is_allowed(expression: str) -> None:
    sql = f"SELECT {expression} AS submission_date, COUNT(DISTINCT client_id) AS client_count FROM `{EVENTS_STREAM}` GROUP BY 1"
    assert check_query(sql, columns_spec("submission_date", source_tables=[EVENTS_STREAM])) == []


@pytest.mark.parametrize(
    "expression",
    [
        "submission_timestamp",
        "TIMESTAMP_TRUNC(submission_timestamp, HOUR)",
        "EXTRACT(HOUR FROM submission_timestamp)",
        "FORMAT_TIMESTAMP('%F %H', submission_timestamp)",
        "MIN(submission_timestamp)",
    ],
)
def test_submission_timestamp_finer_than_a_day_is_caught(expression: str) -> None:
    sql = f"SELECT {expression} AS event_time, COUNT(DISTINCT client_id) AS client_count FROM `{EVENTS_STREAM}` GROUP BY 1"
    findings = check_query(sql, columns_spec("event_time", source_tables=[EVENTS_STREAM]))
    (lineage,) = only(findings, RULE_FORBIDDEN_LINEAGE)
    assert "derives from submission_timestamp" in lineage.message
    assert "DATE(submission_timestamp)" in lineage.fix
    assert set(rules(findings)) <= {RULE_FORBIDDEN_LINEAGE, *SHAPE_RULES}


def test_day_truncation_through_a_cte_is_followed() -> None:
    ok = f"""
    WITH e AS (SELECT submission_timestamp AS ts, client_id FROM `{EVENTS_STREAM}`)
    SELECT DATE(ts) AS submission_date, COUNT(DISTINCT client_id) AS client_count FROM e GROUP BY 1
    """
    assert check_query(ok, columns_spec("submission_date", source_tables=[])) == []
    bad = f"""
    WITH e AS (SELECT DATE(submission_timestamp) AS d, submission_timestamp AS ts, client_id FROM `{EVENTS_STREAM}`)
    SELECT d AS submission_date, ts AS event_time, COUNT(DISTINCT client_id) AS client_count FROM e GROUP BY 1, 2
    """
    findings = check_query(bad, columns_spec("submission_date", "event_time", source_tables=[]))
    assert rules(findings) == [RULE_FORBIDDEN_LINEAGE]
    assert findings[0].message.startswith("output column event_time derives from submission_timestamp")


def test_deployment_forbidden_column_is_traced(monkeypatch: pytest.MonkeyPatch) -> None:
    sql = f"SELECT LOWER(cpu_vendor) AS vendor, COUNT(DISTINCT client_id) AS client_count FROM {CD} GROUP BY 1"
    assert check_query(sql, columns_spec("vendor")) == []
    monkeypatch.setenv("PUBDATA_EXTRA_FORBIDDEN_COLUMNS", "cpu_vendor")
    findings = check_query(sql, columns_spec("vendor"))
    assert rules(findings) == [RULE_FORBIDDEN_LINEAGE]
    assert "derives from cpu_vendor" in findings[0].message


def test_allowed_columns_with_identifier_like_names_pass() -> None:
    sql = f"""
    SELECT submission_date, country, os,
      SUM(ssl_handshake_result_success_sum) AS page_loads,
      COUNT(DISTINCT client_id) AS client_count
    FROM {CD}
    WHERE submission_date = @submission_date AND sample_id < 10
    GROUP BY ALL
    """
    assert check_query(sql, make_spec()) == []


# ---------------------------------------------------------------------------------------------
# Source tables
# ---------------------------------------------------------------------------------------------


def test_undeclared_table_is_refused() -> None:
    sql = PAGE_LOADS_SQL.replace(
        "JOIN cell_sizes USING (country, os)",
        "JOIN cell_sizes USING (country, os)\n  JOIN `moz-fx-data-shared-prod.telemetry.main` AS m ON m.country = base.country",
    )
    findings = check_query(sql, make_spec())
    assert rules(findings)[0] == RULE_SOURCE_TABLES  # (and a join not on client_id: privacy_unit)
    assert "moz-fx-data-shared-prod.telemetry.main" in findings[0].message
    assert CLIENTS_DAILY in findings[0].message
    assert "source_tables" in findings[0].fix


def test_partially_qualified_table_is_refused() -> None:
    sql = PAGE_LOADS_SQL.replace(CD, "telemetry.clients_daily")
    findings = check_query(sql, make_spec())
    assert rules(findings) == [RULE_SOURCE_TABLES]
    assert "telemetry.clients_daily, which is not fully qualified" in findings[0].message
    assert CLIENTS_DAILY in findings[0].fix


def test_cte_names_are_not_tables_and_unquoted_names_match() -> None:
    sql = PAGE_LOADS_SQL.replace(CD, CLIENTS_DAILY)  # BigQuery accepts dashes in an unquoted project
    assert check_query(sql, make_spec(source_tables=[f"`{CLIENTS_DAILY}`"])) == []


def test_table_in_a_where_subquery_is_checked() -> None:
    sql = PAGE_LOADS_SQL.replace(
        "WHERE submission_date = @submission_date",
        "WHERE submission_date = @submission_date\n    AND country IN (SELECT code FROM `other-project.ref.countries`)",
    )
    findings = check_query(sql, make_spec())
    assert rules(findings) == [RULE_SOURCE_TABLES]
    assert "other-project.ref.countries" in findings[0].message


def test_no_declared_tables_means_no_table_check() -> None:
    sql = PAGE_LOADS_SQL.replace(CD, "`any-project.any.table`")
    assert check_query(sql, make_spec(source_tables=[])) == []


# ---------------------------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "shown"),
    [
        ("RAND()", "RAND()"),
        ("GENERATE_UUID()", "GENERATE_UUID()"),
        ("CURRENT_TIMESTAMP()", "CURRENT_TIMESTAMP()"),
        ("CURRENT_DATE()", "CURRENT_DATE"),
        ("CURRENT_DATE", "CURRENT_DATE"),
        ("CURRENT_DATETIME()", "CURRENT_DATETIME()"),
        ("NOW()", "NOW()"),
    ],
)
def test_nondeterministic_output_is_refused(expression: str, shown: str) -> None:
    sql = f"SELECT CAST({expression} AS STRING) AS run_marker, COUNT(DISTINCT client_id) AS client_count FROM {CD}"
    findings = check_query(sql, columns_spec("run_marker"))
    assert rules(findings) == [RULE_NONDETERMINISTIC]
    assert findings[0].message.startswith(f"{shown} in column run_marker of the main query")
    assert "@submission_date" in findings[0].fix


def test_nondeterministic_filter_in_a_cte_is_refused() -> None:
    sql = PAGE_LOADS_SQL.replace("WHERE submission_date = @submission_date", "WHERE submission_date = CURRENT_DATE() AND RAND() < 0.1")
    findings = check_query(sql, make_spec())
    assert rules(findings) == [RULE_NONDETERMINISTIC, RULE_NONDETERMINISTIC]
    assert all("the WHERE clause of CTE base" in f.message for f in findings)


def test_tablesample_is_refused() -> None:
    sql = f"SELECT country, COUNT(DISTINCT client_id) AS client_count FROM {CD} TABLESAMPLE SYSTEM (10 PERCENT) GROUP BY 1"
    findings = check_query(sql, columns_spec("country"))
    assert rules(findings) == [RULE_NONDETERMINISTIC]
    assert "sample_id" in findings[0].fix


# ---------------------------------------------------------------------------------------------
# Parse errors
# ---------------------------------------------------------------------------------------------


def test_syntax_error_names_the_line() -> None:
    sql = "SELECT\n  country,\n  COUNT(DISTINCT client_id AS client_count\nFROM t\n"
    findings = check_query(sql, columns_spec("country"))
    assert rules(findings) == [RULE_PARSE]
    assert "line 3" in findings[0].message and "Expecting )" in findings[0].message


def test_unfinished_query() -> None:
    findings = check_query("SELECT country FROM", columns_spec("country"))
    assert rules(findings) == [RULE_PARSE]
    assert "line 1, column 19" in findings[0].message and "end of the query" in findings[0].message


def test_unclosed_quote() -> None:
    findings = check_query("SELECT 'Other AS country\nFROM t", columns_spec("country"))
    assert rules(findings) == [RULE_PARSE]
    assert "line 1" in findings[0].message


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("", "empty"),
        ("  -- nothing\n", "empty"),
        ("SELECT 1 AS country; DROP TABLE t", "single SELECT statement; found SELECT, DROP"),
        (f"DELETE FROM {CD} WHERE TRUE", "single SELECT statement; found DELETE"),
    ],
)
def test_not_a_single_select(sql: str, expected: str) -> None:
    findings = check_query(sql, columns_spec("country"))
    assert rules(findings) == [RULE_PARSE]
    assert expected in findings[0].message


def test_unanalysable_structure_is_reported_not_raised() -> None:
    sql = f"SELECT * FROM (SELECT country FROM {CD}) JOIN (SELECT COUNT(*) AS client_count FROM {CD}) ON TRUE"
    findings = check_query(sql, columns_spec("country"))
    assert rules(findings) == [RULE_PARSE]
    assert "no alias" in findings[0].message and "alias" in findings[0].fix


def test_recursive_cte_is_traced_without_looping() -> None:
    sql = f"""
    WITH RECURSIVE r AS (
      SELECT 1 AS n, client_id AS k FROM {CD}
      UNION ALL
      SELECT n + 1, k FROM r WHERE n < 3
    )
    SELECT k AS country, COUNT(*) AS client_count FROM r GROUP BY 1
    """
    findings = check_query(sql, columns_spec("country"))
    (lineage,) = only(findings, RULE_FORBIDDEN_LINEAGE)
    assert "output column country derives from client_id" in lineage.message


def test_a_query_nested_too_deeply_for_the_checks_is_refused_with_what_to_do():
    deep = "SELECT os, " + "(" * 3000 + "1" + ")" * 3000 + f" AS client_count FROM {CD} GROUP BY os"
    findings = check_query(deep, columns_spec("os"))
    assert rules(findings) == [RULE_PARSE] and "nests expressions too deeply" in findings[0].message
    honest = f"SELECT os, ((((COUNT(DISTINCT client_id))))) AS client_count FROM {CD} GROUP BY os"
    assert check_query(honest, columns_spec("os")) == []
