"""The policy enforced in three places: `pubdata check` (exit 1 naming file, rule and fix), the DAG
factory (no DAG for a refused or unsigned dataset, listed by the errors DAG instead), and the
running DAG (validate re-reads the declaration, so an edit between stage and validate is caught)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pubdata.cli import app
from pubdata.config import settings
from pubdata.errors import PolicyRefused, UsageError
from pubdata.orchestration import records, tasks
from tests.support.derive import CLIENT_SHARDS_SQL, DS, client_shards, derive, without_steward
from tests.support.project import REPO, pubdata_cli

PAGE_LOADS = f"{DS}.page_loads_by_country_v1"
SEARCHES = f"{DS}.search_counts_by_country_v1"
REFUSED_EXAMPLE = f"{DS}.city_active_hours_v1"
DAY = dt.date(2026, 11, 1)


def flat(text: str) -> str:
    """Output with line wrapping and table borders undone, so assertions read phrases, not layout."""
    return " ".join(re.sub(r"[│┃]", " ", text).split())


def check(*args: str):
    result = CliRunner().invoke(app, ["check", *args], env={"COLUMNS": "200"})
    return result.exit_code, flat(result.output)


def level_3_with_category_3(dimension: str):
    def edit(spec: dict) -> None:
        spec["policy"]["aggregation_level"] = 3
        spec["policy"].pop("rollup", None)  # a roll-up needs level 2
        for d in spec["policy"]["dimensions"]:
            if d["name"] == dimension:
                d["category"] = 3

    return edit


# ---------------------------------------------------------------------------------------------
# pubdata check
# ---------------------------------------------------------------------------------------------


def test_repo_check_passes_and_shows_the_intended_refusal(source_warehouse):
    """What `make check` (a CI gate) sees on this repository, run as a user would: it passes, and
    the example refused on purpose is still reported with its rule and fix, marked as intended.
    The local warehouse is today's synthetic one, whatever the checkout's var/ holds."""
    proc = pubdata_cli("check", env={"PUBDATA_PROJECT": str(REPO), "PUBDATA_WAREHOUSE": f"duckdb://{source_warehouse}"})
    out = flat(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not [line for line in proc.stdout.splitlines() if line.startswith("✗")], proc.stdout
    intended = [line for line in proc.stdout.splitlines() if line.startswith("○")]
    assert len(intended) == 1, proc.stdout
    assert intended[0].startswith("○ metadata/telemetry_public/city_active_hours_v1.yaml: policy: refused (refused on purpose")
    assert "dimension city (category 4) may be published only at aggregation levels 1 and 2" in out
    assert "fix: raise the aggregation to level 2 with a minimum bucket" in out
    assert f"{REFUSED_EXAMPLE} refused refused on purpose" in out
    assert f"{SEARCHES} signed_off ok" in out
    assert "all 7 declaration(s) pass; 1 refused on purpose, as marked" in out


def test_an_unmarked_refusal_still_fails_check(project):
    """The mark is per declaration: the same refusal without it is a failure, as before."""
    meta = project / f"metadata/{DS}/city_active_hours_v1.yaml"
    meta.write_text("\n".join(line for line in meta.read_text().splitlines() if not line.startswith("refused_on_purpose")) + "\n")
    code, out = check()
    assert code == 1, out
    assert f"✗ metadata/{DS}/city_active_hours_v1.yaml: policy: refused:" in out


def test_a_mark_on_a_publishable_declaration_fails_check(project):
    """refused_on_purpose cannot hide a dataset: once the policy would publish it, check fails."""
    meta = project / f"metadata/{DS}/page_loads_by_country_v1.yaml"
    meta.write_text(meta.read_text() + "refused_on_purpose: kept as an example\n")
    code, out = check(PAGE_LOADS)
    assert code == 1, out
    assert f"✗ metadata/{DS}/page_loads_by_country_v1.yaml: policy: not refused: refused_on_purpose is set" in out
    assert "fix: remove refused_on_purpose" in out


def test_check_of_a_broken_declaration_by_id_reports_its_errors(project):
    """`pubdata check ID` on a file that does not load: its errors, with file:line:column, not "unknown dataset"."""
    meta = project / f"metadata/{DS}/page_loads_by_country_v1.yaml"
    text = meta.read_text().replace("owners:", "ownres:", 1)
    meta.write_text(text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if t.startswith("ownres:"))
    proc = pubdata_cli("check", PAGE_LOADS)
    out = flat(proc.stdout + proc.stderr)
    assert proc.returncode == 1, out
    assert "unknown dataset" not in out
    assert f"{PAGE_LOADS} - declaration errors" in out
    assert f"✗ metadata/{DS}/page_loads_by_country_v1.yaml:{line}:1: declaration: ownres: unknown key; did you mean owners?" in out
    assert "declaration: owners: required key is missing" in out
    # an id with no declaration at all is still unknown
    proc = pubdata_cli("check", f"{DS}.no_such_table_v1")
    assert proc.returncode == 2 and "unknown dataset" in proc.stderr


def test_run_before_start_date_is_refused_with_the_reason(project):
    """No Airflow involved: the day is refused before anything runs, and the exit status says so."""
    proc = pubdata_cli("run", PAGE_LOADS, "--date", "2026-10-01")
    out = flat(proc.stdout + proc.stderr)
    assert proc.returncode == 1, out
    assert (f"{PAGE_LOADS}: not run: 2026-10-01 is before the dataset's start_date 2026-11-01 "
            "(page_loads_by_country_v1.yaml)") in out
    assert "not run: before start_date" in out
    assert "Preparing Airflow" not in out
    with pytest.raises(UsageError, match="before the dataset's start_date"):
        tasks.stage(PAGE_LOADS, dt.date(2026, 10, 1))


def test_check_all_reports_the_refusal_without_failing(project):
    """`make demo` runs `pubdata check --all`: the refusal is shown, the demo goes on."""
    code, out = check("--all")
    assert code == 0, out
    assert f"{REFUSED_EXAMPLE} refused refused on purpose" in out
    assert "metadata/telemetry_public/city_active_hours_v1.yaml: policy: refused (refused on purpose" in out


def test_refused_by_the_safety_matrix(project):
    ds = derive(project, "page_loads_by_country_v1", "page_loads_no_minimum_v1", level_3_with_category_3("locale"))
    code, out = check(ds)
    assert code == 1
    assert f"✗ metadata/{DS}/page_loads_no_minimum_v1.yaml: policy: refused:" in out
    assert "dimension locale (category 3) may be published only at aggregation levels 1 and 2, and this dataset is judged at level 3" in out
    assert "fix: raise the aggregation to level 2 with a minimum bucket" in out and "or drop dimension locale (category 3)" in out


def test_needs_signoff_and_lacks_it(project):
    ds = derive(project, "search_counts_by_country_v1", "search_counts_unsigned_v1", without_steward)
    code, out = check(ds)
    assert code == 1
    assert f"✗ metadata/{DS}/search_counts_unsigned_v1.yaml: policy: needs_signoff:" in out
    assert "review question 3 is answered yes: metric search_count is marked sensitive" in out
    assert "review.steward is missing" in out
    assert "fix: ask a data steward to review the answers in the review bug" in out
    assert "add review.steward with name, approved_on and link" in out


def test_forbidden_column_lineage_in_the_query(project):
    ds = derive(project, "page_loads_by_country_v1", "client_shards_v1", client_shards, CLIENT_SHARDS_SQL)
    code, out = check(ds)
    assert code == 1
    assert f"✗ sql/{DS}/client_shards_v1.sql: sql: forbidden_lineage: output column client_shard derives from client_id" in out
    assert "fix: drop it, or reduce it to a count of distinct clients" in out
    assert "policy:" not in out  # the declaration itself is publishable: only the query gives it away


def test_good_declarations_pass(project):
    code, out = check(PAGE_LOADS, SEARCHES)
    assert code == 0, out
    assert f"{PAGE_LOADS} publishable ok" in out and f"{SEARCHES} signed_off ok" in out
    assert "all 2 declaration(s) pass" in out


def test_fixing_the_declaration_clears_the_refusal(project):
    """The fix the refusal names really makes the declaration pass."""
    def fixed(spec: dict) -> None:
        level_3_with_category_3("locale")(spec)
        spec["policy"]["aggregation_level"] = 2
        spec["review"]["steward"] = {"name": "Jane Steward", "approved_on": "2026-11-01",
                                     "link": "https://bugzilla.example.org/show_bug.cgi?id=1#c2"}

    ds = derive(project, "page_loads_by_country_v1", "page_loads_locale_v1", fixed)
    code, out = check(ds)
    assert code == 0, out
    assert f"{ds} signed_off ok" in out


# ---------------------------------------------------------------------------------------------
# The DAG factory
# ---------------------------------------------------------------------------------------------


def test_dag_factory_gives_refused_and_unsigned_datasets_no_dag(project):
    from pubdata.orchestration.dag_factory import ERRORS_DAG_ID, build_dags

    derive(project, "search_counts_by_country_v1", "search_counts_unsigned_v1", without_steward)
    dags = build_dags(project)
    assert "publish_telemetry_public__city_active_hours_v1" not in dags
    assert "publish_telemetry_public__search_counts_unsigned_v1" not in dags
    assert "publish_telemetry_public__search_counts_by_country_v1" in dags  # signed off
    assert "publish_telemetry_public__page_loads_by_country_v1" in dags
    doc = dags[ERRORS_DAG_ID].doc_md
    assert "metadata/telemetry_public/city_active_hours_v1.yaml: policy: refused: dimension city (category 4)" in doc
    assert ("metadata/telemetry_public/search_counts_unsigned_v1.yaml: policy: needs_signoff:" in doc
            and "Fix: ask a data steward" in doc)


def test_check_and_the_dag_factory_agree_on_static_findings(project):
    """A query `pubdata check` refuses gets no DAG: the errors DAG lists the finding, with its fix."""
    from pubdata.orchestration.dag_factory import ERRORS_DAG_ID, build_dags

    ds = derive(project, "page_loads_by_country_v1", "client_shards_v1", client_shards, CLIENT_SHARDS_SQL)
    code, out = check(ds)
    assert code == 1 and "forbidden_lineage" in out
    dags = build_dags(project)
    assert "publish_telemetry_public__client_shards_v1" not in dags
    assert "publish_telemetry_public__page_loads_by_country_v1" in dags
    doc = dags[ERRORS_DAG_ID].doc_md
    assert f"sql/{DS}/client_shards_v1.sql: sql: forbidden_lineage: output column client_shard derives from client_id" in doc
    assert "Fix: drop it, or reduce it to a count of distinct clients" in doc


def test_dag_factory_fails_closed_when_the_checks_run_out_of_time(project, monkeypatch):
    """With no time for static checks, a changed declaration gets no DAG until a parse checks it."""
    from pubdata.orchestration.dag_factory import ERRORS_DAG_ID, GATE_BUDGET_ENV, build_dags

    monkeypatch.setenv(GATE_BUDGET_ENV, "0")
    dags = build_dags(project)
    assert "publish_telemetry_public__page_loads_by_country_v1" not in dags
    doc = dags[ERRORS_DAG_ID].doc_md
    assert "metadata/telemetry_public/page_loads_by_country_v1.yaml: not checked yet" in doc
    check(PAGE_LOADS)  # checks it, on this machine, into the cache the factory reads
    dags = build_dags(project)
    assert "publish_telemetry_public__page_loads_by_country_v1" in dags
    assert "page_loads_by_country_v1.yaml: not checked yet" not in dags[ERRORS_DAG_ID].doc_md


def test_an_edited_query_is_checked_again(project):
    """The cache is keyed by what the checks read: a query edited into a refusal loses its DAG."""
    from pubdata.orchestration.dag_factory import build_dags

    assert "publish_telemetry_public__page_loads_by_country_v1" in build_dags(project)
    query = project / "sql" / DS / "page_loads_by_country_v1.sql"
    query.write_text(query.read_text().replace("SUM(scalar_parent_browser_engagement_total_uri_count_sum) AS page_loads",
                                                "STRING_AGG(client_id) AS page_loads"))
    dags = build_dags(project)
    assert "publish_telemetry_public__page_loads_by_country_v1" not in dags


# ---------------------------------------------------------------------------------------------
# The running DAG
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("edit, status", [(level_3_with_category_3("country"), "refused"), (without_steward, "needs_signoff")])
def test_validate_refuses_a_declaration_edited_after_stage(project, edit, status):
    """Stage runs on the approved declaration; the file is then edited; validate must not pass it."""
    staged = tasks.stage(SEARCHES, DAY, run_id="edited")
    path = project / "metadata" / DS / "search_counts_by_country_v1.yaml"
    spec = yaml.safe_load(path.read_text())
    edit(spec)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))

    with pytest.raises(PolicyRefused, match=f"policy verdict is {status}"):
        tasks.validate(SEARCHES, staged)
    rec = records.RunRecords.open(settings()).get(SEARCHES, staged["partition"])
    assert rec.state == "staged" and rec.validation is None
    # Export checks the policy again: even a validation result that passed does not get it through.
    with pytest.raises(PolicyRefused, match=f"policy verdict is {status}"):
        tasks.export(SEARCHES, staged, {"outcome": "passed", "checks": 1}, run_id="edited")
    assert not any((Path(settings().home) / "public").rglob("*.json"))


def test_check_names_a_source_table_the_local_warehouse_lacks(project):
    """Known before any run: the declared source table, and the command that creates or loads it."""
    table = "moz-fx-data-shared-prod.org_mozilla_fenix.baseline"  # not a synthetic table

    def elsewhere(spec: dict) -> None:
        spec["source_tables"] = [table]
        spec["policy"].pop("rollup", None)

    sql = (f"SELECT DATE(submission_timestamp) AS submission_date, client_info.app_display_version AS country, "
           f"normalized_os AS os, COUNT(DISTINCT client_id) AS client_count FROM `{table}` "
           "WHERE DATE(submission_timestamp) = @submission_date GROUP BY 1, 2, 3")
    ds = derive(project, "ssl_ratio_by_country_v1", "usage_v1", elsewhere, sql)
    code, out = check(ds)
    assert code == 1
    assert (f"metadata/telemetry_public/usage_v1.yaml: source: missing table: source_tables names {table}, which the "
            "local warehouse") in out
    assert "load rows for it from a SQL test case with `pubdata load tests/sql/" in out
    code, out = check(PAGE_LOADS)  # a dataset whose tables are all there is not affected
    assert code == 0, out
