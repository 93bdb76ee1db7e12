"""What a published row may be, decided from the query (sql.shape, sql.lineage), not from the declaration.

Every attack on the minimum bucket a hostile or careless engineer has tried is here: either
`pubdata check` refuses it, naming the rule and the fix, or (marked RUNTIME) the warehouse's own
count catches it when the run validates (tests/validation/test_enforcement.py runs those). The
honest queries next to them pass, so the rules do not simply refuse everything.
"""

from __future__ import annotations

import copy

import pytest
import yaml

from pubdata.declarations.spec import DeclarationFile
from pubdata.sql.lineage import RULE_FORBIDDEN_LINEAGE
from pubdata.sql.rules import analyze_query, check_query
from pubdata.sql.shape import RULE_AGGREGATES, RULE_AGGREGATION, RULE_LEVEL, RULE_PRIVACY_UNIT, RULE_PROVENANCE
from tests.support.project import REPO

CD = "`moz-fx-data-shared-prod.telemetry.clients_daily`"
DIMS = "@submission_date AS submission_date, country, os"
METRICS = "SUM(scalar_parent_browser_engagement_total_uri_count_sum) AS page_loads, SUM(ssl_handshake_result_success_sum) AS ssl_page_loads"
RATIO = "ROUND(SAFE_DIVIDE(SUM(ssl_handshake_result_success_sum), SUM(scalar_parent_browser_engagement_total_uri_count_sum)), 4) AS ssl_ratio"
WHERE = "WHERE submission_date = @submission_date"
RUNTIME = None
"""Not refusable from the SQL alone: the warehouse's count disagrees with the column at validation."""


def base_spec(**policy) -> dict:
    spec = yaml.safe_load((REPO / "metadata/telemetry_public/ssl_ratio_by_country_v1.yaml").read_text())
    spec["policy"].pop("rollup")
    spec["policy"].update(policy)
    spec["source_tables"] = ["moz-fx-data-shared-prod.telemetry.clients_daily"]  # what these queries read
    return spec


def spec_of(raw: dict) -> DeclarationFile:
    return DeclarationFile.model_validate(raw)


def grouped(metrics: str, bucket: str = "COUNT(DISTINCT client_id)", *, dims: str = DIMS, frm: str = CD,
            group: str = "country, os") -> str:
    return f"SELECT {dims}, {metrics}, {bucket} AS client_count FROM {frm} {WHERE} GROUP BY {group}"


HONEST = grouped(f"{METRICS}, {RATIO}")

