"""`pubdata load`: a SQL test case's input rows become the local warehouse's tables, and a run
stages from them exactly what the case expects."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import duckdb
import pytest
import yaml
from typer.testing import CliRunner

from pubdata.cli.app import app
from pubdata.sources.synthetic import existing_spec
from tests.support.derive import derive
from tests.support.project import REPO
from tests.support.sql_cases import diff_rows, expected_rows

CASE = REPO / "tests/sql/telemetry_public/ssl_ratio_by_country_v1/other_grouping"


@pytest.fixture()
def own_warehouse(project, source_warehouse, tmp_path, monkeypatch) -> Path:
    """A copy of the synthetic warehouse this test may change."""
    path = tmp_path / "own.duckdb"
    shutil.copyfile(source_warehouse, path)
    monkeypatch.setenv("PUBDATA_WAREHOUSE", f"duckdb://{path}")
    return path


def at_minimum(k: int):
    """The case's minimum bucket, signed off (below the policy's minimum, a steward must approve)."""
    def edit(spec: dict) -> None:
        spec["policy"]["min_bucket_size"] = k
        spec["review"]["steward"] = {"name": "Jane Steward", "approved_on": "2026-11-01",
                                     "link": spec["review"]["bugs"][0] + "#c9"}
    return edit


def _count(path: Path, table: str) -> int:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        con.close()


def test_a_loaded_case_is_what_the_run_stages(project, own_warehouse):
    from pubdata.orchestration import tasks

    synthetic_clients_daily = _count(own_warehouse, "telemetry.clients_daily")
    result = CliRunner().invoke(app, ["load", str(CASE)])
    assert result.exit_code == 0, result.output
    assert "telemetry.main: 11 rows" in result.output
    assert _count(own_warehouse, "telemetry.main") == 11
    assert _count(own_warehouse, "telemetry.clients_daily") == synthetic_clients_daily  # other tables unchanged
    assert existing_spec(own_warehouse) is None  # no longer the synthetic warehouse: synth regenerates it

    k = yaml.safe_load((CASE / "query_params.yaml").read_text())["min_bucket_size"]
    ds = derive(project, "ssl_ratio_by_country_v1", "ssl_loaded_v1", at_minimum(k))
    staged = tasks.stage(ds, dt.date(2026, 11, 1), run_id="loaded")
    con = duckdb.connect(staged["location"], read_only=True)
    try:
        result = con.execute(f'SELECT * FROM "{staged["table"]}"')
        names = [d[0] for d in result.description]
        rows = [{n: (v.isoformat() if isinstance(v, dt.date) else v) for n, v in zip(names, r, strict=True)
                 if not n.startswith("_pubdata")} for r in result.fetchall()]
    finally:
        con.close()
    assert not diff_rows(rows, expected_rows(CASE)), diff_rows(rows, expected_rows(CASE))


def test_a_column_the_table_does_not_have_is_refused_and_nothing_changes(project, own_warehouse, tmp_path):
    case = tmp_path / "case"
    case.mkdir()
    (case / "moz-fx-data-shared-prod.telemetry.clients_daily.yaml").write_text(
        "- {submission_date: 2026-11-01, client_id: a, country: US}\n")
    (case / "moz-fx-data-shared-prod.telemetry.main.yaml").write_text(
        "- {submission_timestamp: '2026-11-01T00:00:00', client_id: a, page_loads: 3}\n")
    before = _count(own_warehouse, "telemetry.clients_daily")
    result = CliRunner().invoke(app, ["load", str(case)], env={"COLUMNS": "300"})
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "moz-fx-data-shared-prod.telemetry.main.yaml: page_loads is not a column of telemetry.main" in text
    assert _count(own_warehouse, "telemetry.clients_daily") == before  # the valid file was not loaded either
    assert existing_spec(own_warehouse) is not None


def test_a_table_the_synthetic_warehouse_lacks_takes_the_types_of_its_rows(project, own_warehouse, tmp_path):
    case = tmp_path / "case"
    case.mkdir()
    (case / "moz-fx-data-shared-prod.org_mozilla_mozregression.usage.ndjson").write_text(
        '{"submission_timestamp": "2026-11-01T10:00:00", "client_info": {"client_id": "a", "app_display_version": "6.0"}}\n')
    result = CliRunner().invoke(app, ["load", str(case)])
    assert result.exit_code == 0, result.output
    con = duckdb.connect(str(own_warehouse), read_only=True)
    try:
        assert con.execute("SELECT client_info.client_id FROM org_mozilla_mozregression.usage").fetchall() == [("a",)]
    finally:
        con.close()


def test_a_directory_without_input_files_says_what_it_needs(project, own_warehouse, tmp_path):
    result = CliRunner().invoke(app, ["load", str(tmp_path)], env={"COLUMNS": "300"})
    assert result.exit_code == 1 and "no input files" in result.output
