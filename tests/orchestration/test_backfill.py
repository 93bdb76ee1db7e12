"""`pubdata backfill ID --start --end`: days run oldest first through Airflow; days already published
by the current query are skipped, so the same command resumes after a failure."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from pubdata.config import Settings
from pubdata.orchestration import backfill, records
from pubdata.stores.local import LocalStore
from tests.support.harness import Harness
from tests.support.project import pubdata_cli

EXAMPLE = "telemetry_public.page_loads_by_country_v1"


def _settings(tmp_path: Path) -> Settings:
    return Settings(project=tmp_path / "project", home=tmp_path / "home", warehouse_url="duckdb:///unused",
                    bucket_url=f"file://{tmp_path / 'public'}", public_base_url="http://localhost:8000/",
                    alert_webhook_url=None)


def test_plan_skips_days_published_by_the_current_query(tmp_path):
    cfg = _settings(tmp_path)
    decl = Harness(tmp_path, LocalStore(tmp_path / "public")).declare("ds.daily_v1")
    day = dt.date(2026, 11, 1)
    records.RunRecords.open(cfg).update(decl.id, "2026-11-01", state="published", query_sha256=decl.query_sha256)
    records.RunRecords.open(cfg).update(decl.id, "2026-11-02", state="published", query_sha256="0" * 64)  # older query
    records.RunRecords.open(cfg).update(decl.id, "2026-11-03", state="quarantined", query_sha256=decl.query_sha256)

    plan = backfill.plan(cfg, decl, day, day + dt.timedelta(days=3))
    assert plan.skipped == [day]
    assert plan.to_run == [day + dt.timedelta(days=i) for i in (1, 2, 3)]
    forced = backfill.plan(cfg, decl, day, day + dt.timedelta(days=3), force=True)
    assert forced.skipped == [] and len(forced.to_run) == 4


def test_ranges_that_cannot_run_say_what_to_change(tmp_path):
    cfg = _settings(tmp_path)
    harness = Harness(tmp_path, LocalStore(tmp_path / "public"))
    daily, whole = harness.declare("ds.daily_v1"), harness.declare("ds.whole_v1", incremental=False)
    day = dt.date(2026, 11, 1)
    with pytest.raises(backfill.BackfillError, match="swap them"):
        backfill.plan(cfg, daily, day, day - dt.timedelta(days=1))
    with pytest.raises(backfill.BackfillError, match="before the dataset's start_date 2026-10-01"):
        backfill.plan(cfg, daily, dt.date(2026, 9, 30), day)
    with pytest.raises(backfill.BackfillError, match="not incremental.*pubdata run ds.whole_v1"):
        backfill.plan(cfg, whole, day, day)
    with pytest.raises(backfill.BackfillError, match="split the range"):
        backfill.plan(cfg, daily, dt.date(2026, 10, 1), dt.date(2040, 1, 1))


def test_cli_refuses_a_bad_range_before_starting_airflow(project):
    proc = pubdata_cli("backfill", EXAMPLE, "--start", "2026-10-01", "--end", "2026-10-02")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "before the dataset's start_date 2026-11-01" in proc.stderr
    proc = pubdata_cli("backfill", EXAMPLE, "--start", "2026-11-01", "--end", "tomorrow")
    assert proc.returncode == 2 and "--end 'tomorrow' is not a date" in proc.stderr


@pytest.mark.airflow
def test_backfill_two_days_through_airflow_and_resume_after_a_failure(project):
    home = Path(project.parent / "home")
    meta = project / "metadata/telemetry_public/page_loads_by_country_v1.yaml"
    meta.write_text(meta.read_text().replace("start_date: 2026-11-01", "start_date: 2026-10-31"))
    # A problem found in the second day's data: its validation fails until the check is lifted.
    hold = project / "expectations/telemetry_public/page_loads_by_country_v1.yaml"
    hold.parent.mkdir(parents=True, exist_ok=True)
    hold.write_text(
        "expectations:\n"
        "  - sql: SELECT * FROM {batch} WHERE submission_date = DATE '2026-11-01'\n"
        "    description: 2026-11-01 is held back\n"
    )
    listing_path = home / "public/api/v1/tables/telemetry_public/page_loads_by_country/v1/files/.object"

    first = pubdata_cli("backfill", EXAMPLE, "--start", "2026-10-31", "--end", "2026-11-01")

    out = first.stdout + first.stderr
    assert first.returncode == 1, out
    assert "2026-10-31: published" in out and "2026-11-01: FAILED (quarantined)" in out
    assert "2026-11-01 is held back" in out and "resumes from 2026-11-01" in out
    # the failed task's cause in one line, in words, and the failure counted
    assert "✗ validate (data error): telemetry_public.page_loads_by_country_v1 [2026-11-01]: validation failed" in out
    assert "FAILED 2026-11-01 is held back: the expectation's query found" in out
    assert f"{EXAMPLE}: 1 published, 1 failed, 0 skipped, 0 not run" in out
    assert list(json.loads(listing_path.read_text())) == ["2026-10-31"]
    published_at = records.RunRecords(LocalStore(home / "private" / "state")).get(EXAMPLE, "2026-10-31").finished_at

    hold.unlink()
    second = pubdata_cli("backfill", EXAMPLE, "--start", "2026-10-31", "--end", "2026-11-01")

    out = second.stdout + second.stderr
    assert second.returncode == 0, out
    assert "skipping 1 day(s) already published by this query" in out
    assert "2026-10-31: published" not in out and "2026-11-01: published" in out
    assert records.RunRecords(LocalStore(home / "private" / "state")).get(EXAMPLE, "2026-10-31").finished_at == published_at  # not re-run
    listing = json.loads(listing_path.read_text())
    assert list(listing) == ["2026-10-31", "2026-11-01"]
    for day, urls in listing.items():
        rows = []
        for url in urls:
            key = url.split("localhost:8000/", 1)[1]
            rows += json.loads((home / "public" / key).read_text())
        assert rows and {r["submission_date"] for r in rows} == {day}

    third = pubdata_cli("backfill", EXAMPLE, "--start", "2026-10-31", "--end", "2026-11-01")
    assert third.returncode == 0 and "nothing to do" in third.stdout


@pytest.mark.airflow
def test_with_a_deployment_configured_the_backfill_is_submitted_to_its_airflow(project, tmp_path):
    """A real api-server (SQLite, loopback, Airflow's simple auth manager): the days become one Airflow
    backfill the deployment's scheduler runs, not `dags test` runs on this machine."""
    import json as jsonlib
    import os
    import socket
    import subprocess
    import time

    import requests

    from pubdata.config import settings
    from pubdata.orchestration.runner import airflow_bin, airflow_env

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    home = tmp_path / "deployment"
    home.mkdir()
    (home / "passwords.json").write_text(jsonlib.dumps({"admin": "s3cret"}))
    env = airflow_env(settings(), {
        "AIRFLOW_HOME": str(home), "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
    })
    subprocess.run([airflow_bin(), "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    pubdata_cli("check")  # fills the static checks' cache, so the parse below is within its budget on a busy machine
    subprocess.run([airflow_bin(), "dags", "reserialize"], env=env, check=True, capture_output=True, timeout=300)
    base = f"http://127.0.0.1:{port}"
    with open(tmp_path / "api-server.log", "wb") as log:
        server = subprocess.Popen([airflow_bin(), "api-server", "-H", "127.0.0.1", "-p", str(port)], env=env,
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{base}/api/v2/monitor/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert server.poll() is None, (tmp_path / "api-server.log").read_text()[-3000:]
            time.sleep(1)
        deployment = {"PUBDATA_AIRFLOW_API_URL": base, "PUBDATA_AIRFLOW_USERNAME": "admin",
                      "PUBDATA_AIRFLOW_PASSWORD": "s3cret"}

        proc = pubdata_cli("backfill", EXAMPLE, "--start", "2026-11-01", "--end", "2026-11-02", env=deployment)

        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out
        assert "Submitted backfill" in out and "2 day(s), 2026-11-01 .. 2026-11-02" in out
        assert "is paused: its backfill runs wait until you unpause it" in out
        token = requests.post(f"{base}/auth/token", json={"username": "admin", "password": "s3cret"},
                              timeout=10).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        dag_id = "publish_telemetry_public__page_loads_by_country_v1"
        [created] = requests.get(f"{base}/api/v2/backfills", params={"dag_id": dag_id}, headers=auth,
                                 timeout=10).json()["backfills"]
        assert created["reprocess_behavior"] == "failed" and created["max_active_runs"] == 1
        runs = requests.get(f"{base}/api/v2/dags/{dag_id}/dagRuns", headers=auth, timeout=10).json()["dag_runs"]
        assert sorted(r["logical_date"][:10] for r in runs if r["run_type"] == "backfill") == ["2026-11-01", "2026-11-02"]
        assert not (Path(os.environ["PUBDATA_HOME"]) / "internal" / "logs").exists(), "nothing ran on this machine"

        again = pubdata_cli("backfill", EXAMPLE, "--start", "2026-11-01", "--end", "2026-11-02", env=deployment)
        assert again.returncode == 0 and "nothing to do" in again.stdout  # those days' runs are already queued
        wrong = pubdata_cli("backfill", EXAMPLE, "--start", "2026-11-01", "--end", "2026-11-02",
                            env={**deployment, "PUBDATA_AIRFLOW_PASSWORD": "wrong"})
        assert wrong.returncode == 1 and "PUBDATA_AIRFLOW_USERNAME" in wrong.stderr
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
