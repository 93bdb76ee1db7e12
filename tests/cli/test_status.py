"""`pubdata status` tells what is true now: every day whose latest run did not publish stays listed
with its cause and whether the data or the infrastructure failed, a run is `running` only while a
process runs it, a refused dataset is `refused`; `--history` lists every run of a dataset."""

from __future__ import annotations

import json
import os
import socket
import subprocess

from pubdata.config import settings
from pubdata.orchestration import runner
from pubdata.orchestration.records import FailureInfo, RunRecords, Worker
from tests.support.project import EXAMPLE, pubdata_cli

REFUSED_EXAMPLE = "telemetry_public.city_active_hours_v1"


def _status(*args: str) -> list[dict]:
    proc = pubdata_cli("status", *args, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _fail(records: RunRecords, day: str, run_id: str, error: str, kind="data") -> None:
    records.start(EXAMPLE, day, run_id, task="stage")
    records.update(EXAMPLE, day, state="failed", failure=FailureInfo(kind=kind, task="stage", error=error),
                   finished_at="2026-11-02T05:00:00+00:00")


def test_a_failed_day_stays_listed_after_another_day_runs(project):
    records = RunRecords.open(settings())
    _fail(records, "2026-11-01", "scheduled__2026-11-01", 'Referenced column "page_lods" not found')
    records.start(EXAMPLE, "2026-11-02", "scheduled__2026-11-02", task="stage")
    records.update(EXAMPLE, "2026-11-02", state="published", finished_at="2026-11-03T05:00:00+00:00")
    rows = [r for r in _status() if r["dataset"] == EXAMPLE]
    assert [(r["partition"], r["outcome"]) for r in rows] == [("2026-11-02", "published"), ("2026-11-01", "failed in stage")]
    failed = rows[1]
    assert failed["error_kind"] == "data" and failed["cause"] == 'Referenced column "page_lods" not found'
    assert failed["run_id"] == "scheduled__2026-11-01"
    # a later run of that day that publishes takes it off the list
    records.start(EXAMPLE, "2026-11-01", "manual__rerun", task="stage")
    records.update(EXAMPLE, "2026-11-01", state="published")
    assert [r["partition"] for r in _status() if r["dataset"] == EXAMPLE] == ["2026-11-01"]


def test_history_lists_every_run_newest_first(project):
    records = RunRecords.open(settings())
    _fail(records, "2026-11-01", "manual__1", "first failure")
    _fail(records, "2026-11-01", "manual__2", "second failure", kind="infrastructure")
    records.start(EXAMPLE, "2026-11-01", "manual__3", task="stage")
    records.update(EXAMPLE, "2026-11-01", state="published")
    rows = _status(EXAMPLE, "--history")
    assert [(r["run_id"], r["outcome"], r["error_kind"], r["cause"]) for r in rows] == [
        ("manual__3", "published", None, None),
        ("manual__2", "failed in stage", "infrastructure", "second failure"),
        ("manual__1", "failed in stage", "data", "first failure"),
    ]
    table = pubdata_cli("status", EXAMPLE, "--history")
    assert table.returncode == 0 and "second failure" in table.stdout and "manual__1" in table.stdout
    assert pubdata_cli("status", "--history").returncode == 2  # of one dataset


def test_running_only_while_a_process_runs_it(project):
    records = RunRecords.open(settings())
    records.start(EXAMPLE, "2026-11-01", "manual__alive", task="stage")  # this process: alive
    [row] = [r for r in _status() if r["dataset"] == EXAMPLE]
    assert row["outcome"] == "running stage" and row["error_kind"] is None

    records.update(EXAMPLE, "2026-11-01", worker=Worker(host=socket.gethostname(), pid=_dead_pid(), task="stage"))
    [row] = [r for r in _status() if r["dataset"] == EXAMPLE]
    assert row["outcome"] == "interrupted in stage" and row["error_kind"] == "infrastructure"
    assert "its process is gone and recorded no outcome" in row["cause"]

    records.update(EXAMPLE, "2026-11-01", worker=Worker(host="worker-7.internal", pid=os.getpid(), task="validate"))
    [row] = [r for r in _status() if r["dataset"] == EXAMPLE]
    assert row["outcome"] == "running validate on worker-7.internal"  # another host: its word is all we have


def test_the_refused_example_is_refused_not_never_run(project):
    rows = {r["dataset"]: r for r in _status()}
    assert rows[REFUSED_EXAMPLE]["outcome"] == "refused on purpose"
    assert rows[REFUSED_EXAMPLE]["state"] == "refused"
    assert "dimension city (category 4)" in rows[REFUSED_EXAMPLE]["cause"]
    assert rows["telemetry_public.hardware_report_v1"]["outcome"] == "never run"


def test_a_run_that_ended_unrecorded_is_settled_as_failed_with_the_logged_cause(project):
    """`pubdata run`: when the DAG run is over and its record still says running (the failure
    callback never ran), the record is marked failed with the error the log showed."""
    cfg = settings()
    records = RunRecords.open(cfg)
    records.start(EXAMPLE, "2026-11-01", "manual__x", task="stage")
    failed = [runner.TaskEvent("stage", "failed", 0.5, "the reviewed query failed in DuckDB: Binder Error", "data")]
    assert runner.settle(cfg, EXAMPLE, "2026-11-01", "manual__other", failed, 1).state == "running"  # not this run's
    settled = runner.settle(cfg, EXAMPLE, "2026-11-01", "manual__x", failed, 1)
    assert settled.state == "failed" and settled.finished_at
    assert (settled.failure.kind, settled.failure.task, settled.failure.error) == (
        "data", "stage", "the reviewed query failed in DuckDB: Binder Error")
    # a record that already says how it ended is left alone
    records.update(EXAMPLE, "2026-11-01", state="quarantined")
    assert runner.settle(cfg, EXAMPLE, "2026-11-01", "manual__x", failed, 1).state == "quarantined"
