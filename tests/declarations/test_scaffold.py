"""`pubdata new`: the scaffold passes `pubdata check` and its own SQL test as it is, documents
every field of a declaration, and never overwrites a dataset."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from pubdata.declarations import scaffold
from pubdata.declarations.spec import DeclarationFile, Dimension, Export, Metric, Policy, Review, Rollup
from tests.support.project import pubdata_cli
from tests.support.sql_cases import diff_rows, expected_rows, run_case, source_schemas

NEW = "telemetry_public.active_hours_by_country_v1"
BUG = "https://bugzilla.mozilla.org/show_bug.cgi?id=1234567"
ARGS = ["--owner", "you@example.org", "--bug", BUG, "--data-review", BUG + "#c2", "--start-date", "2026-11-01"]


def test_new_dataset_passes_check_and_its_sql_test(project, tmp_path, source_warehouse):
    proc = pubdata_cli("new", "telemetry_public.active_hours_by_country", *ARGS)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"Created {NEW}" in proc.stdout and f"pubdata check {NEW}" in proc.stdout
    files = scaffold.paths(project, NEW)
    assert all(p.is_file() for p in files.values())

    check = pubdata_cli("check", NEW)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "publishable" in check.stdout

    case = files["test_expect"].parent
    actual = run_case(case, project, source_schemas(source_warehouse), tmp_path)
    assert diff_rows(actual, expected_rows(case)) == ""
    assert {r["country"] for r in actual} == {"US", "Other"}


def test_declaration_documents_every_field(tmp_path):
    import datetime as dt

    text = scaffold.render(NEW, owner="you@example.org", bug=BUG, data_review=None, start_date=dt.date(2026, 11, 1))["declaration"]
    spec = DeclarationFile.model_validate(yaml.safe_load(text))
    assert spec.owners == ["you@example.org"] and [str(b) for b in spec.review.bugs] == [BUG]
    for model in (DeclarationFile, Policy, Review, Dimension, Metric, Export, Rollup):
        for field in model.model_fields:
            assert re.search(rf"\b{field}\b", text), f"the scaffolded declaration does not mention {model.__name__}.{field}"
    lines = text.splitlines()
    for field in Policy.model_fields:
        at = lines.index(next(l for l in lines if l.startswith(f"  {field}:")))
        assert lines[at - 1].lstrip().startswith("#"), f"policy.{field} has no comment above it"
    comments = "\n".join(l for l in lines if l.lstrip().startswith("#"))
    for word in ("category", "kind", "sensitive", "data_review", "steward"):
        assert word in comments, f"no comment explains {word}"

def test_without_a_data_review_check_asks_for_a_steward(project):
    proc = pubdata_cli("new", NEW, "--owner", "you@example.org", "--bug", BUG)
    assert proc.returncode == 0, proc.stderr
    assert "No --data-review" in proc.stdout
    check = pubdata_cli("check", NEW)
    assert check.returncode == 1
    assert "needs_signoff" in check.stdout and "review.data_reviews" in check.stdout


def test_existing_dataset_is_never_overwritten(project):
    query = project / "sql/telemetry_public/page_loads_by_country_v1.sql"
    before = query.read_bytes()
    proc = pubdata_cli("new", "telemetry_public.page_loads_by_country", *ARGS)
    assert proc.returncode == 2
    assert "already exists" in proc.stderr and "pubdata new telemetry_public.page_loads_by_country_v2" in proc.stderr
    assert query.read_bytes() == before
    assert not (project / "tests/sql/telemetry_public/page_loads_by_country_v2").exists()


@pytest.mark.parametrize("args, message", [
    (["Telemetry.Loads", *ARGS], "is not a dataset id"),
    ([NEW, "--owner", "nobody", "--bug", BUG], "is not an e-mail address"),
    ([NEW, "--owner", "you@example.org", "--bug", "bug 123"], "is not an http(s) URL"),
    ([NEW, *ARGS[:-1], "2026-13-01"], "is not a date"),
])
def test_bad_input_says_what_to_do(project, args, message):
    proc = pubdata_cli("new", *args)
    assert proc.returncode == 2
    assert message in " ".join(proc.stderr.split())
    assert not list(Path(project, "metadata").glob("*/active_hours*"))


def test_new_starts_at_the_last_day_of_local_data(project):
    """Without --start-date the dataset starts on a day the local warehouse has (the synthetic data
    ends 2026-11-01), so the `pubdata run` it suggests publishes rows, not an empty day."""
    args = [a for a in ARGS if a not in ("--start-date", "2026-11-01")]
    proc = pubdata_cli("new", NEW, *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = " ".join(proc.stdout.split())
    assert "start_date: 2026-11-01, the last day of moz-fx-data-shared-prod.telemetry.clients_daily" in out
    assert f"pubdata run {NEW} --date 2026-11-01" in out
    spec = yaml.safe_load(scaffold.paths(project, NEW)["declaration"].read_text())
    assert str(spec["start_date"]) == "2026-11-01"


def test_new_says_when_there_is_no_local_data(project, tmp_path, monkeypatch):
    import datetime as dt

    monkeypatch.setenv("PUBDATA_WAREHOUSE", f"duckdb://{tmp_path / 'empty.duckdb'}")
    args = [a for a in ARGS if a not in ("--start-date", "2026-11-01")]
    proc = pubdata_cli("new", NEW, *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = " ".join(proc.stdout.split())
    assert "has no local data of moz-fx-data-shared-prod.telemetry.clients_daily: start_date is today" in out
    assert "Run `pubdata synth`" in out
    spec = yaml.safe_load(scaffold.paths(project, NEW)["declaration"].read_text())
    assert str(spec["start_date"]) == dt.date.today().isoformat()
