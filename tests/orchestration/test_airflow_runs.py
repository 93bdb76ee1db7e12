"""The example dataset through real Airflow (`airflow dags test`) on the embedded stack, read back
over HTTP as a consumer would; and a run whose rows fall below the minimum bucket, which must fail
in validate and leave the public bucket exactly as it was."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from unittest import mock

import pytest
import requests

from tests.support.project import add_miscounted_example, copy_project, pubdata_cli

pytestmark = pytest.mark.airflow
EXAMPLE = "telemetry_public.page_loads_by_country_v1"
DATE = "2026-11-01"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def env(tmp_path_factory, source_warehouse, airflow_home):
    root = tmp_path_factory.mktemp("e2e")
    proj = copy_project(root / "project")
    port = _free_port()
    home = root / "home"
    return {
        "PUBDATA_PROJECT": str(proj),
        "PUBDATA_HOME": str(home),
        "PUBDATA_WAREHOUSE": f"duckdb://{source_warehouse}",
        "PUBDATA_BUCKET": f"file://{home / 'public'}",
        "PUBDATA_AIRFLOW_HOME": str(airflow_home),
        "PUBDATA_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}/",
        "PORT": str(port),
    }


@pytest.fixture(scope="module")
def published(env):
    proc = pubdata_cli("run", EXAMPLE, "--date", DATE, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def server(env, published):
    from pubdata.stores.local import LocalStore
    from pubdata.stores.serve import start

    srv = start(LocalStore(Path(env["PUBDATA_HOME"]) / "public"), "127.0.0.1", int(env["PORT"]))
    yield env["PUBDATA_PUBLIC_BASE_URL"]
    srv.shutdown()


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_dag_file_parses_without_heavy_imports(env):
    """The dag processor's steady state: `pubdata check` (or a first parse) filled the gate cache."""
    assert pubdata_cli("check", "--all", env=env).returncode == 0
    code = textwrap.dedent("""
        import json, os, sys
        from airflow.dag_processing.dagbag import DagBag
        bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
        heavy = sorted(m for m in sys.modules if m.startswith(("great_expectations", "google.cloud", "duckdb", "sqlglot")))
        dags = {d: {"tasks": sorted(t.task_id for t in bag.dags[d].tasks),
                    "upstream": {t.task_id: sorted(t.upstream_task_ids) for t in bag.dags[d].tasks},
                    "owner": bag.dags[d].default_args.get("owner"),
                    "schedule": str(getattr(bag.dags[d].timetable, "_expression", bag.dags[d].timetable)),
                    "tags": sorted(bag.dags[d].tags)} for d in bag.dags}
        print(json.dumps({"errors": bag.import_errors, "heavy": heavy, "dags": dags}))
        os._exit(0)
    """)
    from pubdata.config import settings
    from pubdata.orchestration.runner import airflow_env

    with mock.patch.dict(os.environ, {k: v for k, v in env.items() if k.startswith("PUBDATA_")}):
        run_env = airflow_env(settings())
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=run_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["errors"] == {}
    assert out["heavy"] == [], "DAG parsing imported heavy modules"
    dag = out["dags"]["publish_telemetry_public__page_loads_by_country_v1"]
    wait = "wait_for_telemetry__clients_daily"  # its declared source table
    assert dag["tasks"] == ["export", "publish", "stage", "validate", wait]
    # Only the real chain: each step reads earlier results from XCom without an edge for each.
    assert dag["upstream"] == {wait: [], "stage": [wait], "validate": ["stage"], "export": ["validate"],
                               "publish": ["export"]}
    assert dag["owner"] == "data-eng@example.org"
    assert dag["schedule"] == "0 5 * * *"
    assert "level-2" in dag["tags"]


