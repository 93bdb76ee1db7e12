"""CREATE TEMP FUNCTION preambles are inlined, so the static checks follow arguments through
them: a function cannot hide an identifier, and one that cannot be followed is refused."""

from __future__ import annotations

import pytest

from pubdata.sql.parse import RULE_TEMP_FUNCTION, parse, prepared
from pubdata.sql.rewrite import plan
from pubdata.sql.rules import RULE_FORBIDDEN_LINEAGE, RULE_UNKNOWN_FUNCTION, check_query
from pubdata.sql.temp_functions import MAX_INLINED_NODES
from tests.sql.test_rules import CD, columns_spec, rules

HONEST = f"""
CREATE TEMP FUNCTION bucket_os(os STRING) AS (IF(os IN ('Windows_NT', 'Darwin', 'Linux'), os, 'Other'));
CREATE TEMP FUNCTION label(os STRING, country STRING) AS (CONCAT(bucket_os(os), '/', country));
SELECT submission_date, label(os, country) AS os, COUNT(DISTINCT client_id) AS client_count
FROM {CD} WHERE submission_date = @submission_date
GROUP BY submission_date, os
"""


def test_an_honest_preamble_is_inlined_and_passes():
    assert check_query(HONEST, columns_spec("submission_date", "os")) == []
    text = prepared(HONEST)
    assert "FUNCTION" not in text.upper() and "CONCAT(" in text and "IF((os) IN" in text.replace("((os))", "(os)")
    # Stage runs the inlined SELECT, counted and capped like any other.
    assert "_pubdata_units" in plan(HONEST, columns_spec("submission_date", "os")).query


def test_a_function_returning_its_argument_does_not_hide_an_identifier():
    hiding = f"""
    CREATE TEMP FUNCTION same(x STRING) AS (x);
    CREATE TEMP FUNCTION wrapped(x STRING) AS (CONCAT('id-', same(x)));
    SELECT submission_date, wrapped(client_id) AS os, COUNT(DISTINCT client_id) AS client_count
    FROM {CD} WHERE submission_date = @submission_date
    GROUP BY submission_date, os
    """
    findings = check_query(hiding, columns_spec("submission_date", "os"))
    assert RULE_FORBIDDEN_LINEAGE in rules(findings), findings
    assert any("client_id" in f.message for f in findings)


def test_a_struct_parameter_is_followed_field_by_field():
    leaking = f"""
    CREATE TEMP FUNCTION pick(info ANY TYPE) AS (info.client_id);
    SELECT submission_date, pick(STRUCT(client_id, os)) AS os, COUNT(DISTINCT client_id) AS client_count
    FROM {CD} WHERE submission_date = @submission_date GROUP BY submission_date, os
    """
    assert RULE_FORBIDDEN_LINEAGE in rules(check_query(leaking, columns_spec("submission_date", "os")))


def refusal(sql: str) -> str:
    statement, findings = parse(sql)
    assert statement is None and rules(findings) == [RULE_TEMP_FUNCTION], findings
    return findings[0].message


def test_functions_that_cannot_be_followed_are_refused_with_the_reason():
    select = f"SELECT f(client_id) AS os FROM {CD}"
    assert "a js function cannot be followed" in refusal(
        "CREATE TEMP FUNCTION f(x STRING) RETURNS STRING LANGUAGE js AS 'return x'; " + select).lower()
    assert "only TEMP functions" in refusal("CREATE FUNCTION f(x STRING) AS (x); " + select)
    assert "calls itself" in refusal("CREATE TEMP FUNCTION f(x INT64) AS (f(x - 1)); " + select)
    assert "both a parameter and an alias" in refusal(
        "CREATE TEMP FUNCTION f(x ANY TYPE) AS ((SELECT x FROM UNNEST([1]) AS x)); " + select)
    assert "a function of BigQuery has this name" in refusal(
        "CREATE TEMP FUNCTION safe_divide(x FLOAT64, y FLOAT64) AS (x); " + select)
    assert "takes 1 argument(s), called with 2" in refusal("CREATE TEMP FUNCTION f(x STRING) AS (x); "
                                                          f"SELECT f(os, country) AS os FROM {CD}")


def test_an_unknown_function_is_named_before_anything_runs():
    sql = f"""
    SELECT submission_date, mozfun.hist.percentiles(os, [0.5]) AS os, COUNT(DISTINCT client_id) AS client_count
    FROM {CD} WHERE submission_date = @submission_date GROUP BY submission_date, os
    """
    findings = check_query(sql, columns_spec("submission_date", "os"))
    assert rules(findings) == [RULE_UNKNOWN_FUNCTION]
    assert "mozfun.hist.percentiles" in findings[0].message
    known = sql.replace("mozfun.hist.percentiles(os, [0.5])", "CAST(mozfun.norm.truncate_version(os, 'major') AS STRING)")
    assert check_query(known, columns_spec("submission_date", "os")) == []


def test_a_function_reading_a_table_is_checked_like_the_subquery_it_is():
    reading = f"""
    CREATE TEMP FUNCTION some_client() AS ((SELECT MIN(client_id) FROM {CD}));
    SELECT submission_date, some_client() AS os, COUNT(DISTINCT client_id) AS client_count
    FROM {CD} WHERE submission_date = @submission_date GROUP BY submission_date, os
    """
    findings = check_query(reading, columns_spec("submission_date", "os"))
    assert RULE_FORBIDDEN_LINEAGE in rules(findings), findings


def test_a_call_inside_another_call_is_inlined_too():
    nested = f"""
    CREATE TEMP FUNCTION same(x STRING) AS (x);
    CREATE TEMP FUNCTION label(x STRING) AS (CONCAT('os-', x));
    SELECT submission_date, label(same({{col}})) AS os, COUNT(DISTINCT client_id) AS client_count
    FROM {CD} WHERE submission_date = @submission_date GROUP BY submission_date, os
    """
    honest = nested.format(col="os")
    assert check_query(honest, columns_spec("submission_date", "os")) == []
    assert "same(" not in prepared(honest) and "label(" not in prepared(honest)
    assert RULE_FORBIDDEN_LINEAGE in rules(check_query(nested.format(col="client_id"), columns_spec("submission_date", "os")))


@pytest.mark.timeout(60)
def test_functions_multiplying_their_size_are_refused_before_they_are_built():
    # Each level calls the one below four times: level 12 would be 4**13 expressions.
    levels = ["CREATE TEMP FUNCTION f0(x INT64) AS (x + x + x + x);"]
    levels += [f"CREATE TEMP FUNCTION f{i}(x INT64) AS (f{i - 1}(x) + f{i - 1}(x) + f{i - 1}(x) + f{i - 1}(x));"
               for i in range(1, 13)]
    select = f"SELECT submission_date, os, SUM(f12(1)) AS client_count FROM {CD} GROUP BY 1, 2"
    message = refusal("\n".join(levels) + "\n" + select)
    assert f"more than {MAX_INLINED_NODES:,} expressions" in message and "CTE" in message
    # Three levels (256 additions) are an ordinary query.
    honest = "\n".join(levels[:3]) + "\n" + select.replace("f12(1)", "f2(1)")
    assert check_query(honest, columns_spec("submission_date", "os")) == []
