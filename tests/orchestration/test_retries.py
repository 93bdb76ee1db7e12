"""Every task is idempotent and retry-safe: fail each task at each of its steps, retry it as Airflow
would (same inputs from XCom), run the rest of the chain, and the public bucket ends exactly as a
run without failures leaves it, with nothing left in staging, no staged table and no quarantine.

A step is any operation on the public bucket, the private staging bucket, the run-state store or
the warehouse; each fails once "before" (refused) and once "after" (done, then the worker dies or
the answer is lost), including after publish's copies and before its cleanup. On a local
directory and on fake-gcs-server (three buckets: public, staging and state).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from pubdata import stores
from pubdata.config import settings
from pubdata.errors import classify
from pubdata.orchestration import records, tasks
from pubdata.stores.base import Store
from tests.support.faults import Faults, FaultyStore, FaultyWarehouse, Injected
from tests.support.gcs_emulator import create_bucket
from tests.support.project import EXAMPLE, staged_exists

DAY = dt.date(2026, 11, 1)
RUN = "scheduled__2026-11-01T05:00:00+00:00"
CHAIN = ("stage", "validate", "export", "publish")
# Written at publish time: differ between any two runs, whatever happened.
VOLATILE = re.compile(r'"(last_updated|generated_at|published_at|changed_at|seconds)": "?[^",\n]*"?')


class Place:
    """Fresh public, staging and state locations (and a home) for one scenario."""

    def __init__(self, kind: str, root: Path, endpoint: str | None):
        self.kind = kind
        if kind == "local":
            home = root / uuid.uuid4().hex[:8]
            self.env = {"PUBDATA_HOME": str(home), "PUBDATA_BUCKET": f"file://{home / 'public'}"}
        else:
            public, private = create_bucket(endpoint), create_bucket(endpoint)
            self.env = {"PUBDATA_HOME": str(root / uuid.uuid4().hex[:8]), "PUBDATA_BUCKET": f"gs://{public}",
                        "PUBDATA_STAGING_BUCKET": f"gs://{private}/staging", "PUBDATA_STATE_URL": f"gs://{private}/state"}


@pytest.fixture(params=["local", pytest.param("gcs", marks=pytest.mark.gcs)])
def place(request, project, tmp_path, monkeypatch):
    endpoint = None
    if request.param == "gcs":
        endpoint = request.getfixturevalue("gcs_endpoint")
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", endpoint)
    monkeypatch.setenv("PUBDATA_PUBLIC_BASE_URL", "http://127.0.0.1:8000/")
    for var in ("PUBDATA_STAGING_BUCKET", "PUBDATA_STATE_URL"):
        monkeypatch.delenv(var, raising=False)

    def fresh() -> Place:
        p = Place(request.param, tmp_path, endpoint)
        for var in ("PUBDATA_STAGING_BUCKET", "PUBDATA_STATE_URL"):
            monkeypatch.delenv(var, raising=False)
        for k, v in p.env.items():
            monkeypatch.setenv(k, v)
        return p

    return fresh


@pytest.fixture
def inject(monkeypatch):
    """Route every store and warehouse the tasks open through one Faults."""
    current: dict[str, Faults] = {"faults": Faults()}
    open_store, open_warehouse = stores.open_store, tasks.open_warehouse
    names = {}

    def faulty_store(url: str) -> Store:
        cfg = settings()
        name = names.get(url) or {cfg.bucket_url: "public"}.get(url) or ("staging" if "staging" in url else "state")
        return FaultyStore(open_store(url), current["faults"], name)

    monkeypatch.setattr(stores, "open_store", faulty_store)
    monkeypatch.setattr(tasks, "open_store", faulty_store)
    monkeypatch.setattr(tasks, "open_warehouse", lambda *a, **k: FaultyWarehouse(open_warehouse(*a, **k), current["faults"]))

    def use(faults: Faults) -> Faults:
        current["faults"] = faults
        return faults

    return use


def run_task(step: str, xcom: dict[str, Any]) -> Any:
    if step == "stage":
        return tasks.stage(EXAMPLE, DAY, RUN)
    if step == "validate":
        return tasks.validate(EXAMPLE, xcom["stage"], RUN)
    if step == "export":
        return tasks.export(EXAMPLE, xcom["stage"], xcom["validate"], RUN)
    return tasks.publish(EXAMPLE, xcom["stage"], xcom["validate"], xcom["export"], RUN)


def public_state(store: Store) -> dict[str, str]:
    """What the public can read, with the few values that differ between any two runs masked."""
    out = {}
    for key in store.list(""):
        data = store.read(key).data.decode("utf-8", "replace")
        if key.endswith(("index.html", "dataset.jsonld", "datapackage.json")):
            data = "<derived from metadata.json>"  # embeds its timestamps; its presence is what counts
        elif key.endswith("last_updated"):
            data = "<time>"
        out[key] = VOLATILE.sub(r'"\1": <masked>', data)
    return out


def finish(xcom: dict[str, Any], after: str, inject, faults: Faults | None = None) -> None:
    inject(faults or Faults())
    for step in CHAIN[CHAIN.index(after) + 1:]:
        xcom[step] = run_task(step, xcom)


def check_end_state(reference: dict[str, str]) -> None:
    cfg = settings()
    assert public_state(stores.open_store(cfg.bucket_url)) == reference
    assert stores.open_store(cfg.staging_url).list("exports/") == [], "staged parts left behind"
    state = records.RunRecords.open(cfg)
    record = state.get(EXAMPLE, DAY.isoformat())
    assert record is not None and record.state == "published" and record.failure is None
    assert state.marks() == []
    from pubdata.warehouses import open_warehouse
    from pubdata.warehouses.base import StagedTable

    assert not staged_exists(open_warehouse(cfg.warehouse_url, home=cfg.home), StagedTable.from_dict(record.staged))


@pytest.fixture
def reference(place, inject):
    """The public state a run without failures leaves, and the XCom values of its tasks."""
    place()
    inject(Faults())
    xcom: dict[str, Any] = {}
    for step in CHAIN:
        xcom[step] = run_task(step, xcom)
    return public_state(stores.open_store(settings().bucket_url)), xcom


@pytest.mark.parametrize("step", CHAIN)
def test_each_task_fails_at_each_step_and_its_retry_ends_in_the_right_public_state(step, place, inject, reference):
    expected, reference_xcom = reference
    # How many steps the task takes, counted on a clean run in a fresh place.
    place()
    xcom: dict[str, Any] = {}
    for earlier in CHAIN[:CHAIN.index(step)]:
        xcom[earlier] = reference_xcom[earlier] if earlier == "validate" else run_task(earlier, xcom)
    counted = inject(Faults())
    run_task(step, xcom)
    total = len(counted.steps)
    assert total >= 3, counted.steps

    tried, absorbed = [], []
    for fail_at in range(1, total + 1):
        for mode in ("before", "after"):
            place()
            inject(Faults())
            xcom = {}
            for earlier in CHAIN[:CHAIN.index(step)]:
                # validate's result is the same for the same staged rows: reuse it, except when
                # validate itself is under test (Great Expectations is the slow part).
                xcom[earlier] = reference_xcom[earlier] if earlier == "validate" else run_task(earlier, xcom)
            faults = inject(Faults(fail_at, mode))
            try:
                xcom[step] = run_task(step, xcom)
                absorbed.append((fail_at, mode, faults.steps[-1]))  # e.g. validation's row count: best effort
            except Exception as exc:
                assert "injected failure" in str(exc) or isinstance(exc.__cause__, Injected), (faults.steps[-1], exc)
                assert classify(exc) == "infrastructure", f"an injected transient failure must be retried: {exc!r}"
                inject(Faults())
                xcom[step] = run_task(step, xcom)  # Airflow's retry: same inputs
            finish(xcom, step, inject)
            try:
                check_end_state(expected)
            except AssertionError as exc:
                raise AssertionError(f"{step} failing {mode} step {fail_at}/{total} ({faults.steps[fail_at - 1]}): {exc}") from exc
            tried.append((fail_at, mode))
    assert len(tried) == 2 * total
    assert len(absorbed) <= 2, absorbed  # almost every step's failure fails the task, and its retry repairs it


def test_the_reference_run_publishes_and_leaves_nothing_private_in_public(place, reference):
    expected, _xcom = reference
    assert any(k.endswith("/files") for k in expected) and "all-datasets.json" in expected
    assert not [k for k in expected if k.startswith(("exports/", "runs/", "reports/", "quarantine/"))]
    listing = json.loads(expected[f"{'api/v1/tables/telemetry_public/page_loads_by_country/v1'}/files"])
    assert list(listing) == [DAY.isoformat()]
