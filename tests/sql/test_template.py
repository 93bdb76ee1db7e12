"""bqetl's Jinja in reviewed queries: rendered with a daily run's context, `is_init()` for a full
rebuild, in a sandbox that names whatever it does not provide."""

from __future__ import annotations

import re

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
    with pytest.raises(TemplateError, match=r"uses an attribute \(x.y\) at line 1"):
        render("{{ is_init.__globals__ }}")
    with pytest.raises(TemplateError, match="'lipsum' is undefined"):  # Jinja's own globals are not given either
        render("SELECT '{{ lipsum() }}'")


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("template", "refusal"), [
    ("{{ 'x' * 1000000000 }}", "uses arithmetic at line 2"),
    ("{{ 10 ** 10 ** 8 }}", "uses arithmetic"),
    ("{% for a in [1,2,3,4,5,6,7,8,9,10] %}\n{% for b in [1,2,3,4,5,6,7,8,9,10] %}{% for c in [1,2,3,4,5,6,7,8,9,10] %}"
     "{% for d in [1,2,3,4,5,6,7,8,9,10] %}{% for e in [1,2,3,4,5,6,7,8,9,10] %}x{% endfor %}{% endfor %}{% endfor %}"
     "{% endfor %}{% endfor %}", "loops running more than 10,000 times at line 3"),
    ("{% set big = 'x' %}{% for a in big %}{% endfor %}", "a {% for %} over something other than a literal list"),
    ("{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}", "uses {% macro %}"),
    ("{% include '/etc/passwd' %}", "uses {% include %}"),
    ("{{ is_init(1) }}", "a call other than is_init()"),
])
def test_a_template_that_could_stall_the_parse_is_refused_before_it_renders(template, refusal):
    with pytest.raises(TemplateError, match=re.escape(refusal)):
        render("SELECT 1\n" + template)


def test_what_bqetl_queries_use_still_renders():
    text = """{% set days = 28 %}
SELECT {% for m in ['a', 'b'] %}SUM({{ m }}) AS {{ m }}_sum, {% endfor %}{{ days }} AS days
{{ "-- init" if is_init() else "-- daily" }}{% if not is_init() and days == 28 %} WHERE x{% endif %}"""
    assert render(text) == "\nSELECT SUM(a) AS a_sum, SUM(b) AS b_sum, 28 AS days\n-- daily WHERE x"