ATTACKS = {
    # the bucket column lies: the warehouse's count is the truth
    "literal count": (grouped(f"{METRICS}, {RATIO}", "5000"), RUNTIME),
    "window count": (grouped(f"{METRICS}, {RATIO}", "COUNT(*) OVER ()"), RUNTIME),
    "scaled count": (grouped(f"{METRICS}, {RATIO}", "COUNT(DISTINCT client_id) * 5000"), RUNTIME),
    "count inflated by a join": (
        f"SELECT {DIMS.replace('country, os', 'c.country, c.os')}, SUM(c.scalar_parent_browser_engagement_total_uri_count_sum) AS page_loads, "
        f"SUM(c.ssl_handshake_result_success_sum) AS ssl_page_loads, 0.5 AS ssl_ratio, COUNT(*) AS client_count "
        f"FROM {CD} AS c CROSS JOIN UNNEST(GENERATE_ARRAY(1, 5000)) AS x GROUP BY c.country, c.os",
        [RULE_PRIVACY_UNIT]),
    "count inflated by a join in a CTE": (
        f"WITH x AS (SELECT c.* FROM {CD} AS c CROSS JOIN UNNEST(GENERATE_ARRAY(1, 100)) AS n) "
        + grouped(f"{METRICS}, {RATIO}", "COUNT(*)", frm="x"), RUNTIME),
    "scalar subquery count": (grouped(f"{METRICS}, {RATIO}", f"(SELECT COUNT(DISTINCT client_id) FROM {CD})"),
                              [RULE_AGGREGATES]),
    # individual-level rows
    "row-level select": (f"SELECT submission_date, country, os, scalar_parent_browser_engagement_total_uri_count_sum, ssl_handshake_result_success_sum, 0.5 AS ssl_ratio, "
                         f"5000 AS client_count FROM {CD}", [RULE_AGGREGATION]),
    "grouped by the client": (grouped(f"{METRICS}, {RATIO}", group="country, os, client_id"), [RULE_LEVEL]),
    # identifiers transformed, moved or packed
    "reversed identifier": (grouped(f"{METRICS}, {RATIO}", dims="@submission_date AS submission_date, "
                                    "REVERSE(client_id) AS country, os", group="2, 3"), [RULE_FORBIDDEN_LINEAGE]),
    "replaced identifier": (grouped(f"{METRICS}, {RATIO}", dims="@submission_date AS submission_date, "
                                    "REPLACE(client_id, '-', '') AS country, os", group="2, 3"),
                            [RULE_FORBIDDEN_LINEAGE]),
    "hash prefix": (grouped(f"{METRICS}, {RATIO}", dims="@submission_date AS submission_date, "
                            "SUBSTR(TO_HEX(MD5(client_id)), 1, 8) AS country, os", group="2, 3"),
                    [RULE_FORBIDDEN_LINEAGE]),
    "unpivoted identifier": (
        grouped(f"{METRICS}, {RATIO}", dims="@submission_date AS submission_date, v AS country, os",
                frm=f"(SELECT * FROM (SELECT client_id, client_id AS copy, os, scalar_parent_browser_engagement_total_uri_count_sum, ssl_handshake_result_success_sum "
                    f"FROM {CD}) UNPIVOT(v FOR name IN (copy)))", group="2, 3"), [RULE_FORBIDDEN_LINEAGE]),
    "pivoted identifier": (
        grouped(f"{METRICS}, {RATIO}", dims="@submission_date AS submission_date, linux AS country, os",
                frm=f"(SELECT * FROM (SELECT client_id, os, scalar_parent_browser_engagement_total_uri_count_sum, ssl_handshake_result_success_sum FROM {CD}) "
                    "PIVOT(ANY_VALUE(client_id) FOR os IN ('Linux' AS linux)))", group="2, 3"),
        [RULE_FORBIDDEN_LINEAGE]),
    "JSON at a computed path": (
        grouped(f"{METRICS}, {RATIO}", dims="@submission_date AS submission_date, "
                "JSON_VALUE(TO_JSON_STRING(STRUCT(client_id)), CONCAT('$.', 'client_id')) AS country, os",
                group="2, 3"), [RULE_FORBIDDEN_LINEAGE]),
    "string_agg of identifiers": (grouped("STRING_AGG(client_id) AS page_loads, SUM(ssl_handshake_result_success_sum) AS "
                                          "ssl_handshake_result_success_sum, 0.5 AS ssl_ratio"), [RULE_FORBIDDEN_LINEAGE, RULE_AGGREGATES]),
    "identifiers packed as JSON": (grouped("TO_JSON_STRING(ARRAY_AGG(STRUCT(client_id, scalar_parent_browser_engagement_total_uri_count_sum))) AS page_loads, "
                                           "SUM(ssl_handshake_result_success_sum) AS ssl_page_loads, 0.5 AS ssl_ratio"),
                                   [RULE_FORBIDDEN_LINEAGE, RULE_AGGREGATES]),
    # aggregates that do not reduce a group to a statistic
    "any_value": (grouped("ANY_VALUE(scalar_parent_browser_engagement_total_uri_count_sum) AS page_loads, SUM(ssl_handshake_result_success_sum) AS ssl_page_loads, 0.5 AS ssl_ratio"),
                  [RULE_AGGREGATES]),
    "array_agg of values": (grouped("TO_JSON_STRING(ARRAY_AGG(scalar_parent_browser_engagement_total_uri_count_sum)) AS page_loads, SUM(ssl_handshake_result_success_sum) AS "
                                    "ssl_handshake_result_success_sum, 0.5 AS ssl_ratio"), [RULE_AGGREGATES]),
    "max without a steward": (grouped("MAX(scalar_parent_browser_engagement_total_uri_count_sum) AS page_loads, SUM(ssl_handshake_result_success_sum) AS ssl_page_loads, "
                                      "0.5 AS ssl_ratio"), [RULE_AGGREGATES]),
    # the unit or the values moved so the warehouse counts the wrong thing
    "unit rewritten by * REPLACE": (
        f"WITH x AS (SELECT * REPLACE (CONCAT(client_id, CAST(n AS STRING)) AS client_id) FROM {CD}, "
        f"UNNEST(GENERATE_ARRAY(1, 5000)) AS n {WHERE}) " + grouped(f"{METRICS}, {RATIO}", frm="x"),
        [RULE_PRIVACY_UNIT]),
    "subquery value by * REPLACE": (
        f"WITH x AS (SELECT * REPLACE ((SELECT SUM(v.scalar_parent_browser_engagement_total_uri_count_sum) FROM {CD} AS v WHERE v.country = 'LI') "
        f"AS scalar_parent_browser_engagement_total_uri_count_sum) FROM {CD} {WHERE}) " + grouped(f"{METRICS}, {RATIO}", frm="x"), [RULE_PROVENANCE]),
    "window maximum by * REPLACE": (
        f"WITH x AS (SELECT * REPLACE (MAX(scalar_parent_browser_engagement_total_uri_count_sum) OVER (PARTITION BY country) AS scalar_parent_browser_engagement_total_uri_count_sum) FROM {CD} "
        f"{WHERE}) " + grouped(f"{METRICS}, {RATIO}", frm="x"), [RULE_PROVENANCE]),
    "another client's values through a join": (
        f"WITH j AS (SELECT b.client_id, b.country, b.os, a.scalar_parent_browser_engagement_total_uri_count_sum, a.ssl_handshake_result_success_sum FROM {CD} AS a "
        f"CROSS JOIN {CD} AS b WHERE a.city = 'Smallville') " + grouped(f"{METRICS}, {RATIO}", frm="j"),
        [RULE_PRIVACY_UNIT]),
    # a condition on one identifier tells where that client is
    "countif of one client": (grouped("COUNTIF(client_id = 'victim') AS page_loads, SUM(ssl_handshake_result_success_sum) AS "
                                      "ssl_handshake_result_success_sum, 0.5 AS ssl_ratio"), [RULE_FORBIDDEN_LINEAGE]),
    "having picks one client's row": (grouped(f"{METRICS}, {RATIO}") + " HAVING LOGICAL_OR(client_id = 'victim')",
                                      [RULE_FORBIDDEN_LINEAGE]),
    "order by limit picks one client's row": (
        grouped(f"{METRICS}, {RATIO}") + " ORDER BY COUNTIF(client_id = 'victim') DESC LIMIT 1",
        [RULE_FORBIDDEN_LINEAGE]),
    "identifier prefix in a filter": (grouped(f"{METRICS}, {RATIO}").replace(
        WHERE, WHERE + " AND SUBSTR(client_id, 1, 1) = 'a'"), [RULE_FORBIDDEN_LINEAGE]),
}


