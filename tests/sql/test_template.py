"""bqetl's Jinja in reviewed queries: rendered with a daily run's context, `is_init()` for a full
rebuild, in a sandbox that names whatever it does not provide."""

from __future__ import annotations

import pytest

from pubdata.sql.parse import RULE_TEMPLATE, parse, prepared
from pubdata.sql.rules import check_query
from pubdata.sql.template import TemplateError, initializing, render
from tests.sql.test_rules import CD, columns_spec, rules

TEMPLATED = f"""
SELECT submission_date, os, COUNT(DISTINCT client_id) AS client_count
FROM {CD}
WHERE
  {{% if is_init() %}}
    submission_date >= '2020-01-01'
  {{% else %}}
    submission_date = @submission_date
  {{% endif %}}
GROUP BY submission_date, os
"""


def test_a_daily_run_renders_the_else_branch_and_a_rebuild_the_init_branch():
    daily = prepared(TEMPLATED)
    assert "@submission_date" in daily and "2020-01-01" not in daily
    with initializing():
        rebuild = prepared(TEMPLATED)
    assert "2020-01-01" in rebuild and "@submission_date" not in rebuild
    assert check_query(TEMPLATED, columns_spec("submission_date", "os")) == []


def test_plain_sql_is_left_as_it_is():
    text = "SELECT '{not a template' AS x"
    assert render(text) == text


def test_what_the_sandbox_does_not_provide_is_named():
    statement, findings = parse("SELECT 1 FROM {{ metrics.calculate(metrics=['x']) }}")
    assert statement is None and rules(findings) == [RULE_TEMPLATE]
    assert "'metrics' is undefined" in findings[0].message
    with pytest.raises(TemplateError, match="line 2"):
        render("SELECT 1\n{% if %}")
    with pytest.raises(TemplateError, match="cannot be rendered"):
        render("{{ is_init.__globals__ }}")