def test_published_dataset_reads_back_like_a_consumer(env, server):
    base = server
    index = requests.get(base + "all-datasets.json", timeout=10).json()
    entry = index["telemetry_public"]["page_loads_by_country"]["v1"]
    assert set(entry) >= {"friendly_name", "description", "incremental", "incremental_export", "review_links",
                          "files_uri", "last_updated"}
    assert entry["review_links"] == ["https://bugzilla.mozilla.org/show_bug.cgi?id=1414839"]
    assert entry["files_uri"].startswith(base)
    listing = requests.get(entry["files_uri"], timeout=10).json()
    assert list(listing) == [DATE]
    rows = []
    for url in listing[DATE]:
        # files/<date>/<version>/000000000000.json: each version in a folder of its own (README, "Public layout")
        assert re.search(rf"/files/{DATE}/[0-9a-f]{{16}}/000000000000\.json$", url), url
        rows += requests.get(url, timeout=10).json()
    assert rows and all(r["client_count"] >= 5000 for r in rows)
    assert any(r["country"] == "Other" or r["locale"] == "Other" for r in rows)
    assert set(rows[0]) == {"submission_date", "country", "os", "locale", "normalized_channel", "page_loads", "client_count"}
    assert all(r["submission_date"] == DATE for r in rows)
    assert "Other" not in {r["country"] for r in rows if r["locale"] != "Other"}
    last = requests.get(entry["last_updated"], timeout=10).json()
    assert len(last) == 19 and last[4] == "-" and last[13] == ":"

    meta = requests.get(base + "api/v1/tables/telemetry_public/page_loads_by_country/v1/metadata.json", timeout=10).json()
    query = (Path(env["PUBDATA_PROJECT"]) / "sql/telemetry_public/page_loads_by_country_v1.sql").read_text()
    assert meta["query"]["sha256"] == hashlib.sha256(query.encode()).hexdigest()
    assert meta["query"]["text"] == query
    assert meta["row_count"] == len(rows)
    assert meta["policy"]["aggregation_level"] == 2 and meta["policy"]["verdict"] == "publishable"
    assert [a["number"] for a in meta["policy"]["review_questions"]] == [1, 2, 3, 4]
    assert [c["name"] for c in meta["schema"]] == ["submission_date", "country", "os", "locale", "normalized_channel",
                                                   "page_loads", "client_count"]
    f = meta["files"][0]
    body = requests.get(f["url"], timeout=10).content
    assert hashlib.sha256(body).hexdigest() == f["sha256"] and len(body) == f["bytes"]
    assert meta["validation"]["outcome"] == "passed"
    # nothing internal is in the public bucket: staged parts, run records and reports are private
    public = Path(env["PUBDATA_HOME"]) / "public"
    assert not [p for p in public.rglob("*") if p.is_file() and ("exports" in p.parts or "runs" in p.parts
                                                                  or p.suffix == ".html" and "reports" in p.parts)]
    assert (Path(env["PUBDATA_HOME"]) / "private" / "state" / "runs").is_dir()


def test_rerun_same_date_is_safe_and_identical(env, published):
    public = Path(env["PUBDATA_HOME"]) / "public"
    files = public / "api/v1/tables/telemetry_public/page_loads_by_country/v1/files"
    before = {p: p.read_bytes() for p in files.rglob("*.json")}
    listing_before = json.loads((files / ".object").read_text())
    proc = pubdata_cli("run", EXAMPLE, "--date", DATE, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {p: p.read_bytes() for p in files.rglob("*.json")} == before  # same files, same bytes, nothing stale
    listing = json.loads((files / ".object").read_text())
    assert listing == listing_before and list(listing) == [DATE]
    staging = Path(env["PUBDATA_HOME"]) / "private" / "staging"
    assert not [p for p in staging.rglob("*") if p.is_file()], "staged parts are removed once published"


def test_publish_emits_an_asset_event_and_run_ends_with_the_catalog(env, published):
    """The catalog is rebuilt downstream of publishes: the publish task emits its dataset's Asset event
    (which schedules the catalog DAG on a deployment), and `pubdata run` runs the catalog DAG once."""
    import sqlite3

    assert "catalog: rebuilt" in published.stdout
    page = (Path(env["PUBDATA_HOME"]) / "public" / "index.html").read_text()
    assert "page_loads_by_country" in page
    db = sqlite3.connect(Path(env["PUBDATA_AIRFLOW_HOME"]) / "airflow.db")
    try:
        events = db.execute(
            "SELECT e.source_dag_id, e.source_task_id, e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id "
            "WHERE a.uri = 'pubdata://telemetry_public/page_loads_by_country/v1'").fetchall()
        queued = db.execute("SELECT count(*) FROM asset_dag_run_queue q JOIN asset a ON a.id = q.asset_id "
                            "WHERE q.target_dag_id = 'pubdata_catalog'").fetchone()[0]
    finally:
        db.close()
    assert events and all(e[:2] == ("publish_telemetry_public__page_loads_by_country_v1", "publish") for e in events)
    assert json.loads(events[-1][2])["partition"] == DATE
    assert queued >= 1, "the catalog DAG (unpaused from the start) is queued to run on the event"


def test_a_run_starts_when_asked_and_lasts_as_long_as_it_ran(env, published):
    """What the Airflow UI shows of a `pubdata run`: it started when it was asked for (not at the
    day it publishes, which is in its config) and its duration is the run's own."""
    import datetime as dt
    import sqlite3

    asked = dt.datetime.now(dt.UTC)
    proc = pubdata_cli("run", EXAMPLE, "--date", DATE, env=env)
    done = dt.datetime.now(dt.UTC)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    db = sqlite3.connect(Path(env["PUBDATA_AIRFLOW_HOME"]) / "airflow.db")
    try:
        start, end, conf = db.execute(
            "SELECT start_date, end_date, conf FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1",
            ("publish_telemetry_public__page_loads_by_country_v1",)).fetchone()
    finally:
        db.close()

    def utc(text: str) -> dt.datetime:
        moment = dt.datetime.fromisoformat(text)
        return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)

    assert asked <= utc(start) <= utc(end) <= done, (asked, start, end, done)
    assert DATE in str(conf)