@pytest.mark.parametrize("name", [n for n, (_, rules) in ATTACKS.items() if rules is not RUNTIME])
def test_attack_is_refused_by_check_naming_the_rule_and_the_fix(name):
    sql, rules = ATTACKS[name]
    findings = check_query(sql, spec_of(base_spec()))
    assert findings, f"{name}: passed the static checks"
    assert {f.rule for f in findings} >= set(rules), [(f.rule, f.message) for f in findings]
    assert all(f.message and f.fix for f in findings)


@pytest.mark.parametrize("name", [n for n, (_, rules) in ATTACKS.items() if rules is RUNTIME])
def test_attack_left_to_the_warehouse_count_is_an_aggregation_it_can_count(name):
    """What check cannot refuse, stage can instrument: one aggregation, counted by client."""
    analysis = analyze_query(ATTACKS[name][0], spec_of(base_spec()))
    assert analysis.findings == [] and analysis.shape is not None
    assert analysis.shape.bucket == "other" and len(analysis.shape.targets) == 1


def test_the_honest_query_passes_and_its_bucket_is_the_unit_count():
    analysis = analyze_query(HONEST, spec_of(base_spec()))
    assert analysis.findings == []
    assert analysis.shape is not None and analysis.shape.bucket == "units" and analysis.shape.level == 2


def test_max_is_allowed_once_a_steward_signed_off():
    raw = base_spec()
    raw["review"]["steward"] = {"name": "Jane Steward", "approved_on": "2026-11-01",
                                "link": "https://bugzilla.mozilla.org/show_bug.cgi?id=1435902#c3"}
    sql = ATTACKS["max without a steward"][0]
    assert check_query(sql, spec_of(raw)) == []


@pytest.mark.parametrize("level, sql, rule", [
    (1, ATTACKS["row-level select"][0], RULE_AGGREGATION),  # level 1 has no bucket: it cannot hide rows
    (1, HONEST, RULE_LEVEL),  # a model is not a SQL row output: a GROUP BY is level 2 at best
    (3, ATTACKS["row-level select"][0], RULE_AGGREGATION),
])
def test_a_declared_level_below_the_query_shape_is_refused(level, sql, rule):
    findings = check_query(sql, spec_of(base_spec(aggregation_level=level, bucket_column=None)))
    assert rule in {f.rule for f in findings}, [(f.rule, f.message) for f in findings]


def test_the_level_is_derived_from_the_shape():
    spec = spec_of(base_spec())
    assert analyze_query(HONEST, spec).shape.level == 2
    assert analyze_query(ATTACKS["row-level select"][0], spec).shape.level >= 5
    assert analyze_query(ATTACKS["grouped by the client"][0], spec).shape.level >= 5


