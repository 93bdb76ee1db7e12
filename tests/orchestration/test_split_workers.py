"""The multi-worker path without Celery: every task of a run in a process of its own, with a
PUBDATA_HOME of its own that is deleted as soon as the task ends, sharing with the other tasks only
what a deployment's workers share: the warehouse (with its staging tables), the public and the
private staging buckets, and the run-state store. What a task hands the next travels as XCom
(JSON, here through the test). `make demo-distributed` runs the same on CeleryExecutor."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.project import EXAMPLE, REPO, copy_project, local_path, pubdata_cli

DATE = "2026-11-01"
RUN = "scheduled__2026-11-01T05:00:00+00:00"


def run_on_worker(shared: dict[str, str], home: Path, step: str, dataset_id: str | None, *args,
                  xcom: dict[str, object] | None = None) -> object:
    env = {**os.environ, **shared, "PUBDATA_HOME": str(home), "PUBDATA_TASK_RETRIES": "0"}
    request = {"step": step, "dataset_id": dataset_id, "args": list(args), "xcom": xcom or {}, "date": DATE,
               "run_id": RUN}
    proc = subprocess.run([sys.executable, "-m", "tests.support.worker"], input=json.dumps(request), cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{step} failed on its worker:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    line = [x for x in proc.stdout.splitlines() if x.startswith("XCOM ")][-1]
    return json.loads(line[len("XCOM "):])


def test_every_task_on_a_worker_of_its_own_shares_only_warehouse_buckets_and_state(tmp_path, source_warehouse):
    project = copy_project(tmp_path / "project")
    shared_dir = tmp_path / "shared"
    shared = {
        "PUBDATA_PROJECT": str(project),
        "PUBDATA_WAREHOUSE": f"duckdb://{source_warehouse}?staging_dir={shared_dir / 'warehouse-staging'}",
        "PUBDATA_BUCKET": f"file://{shared_dir / 'public'}",
        "PUBDATA_STAGING_BUCKET": f"file://{shared_dir / 'private' / 'staging'}",
        "PUBDATA_STATE_URL": f"file://{shared_dir / 'private' / 'state'}",
        "PUBDATA_PUBLIC_BASE_URL": "http://localhost:8000/",
    }
    homes = iter(tmp_path / f"worker-{i}" for i in range(100))

    def on_a_new_worker(step: str, *args, **xcom):
        home = next(homes)
        try:
            return run_on_worker(shared, home, step, *args, xcom=xcom)
        finally:
            shutil.rmtree(home, ignore_errors=True)  # the worker goes away with everything on its disk

    assert on_a_new_worker("wait_for_source", EXAMPLE, "moz-fx-data-shared-prod.telemetry.clients_daily") is True
    staged = on_a_new_worker("stage", EXAMPLE)
    validation = on_a_new_worker("validate", EXAMPLE, stage=staged)
    assert validation["outcome"] == "passed"
    exported = on_a_new_worker("export", EXAMPLE, stage=staged, validate=validation)
    published = on_a_new_worker("publish", EXAMPLE, stage=staged, validate=validation, export=exported)
    assert published["rows"] > 0
    assert on_a_new_worker("catalog", None) >= 1

    public = shared_dir / "public"
    prefix = public / "api/v1/tables/telemetry_public/page_loads_by_country/v1"
    listing = json.loads((prefix / "files" / ".object").read_text())
    rows = [r for url in listing[DATE] for r in json.loads((public / url.split("localhost:8000/", 1)[1]).read_text())]
    assert len(rows) == published["rows"] and all(r["client_count"] >= 5000 for r in rows)
    assert (public / "index.html").is_file() and "Page loads" in (public / "index.html").read_text()
    assert not any((shared_dir / "private" / "staging").rglob("*.json")), "staged parts are cleaned up"
    assert not [p for p in public.rglob("*") if p.is_file() and {"exports", "runs", "reports"} & set(p.parts)]

    # The CLI, on yet another machine, reads the same run state.
    status = pubdata_cli("status", "--json", env={**shared, "PUBDATA_HOME": str(next(homes))})
    assert status.returncode == 0, status.stderr
    [row] = [r for r in json.loads(status.stdout) if r["dataset"] == EXAMPLE]
    assert row["outcome"] == "published" and row["run_id"] == RUN and row["rows"] == published["rows"]
    assert local_path(row["report"]).is_file() and shared_dir in local_path(row["report"]).parents