def test_miscounted_rows_fail_in_validate_and_bucket_is_untouched(env, published):
    proj = Path(env["PUBDATA_PROJECT"])
    add_miscounted_example(proj)  # client_count disagrees with the warehouse's count
    public = Path(env["PUBDATA_HOME"]) / "public"
    before = _snapshot(public)
    assert before

    proc = pubdata_cli("run", "telemetry_public.page_loads_miscounted_v1", "--date", DATE, env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "failed: client_c" in proc.stdout and "as the warehouse" in proc.stdout
    assert _snapshot(public) == before

    record = json.loads((Path(env["PUBDATA_HOME"]) / "private/state/runs/telemetry_public.page_loads_miscounted_v1" / f"{DATE}.json").read_text())
    assert record["state"] == "quarantined"
    failures = record["validation"]["failures"]
    assert any(f["expectation"] == "ExpectBucketColumnToMatchTheClientCount" for f in failures)
    # the staged table is kept, internally, for on-call to inspect
    assert Path(record["staged"]["location"]).is_file()
    log = (Path(env["PUBDATA_HOME"]) / "internal/logs/telemetry_public.page_loads_miscounted_v1" / f"{DATE}.log").read_text()
    assert "[DAG TEST] end task task_id=validate" in log
    assert "task_id=export" not in log.split("[DAG TEST] end task task_id=validate")[1].split("DagRun Finished")[0] or \
        "[DAG TEST] running task <TaskInstance: publish_telemetry_public__page_loads_miscounted_v1.export" not in log


def test_a_failed_stage_says_why_and_every_run_stays_in_airflow_and_status(env):
    """A misspelt column, run twice as a user would: each run prints the task's error in its own
    words and counts the failure; `pubdata status` says failed, data, with that cause; both runs
    are in Airflow's history (distinct run ids: alert links keep pointing at runs that exist) and
    in `status --history`."""
    import sqlite3

    proj = Path(env["PUBDATA_PROJECT"])
    ds = "telemetry_public.page_loads_misspelt_v1"
    sql = (proj / "sql/telemetry_public/page_loads_by_country_v1.sql").read_text()
    assert "SUM(scalar_parent_browser_engagement_total_uri_count_sum) AS page_loads" in sql
    (proj / "sql/telemetry_public/page_loads_misspelt_v1.sql").write_text(
        sql.replace("SUM(scalar_parent_browser_engagement_total_uri_count_sum)",
                    "SUM(scalar_parent_browser_engagement_total_uri_count_summ)"))
    meta = (proj / "metadata/telemetry_public/page_loads_by_country_v1.yaml").read_text()
    (proj / "metadata/telemetry_public/page_loads_misspelt_v1.yaml").write_text(meta)

    for _ in range(2):
        proc = pubdata_cli("run", ds, "--date", DATE, env=env)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 1, out
        assert ('✗ stage (data error): the reviewed query failed in DuckDB: Binder Error: Referenced column '
                '"scalar_parent_browser_engagement_total_uri_count_summ" not found in FROM clause!') in out
        assert f"0 published, 1 failed: {ds}" in out

    status = json.loads(pubdata_cli("status", ds, "--json", env=env).stdout)
    assert [(r["outcome"], r["error_kind"]) for r in status] == [("failed in stage", "data")]
    assert 'Referenced column "scalar_parent_browser_engagement_total_uri_count_summ" not found' in status[0]["cause"]
    assert "AirflowFailException" not in status[0]["cause"]
    history = json.loads(pubdata_cli("status", ds, "--history", "--json", env=env).stdout)
    run_ids = [r["run_id"] for r in history]
    assert len(run_ids) == 2 and len(set(run_ids)) == 2, history
    assert all(r["outcome"] == "failed in stage" and r["when"] for r in history)

    db = sqlite3.connect(Path(env["PUBDATA_AIRFLOW_HOME"]) / "airflow.db")
    try:
        runs = db.execute("SELECT run_id, conf, state FROM dag_run WHERE dag_id = ?",
                          ("publish_telemetry_public__page_loads_misspelt_v1",)).fetchall()
    finally:
        db.close()
    assert sorted(r[0] for r in runs) == sorted(run_ids)  # the runs the records (and alerts) name exist
    assert all(r[2] == "failed" and DATE in str(r[1]) for r in runs)
