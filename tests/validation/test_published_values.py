"""Published values are always valid: NaN and ±Infinity in a metric, and two rows for one cell, fail
validation naming the rows; control characters never reach a published text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pubdata.declarations import load_all
from pubdata.validation.expectations.finite_metrics import finite_metrics
from pubdata.validation.expectations.unique_dimensions import unique_dimensions
from pubdata.validation.redaction import shown
from pubdata.validation.run import validate
from pubdata.validation.suite import suite_for
from tests.support.project import EXAMPLE, GOOD_ROWS

DOUBLE_LOADS = "SELECT * REPLACE (CAST(page_loads AS DOUBLE) AS page_loads) FROM ({rows})"


@pytest.mark.parametrize("value", ["'nan'::DOUBLE", "'inf'::DOUBLE", "'-inf'::DOUBLE"])
def test_a_non_finite_metric_fails_naming_the_row(decl, stage_sql, value):
    rows = GOOD_ROWS.replace("'DE', 'Windows_NT', 'de', 'release', 90000,", f"'DE', 'Windows_NT', 'de', 'release', {value},")
    wh, staged = stage_sql(DOUBLE_LOADS.format(rows=rows))
    report = validate(decl, wh, staged, specs=finite_metrics(decl))
    assert report.outcome == "failed", report.summary()
    [failure] = report.failures
    assert failure.observed == 1
    assert failure.unexpected_sample == [{"submission_date": "2026-11-01", "country": "DE", "os": "Windows_NT",
                                          "locale": "de", "normalized_channel": "release"}]
    text = shown(json.loads(json.dumps(report.to_dict()["checks"][0], default=str)))
    assert text["observed"] == "1 row(s)" and '"country": "DE"' in text["sample"]


def test_finite_metrics_pass_on_honest_numbers_of_any_type(decl, stage_sql):
    for sql in (GOOD_ROWS, DOUBLE_LOADS.format(rows=GOOD_ROWS),
                f"SELECT * REPLACE (CAST(page_loads AS VARCHAR) AS page_loads) FROM ({GOOD_ROWS})"):
        wh, staged = stage_sql(sql)
        report = validate(decl, wh, staged, specs=finite_metrics(decl))
        assert report.outcome == "passed", report.summary()  # a text metric is the column-type check's to report


def test_duplicate_cells_fail_naming_them(decl, stage_sql):
    duplicated = GOOD_ROWS.replace(
        "(DATE '2026-11-01', 'DE', 'Windows_NT', 'de', 'release', 90000, 5000),",
        "(DATE '2026-11-01', 'DE', 'Windows_NT', 'de', 'release', 90000, 5000),"
        "(DATE '2026-11-01', 'DE', 'Windows_NT', 'de', 'release', 1000, 5000),",
    )
    wh, staged = stage_sql(duplicated)
    report = validate(decl, wh, staged, specs=unique_dimensions(decl))
    assert report.outcome == "failed", report.summary()
    [failure] = report.failures
    assert failure.observed == 1 and failure.unexpected_sample == [
        {"submission_date": "2026-11-01", "country": "DE", "os": "Windows_NT", "locale": "de",
         "normalized_channel": "release", "rows": 2}]
    wh, staged = stage_sql(GOOD_ROWS)
    assert validate(decl, wh, staged, specs=unique_dimensions(decl)).outcome == "passed"


def test_both_are_in_every_suite(decl, stage_sql):
    wh, staged = stage_sql(GOOD_ROWS)
    names = [s.name for s in suite_for(decl, wh)]
    assert "ExpectMetricsToBeFinite" in names and "ExpectDimensionsToBeUnique" in names
    assert validate(decl, wh, staged).outcome == "passed"


# -- control characters in the texts that are published ------------------------------------------


def _declare(project: Path, edit) -> list[str]:
    spec = yaml.safe_load((project / "metadata/telemetry_public/page_loads_by_country_v1.yaml").read_text())
    edit(spec)
    (project / "metadata/telemetry_public/texts_v1.yaml").write_text(yaml.safe_dump(spec))  # escapes what it must
    (project / "sql/telemetry_public/texts_v1.sql").write_text(
        (project / "sql/telemetry_public/page_loads_by_country_v1.sql").read_text())
    catalog = load_all(project)
    return [f"{p.field}: {p.message}" for p in catalog.problems]


def _set(*path, value):
    def edit(spec):
        node = spec
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return edit


@pytest.mark.parametrize("edit, field, char", [
    (_set("friendly_name", value="Page\a loads"), "friendly_name", "U+0007"),
    (_set("friendly_name", value="Page loads\nby country"), "friendly_name", "U+000A"),
    (_set("description", value="\x1b[31mred\x1b[0m"), "description", "U+001B"),
    (_set("policy", "dimensions", 1, "description", value="ISO\x00code"), "policy.dimensions[1].description", "U+0000"),
    (_set("labels", value={"team": "data\x85eng"}), "labels.team", "U+0085"),
    (_set("review", "steward", value={"name": "Jane\x08", "approved_on": "2026-11-01",
                                      "link": "https://example.org/1"}), "review.steward.name", "U+0008"),
])
def test_control_characters_are_refused_where_they_would_be_published(project, edit, field, char):
    problems = _declare(project, edit)
    assert any(p.startswith(f"{field}") and f"holds the control character {char}" in p for p in problems), problems


def test_line_breaks_and_tabs_are_fine_in_descriptions(project):
    assert _declare(project, _set("description", value="Two lines:\n\tthe second")) == []
    catalog = load_all(project)
    assert catalog.declarations["telemetry_public.texts_v1"].spec.description == "Two lines:\n\tthe second"
    assert EXAMPLE in catalog.declarations