def test_a_level_3_declaration_of_an_aggregate_query_is_not_refused_by_shape():
    """Level 3 (no minimum) is the steward's call, not the SQL's: shape allows it."""
    findings = check_query(HONEST, spec_of(base_spec(aggregation_level=3, bucket_column=None)))
    assert RULE_LEVEL not in {f.rule for f in findings}


@pytest.mark.parametrize("sql", [
    # honest shapes the rules must not refuse
    grouped("COUNTIF(scalar_parent_browser_engagement_total_uri_count_sum > 0) AS page_loads, SUM(IF(os = 'Linux', ssl_handshake_result_success_sum, 0)) AS ssl_page_loads, "
            "AVG(scalar_parent_browser_engagement_total_uri_count_sum) AS ssl_ratio"),
    f"WITH per_client AS (SELECT client_id, country, os, SUM(scalar_parent_browser_engagement_total_uri_count_sum) AS page_loads, SUM(ssl_handshake_result_success_sum) AS "
    f"ssl_handshake_result_success_sum FROM {CD} {WHERE} GROUP BY client_id, country, os) "
    f"SELECT {DIMS}, {METRICS}, {RATIO}, COUNT(DISTINCT client_id) AS client_count FROM per_client GROUP BY country, os",
    grouped(f"{METRICS}, {RATIO}", frm=f"(SELECT * FROM (SELECT client_id, country, os, scalar_parent_browser_engagement_total_uri_count_sum, ssl_handshake_result_success_sum "
                                       f"FROM {CD}) UNPIVOT(v FOR metric IN (scalar_parent_browser_engagement_total_uri_count_sum, ssl_handshake_result_success_sum)))"),
    grouped(f"{METRICS}, {RATIO}", dims="@submission_date AS submission_date, "
            "JSON_VALUE(TO_JSON_STRING(STRUCT(country)), '$.country') AS country, os", group="2, 3"),
    # a per-client total by window, a dedupe by QUALIFY, joins on the unit, a wrapper, a semi-join
    f"WITH b AS (SELECT client_id, country, os, SUM(scalar_parent_browser_engagement_total_uri_count_sum) OVER (PARTITION BY client_id) AS page_loads, "
    f"ssl_handshake_result_success_sum FROM {CD} {WHERE} QUALIFY ROW_NUMBER() OVER (PARTITION BY client_id ORDER BY "
    "submission_date DESC) = 1) " + grouped(f"{METRICS}, {RATIO}", frm="b").replace(WHERE, ""),
    f"WITH j AS (SELECT a.client_id, a.country, a.os, a.scalar_parent_browser_engagement_total_uri_count_sum, y.ssl_handshake_result_success_sum FROM {CD} AS a "
    f"JOIN {CD} AS y ON a.client_id = y.client_id AND a.submission_date = y.submission_date) "
    + grouped(f"{METRICS}, {RATIO}", frm="j"),
    f"WITH j AS (SELECT client_id, a.country, a.os, a.scalar_parent_browser_engagement_total_uri_count_sum, a.ssl_handshake_result_success_sum FROM {CD} AS a "
    f"JOIN {CD} AS y USING (client_id, submission_date)) " + grouped(f"{METRICS}, {RATIO}", frm="j"),
    f"SELECT * FROM ({HONEST}) AS t",
    grouped(f"{METRICS}, {RATIO}").replace(WHERE, WHERE + " AND client_id IN (SELECT client_id FROM "
                                           f"{CD} WHERE sample_id = 42) AND client_id IS NOT NULL"),
])
def test_honest_shapes_pass(sql):
    findings = check_query(sql, spec_of(base_spec()))
    assert findings == [], [(f.rule, f.message) for f in findings]


def test_the_privacy_unit_is_the_declared_column():
    """Counting distinct profile_ids when the unit is client_id does not count the unit."""
    raw = copy.deepcopy(base_spec(privacy_unit="profile_group_id"))
    analysis = analyze_query(HONEST, spec_of(raw))
    assert analysis.shape is not None and analysis.shape.bucket == "other"


@pytest.mark.parametrize("unit", ["document_id", "sample_id", "session_id", "client_info.app_channel", "os"])
def test_a_privacy_unit_that_is_not_a_client_identifier_is_refused(unit):
    """A per-ping id as the unit would let one client with 5,000 pings fill a row on its own."""
    findings = check_query(HONEST.replace("client_id", unit), spec_of(base_spec(privacy_unit=unit)))
    assert RULE_PRIVACY_UNIT in [f.rule for f in findings], findings
    assert any(f"{unit!r} is not a client identifier" in f.message for f in findings)
    for honest in ("client_id", "profile_group_id", "client_info.client_id"):
        assert not [f for f in check_query(HONEST, spec_of(base_spec(privacy_unit=honest)))
                    if "is not a client identifier" in f.message]
