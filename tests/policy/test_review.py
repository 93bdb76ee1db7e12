"""`pubdata review ID`: the review request a data engineer pastes into the review bug."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from pubdata.cli import app
from pubdata.declarations import load_all
from pubdata.policy.review import review_markdown
from tests.support.derive import CLIENT_SHARDS_SQL, DS, client_shards, derive, without_steward


def review(project, dataset_id: str) -> str:
    return review_markdown(load_all(project).declarations[dataset_id], project)


def answers(text: str) -> list[str]:
    return re.findall(r"^\d\. \*\*.+?\*\* (\*\*Yes\*\*|No) — ", text, re.M)


def test_signed_off_dataset(project):
    text = review(project, f"{DS}.search_counts_by_country_v1")
    assert text.startswith("## Data publishing review: `telemetry_public.search_counts_by_country_v1`\n")
    assert answers(text) == ["No", "No", "**Yes**", "No"]
    assert "3. **Does any dimension or metric contain sensitive data?** **Yes** — metric search_count is marked sensitive" in text
    assert "### Verdict: signed off by the data steward" in text
    assert "- signed off by Jane Steward on 2026-10-28 (https://bugzilla.example.org/show_bug.cgi?id=2026110#c7)" in text
    assert "| `search_count` | metric | | | **yes** | yes |" in text
    assert "| `client_count` | metric, bucket | | | no | yes |" in text
    assert "| `country` | dimension | 1 (technical) | geo_country | no | yes |" in text
    assert "- [ ] Metric search_count reveals or implies revenue" in text
    assert "- [ ] Record the sign-off as a comment in the review bug (https://bugzilla.example.org/show_bug.cgi?id=2026110)" in text
    assert "`sql/telemetry_public/search_counts_by_country_v1.sql` (sha256 `" in text
    assert "### Static checks of the query\n\nPassed:" in text


def test_dataset_waiting_for_signoff_says_what_to_do(project):
    ds = derive(project, "search_counts_by_country_v1", "search_counts_unsigned_v1", without_steward)
    text = review(project, ds)
    assert "### Verdict: needs the data steward's sign-off" in text
    assert "- a data steward's sign-off is required and review.steward is missing" in text
    assert "**To change the verdict:** ask a data steward to review the answers in the review bug" in text
    assert "- [ ] Metric search_count reveals or implies revenue" in text


def test_refused_dataset_asks_for_no_signoff(project):
    text = review(project, f"{DS}.city_active_hours_v1")
    assert answers(text) == ["**Yes**", "**Yes**", "**Yes**", "No"]
    assert "### Verdict: refused (no sign-off can publish it)" in text
    assert "- dimension city (category 4) may be published only at aggregation levels 1 and 2" in text
    assert "**To change the verdict:** raise the aggregation to level 2" in text
    assert "Nothing yet: the policy refuses this declaration" in text
    assert "- [ ]" not in text


def test_publishable_dataset_needs_nothing_from_the_steward(project):
    text = review(project, f"{DS}.page_loads_by_country_v1")
    assert answers(text) == ["No", "No", "No", "No"]
    assert "### Verdict: publishable without extra review" in text
    assert "Nothing: every review question is answered no, so no sign-off is required." in text


def test_static_check_findings_are_part_of_the_review(project):
    ds = derive(project, "page_loads_by_country_v1", "client_shards_v1", client_shards, CLIENT_SHARDS_SQL)
    text = review(project, ds)
    assert "### Verdict: publishable without extra review" in text
    assert "- **forbidden_lineage**: output column client_shard derives from client_id" in text


def test_cli_prints_the_markdown_exactly(project):
    """Plain text for pasting: no colour codes, no wrapping at the terminal's width."""
    ds = f"{DS}.search_counts_by_country_v1"
    result = CliRunner().invoke(app, ["review", ds], env={"COLUMNS": "60"})
    assert result.exit_code == 0, result.output
    assert result.stdout == review(project, ds)
    assert "\x1b[" not in result.stdout


def test_cli_unknown_dataset(project):
    result = CliRunner().invoke(app, ["review", f"{DS}.no_such_table_v1"])
    assert result.exit_code == 2
    assert "unknown dataset telemetry_public.no_such_table_v1" in result.output


def test_the_review_shows_what_the_pipeline_enforces(project):
    text = review(project, f"{DS}.page_loads_by_country_v1")
    assert "### What the pipeline enforces" in text
    assert "The query's shape allows aggregation level 2 at the lowest (declared: 2)." in text
    assert "Every published row counts at least 5,000 distinct `client_id` values, counted by the warehouse" in text
    assert "in this order: locale, normalized_channel → os → country" in text
    assert "<summary>rolled-up query</summary>" in text and "_pubdata_cells AS (" in text


def test_max_is_on_the_stewards_checklist(project):
    sql = (project / "sql" / DS / "search_counts_by_country_v1.sql").read_text()
    ds = derive(project, "search_counts_by_country_v1", "search_max_v1",
                sql=sql.replace("SUM(search_count_all)", "MAX(search_count_all)", 1))
    text = review(project, ds)
    assert "- [ ] Metric search_count is the smallest or largest value of its row (MIN/MAX)" in text
