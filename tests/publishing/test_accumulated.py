"""An incremental table exported whole (incremental_export: false, Mozilla's default): each day's
publish serves every published day, ordered by the partition field, as one flat file set; a day
published again replaces its rows, a backfilled day slots into order, the fixed names serve the
whole table, and a publish that fails or races another leaves a complete table listed. On a local
directory and on fake-gcs-server, read as Mozilla's clients read it."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import shutil
import threading
import urllib.request
from typing import Any

import pyarrow.parquet as pq
import pytest

from pubdata.errors import StoreError
from pubdata.publishing import publish as publishing
from pubdata.publishing.catalog import INDEX_KEY
from pubdata.stores import serve
from pubdata.stores.base import Store
from pubdata.stores.local import LocalStore
from tests.support.faults import Faults, FaultyStore
from tests.support.harness import BASE_URL, DAY, Harness, expected_rows

PART_BYTES = 1024  # small parts: the table spans several files
DAY2 = DAY + dt.timedelta(days=1)
DAY0 = DAY - dt.timedelta(days=1)


@pytest.fixture(params=["local", pytest.param("gcs", marks=pytest.mark.gcs)])
def store(request, tmp_path) -> Store:
    if request.param == "local":
        return LocalStore(tmp_path / "public")
    return request.getfixturevalue("gcs_store")


def _listed_rows(harness: Harness, decl) -> list[dict[str, Any]]:
    listing = harness.listing(decl)
    assert isinstance(listing, list), f"a whole-table export has a flat listing, got {listing!r}"
    rows: list[dict[str, Any]] = []
    for url in listing:
        obj = harness.store.read(harness.key(url))
        assert obj is not None, f"listed file {url} is missing"
        rows += json.loads(obj.data)
    return rows


def _fixed_rows(harness: Harness, decl) -> list[dict[str, Any]]:
    scope = f"{decl.dataset_id.public_prefix}/files/"
    rows: list[dict[str, Any]] = []
    for i in range(1000):
        obj = harness.store.read(f"{scope}{i:012d}.json")
        if obj is None:
            return rows
        rows += json.loads(obj.data)
    raise AssertionError("more fixed names than the table has files")


def test_days_accumulate_in_one_flat_file_set(tmp_path, store):
    harness = Harness(tmp_path, store)
    decl = harness.declare("ds.whole_v1", incremental=True, incremental_export=False, max_file_bytes=PART_BYTES,
                           formats=("json", "csv", "parquet"))
    meta_key = f"{decl.dataset_id.public_prefix}/metadata.json"

    harness.publish(decl, marker=1, n=20)
    assert _listed_rows(harness, decl) == expected_rows(1, 20)

    harness.publish(decl, marker=2, n=30, day=DAY2)
    both = expected_rows(1, 20) + expected_rows(2, 30, DAY2)
    assert _listed_rows(harness, decl) == both
    assert len(harness.listing(decl)) > 1  # several parts, one flat list
    assert _fixed_rows(harness, decl) == both

    # The first day again, with other rows: they replace that day's rows.
    harness.publish(decl, marker=3, n=5)
    rerun = expected_rows(3, 5) + expected_rows(2, 30, DAY2)
    assert _listed_rows(harness, decl) == rerun
    # Identical input: the same version folder, the same listing.
    listing = harness.listing(decl)
    harness.publish(decl, marker=3, n=5)
    assert harness.listing(decl) == listing

    # A backfill of an earlier day lands in date order.
    harness.publish(decl, marker=4, n=7, day=DAY0)
    table = expected_rows(4, 7, DAY0) + rerun
    assert _listed_rows(harness, decl) == table
    assert _fixed_rows(harness, decl) == table

    meta = harness.read_json(meta_key)
    assert meta["incremental"] is True and meta["incremental_export"] is False
    assert meta["row_count"] == len(table) == sum(f["rows"] for f in meta["files"] if f["format"] == "json")
    assert {d: p["rows"] for d, p in meta["partitions"].items()} == {
        DAY0.isoformat(): 7, DAY.isoformat(): 5, DAY2.isoformat(): 30}
    assert meta["latest_partition"] == DAY0.isoformat()
    assert set(meta["daily_totals"]["days"]) == set(meta["partitions"])
    # Every format holds the whole table, in the same order.
    csv_rows = b"".join(store.read(harness.key(f["url"])).data for f in meta["files"] if f["format"] == "csv")
    assert csv_rows.count(b"\n") - sum(1 for f in meta["files"] if f["format"] == "csv") == len(table)
    parquet = [pq.read_table(io.BytesIO(store.read(harness.key(f["url"])).data)).to_pylist()
               for f in meta["files"] if f["format"] == "parquet"]
    assert [(str(r["submission_date"]), r["country"], r["marker"]) for part in parquet for r in part] == \
        [(r["submission_date"], r["country"], r["marker"]) for r in table]
    for f in meta["files"]:
        assert hashlib.sha256(store.read(harness.key(f["url"])).data).hexdigest() == f["sha256"]

    entry = harness.read_json(INDEX_KEY)["ds"]["whole"]["v1"]
    assert entry["incremental"] is True and entry["incremental_export"] is False
    # Only the live version's files are left (superseded folders are collected).
    assert set(harness.data_keys(decl)) == {harness.key(f["url"]) for f in meta["files"]}
    assert harness.staging.list("exports/") == []


def test_a_per_day_table_switched_to_whole_keeps_its_days(tmp_path):
    harness = Harness(tmp_path, LocalStore(tmp_path / "public"))
    decl = harness.declare("ds.switch_v1", incremental=True, incremental_export=True)
    harness.publish(decl, marker=1, n=3)
    harness.publish(decl, marker=2, n=4, day=DAY2)
    assert set(harness.listing(decl)) == {DAY.isoformat(), DAY2.isoformat()}

    decl = harness.declare("ds.switch_v1", incremental=True, incremental_export=False)
    harness.publish(decl, marker=3, n=2, day=DAY2)
    assert _listed_rows(harness, decl) == expected_rows(1, 3) + expected_rows(3, 2, DAY2)
    assert set(harness.data_keys(decl)) == {harness.key(u) for u in harness.listing(decl)}


def test_a_failed_publish_leaves_the_previous_table_listed(tmp_path):
    """Fail the publish of day 2 at each store operation in turn (refused, or done and then the worker
    lost): until the switch the listing and its files are day 1's, untouched; after it, day 2 is there
    whole; and a retry of the publish task alone (same export) ends in the same table."""
    before = expected_rows(1, 12)
    after = before + expected_rows(2, 10, DAY2)
    ready = Harness(tmp_path / "ready", LocalStore(tmp_path / "ready" / "public"))
    decl = ready.declare("ds.faulty_v1", incremental=True, incremental_export=False, max_file_bytes=PART_BYTES)
    ready.publish(decl, marker=1, n=12)
    staged = ready.stage(decl, marker=2, n=10, day=DAY2)
    exported = ready.export(decl, staged)
    columns = [(c.name, c.type, ready.warehouse.type_family(c.type)) for c in ready.warehouse.columns(staged)]

    def copy(name: str) -> Harness:
        """A copy of the ready buckets: day 1 public, day 2 exported."""
        root = tmp_path / name
        shutil.copytree(tmp_path / "ready" / "public", root / "public")
        shutil.copytree(tmp_path / "ready" / "private-staging", root / "private-staging")
        return Harness(root, LocalStore(root / "public"), staging=LocalStore(root / "private-staging"))

    def publish(harness: Harness, store: Store) -> None:
        publishing.publish(decl, staged, exported, columns, store, BASE_URL, None, staging=harness.staging)

    clean = Faults()
    harness = copy("clean")
    publish(harness, FaultyStore(harness.store, clean, "public"))
    assert _listed_rows(harness, decl) == after
    listing_key = f"{decl.dataset_id.public_prefix}/files"
    switch = clean.steps.index(f"public.write {listing_key}") + 1
    assert 1 < switch < len(clean.steps)

    changes = ("public.write", "public.upload", "public.delete", "public.copy")
    for fail_at, step in enumerate(clean.steps, 1):
        # A read that fails after it happened is the next step failing before it: only changes twice.
        for mode in ("before", "after") if step.startswith(changes) else ("before",):
            harness = copy(f"{fail_at}-{mode}")
            listing = harness.store.read(listing_key)
            with pytest.raises(StoreError):  # Injected, or the merge naming the file it could not read
                publish(harness, FaultyStore(harness.store, Faults(fail_at, mode), "public"))
            if fail_at < switch or (fail_at == switch and mode == "before"):
                assert harness.store.read(listing_key) == listing, f"listing changed by a failure at step {fail_at}"
                assert _listed_rows(harness, decl) == before
            else:
                assert _listed_rows(harness, decl) == after
            publish(harness, harness.store)  # Airflow retries the publish task alone
            assert _listed_rows(harness, decl) == after, f"retry after a failure at step {fail_at} ({mode})"
            meta = harness.read_json(f"{decl.dataset_id.public_prefix}/metadata.json")
            assert set(harness.data_keys(decl)) == {harness.key(f["url"]) for f in meta["files"]}
            assert harness.staging.list("exports/") == []
            shutil.rmtree(tmp_path / f"{fail_at}-{mode}")


def test_days_published_at_once_are_all_kept(tmp_path, store):
    """Two days' publishes racing on one listing: the switch's precondition makes the loser merge again."""
    harness = Harness(tmp_path, store)
    decl = harness.declare("ds.race_v1", incremental=True, incremental_export=False)
    days = [DAY0, DAY, DAY2, DAY2 + dt.timedelta(days=1)]
    ready = []
    for i, day in enumerate(days):
        staged = harness.stage(decl, marker=i, n=3 + i, day=day)
        exported = harness.export(decl, staged, f"run{i}")
        columns = [(c.name, c.type, harness.warehouse.type_family(c.type)) for c in harness.warehouse.columns(staged)]
        ready.append((staged, exported, columns))
    barrier = threading.Barrier(len(ready))
    errors: list[BaseException] = []

    def run(staged, exported, columns) -> None:
        barrier.wait()
        try:
            publishing.publish(decl, staged, exported, columns, store, BASE_URL, None, staging=harness.staging)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=args) for args in ready]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    expected = [r for i, day in enumerate(days) for r in expected_rows(i, 3 + i, day)]
    assert _listed_rows(harness, decl) == expected
    meta = harness.read_json(f"{decl.dataset_id.public_prefix}/metadata.json")
    assert {d: p["rows"] for d, p in meta["partitions"].items()} == {d.isoformat(): 3 + i for i, d in enumerate(days)}


def test_a_mozilla_client_reads_the_whole_table_over_http(tmp_path):
    """As Mozilla's documentation reads a table: all-datasets.json -> files_uri -> each listed URL; and
    the hard-coded files/000000000000.json."""
    public = LocalStore(tmp_path / "public")
    server = serve.start(public, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        harness = Harness(tmp_path, public, base_url=base)
        decl = harness.declare("ds.client_v1", incremental=True, incremental_export=False, max_file_bytes=PART_BYTES)
        harness.publish(decl, marker=1, n=15)
        harness.publish(decl, marker=2, n=12, day=DAY2)

        def get(url: str) -> Any:
            with urllib.request.urlopen(url, timeout=10) as answer:
                return json.loads(answer.read())

        entry = get(base + "all-datasets.json")["ds"]["client"]["v1"]
        assert entry["incremental_export"] is False
        rows = [r for url in get(entry["files_uri"]) for r in get(url)]
        assert rows == expected_rows(1, 15) + expected_rows(2, 12, DAY2)
        first = get(f"{base}{decl.dataset_id.public_prefix}/files/000000000000.json")
        assert first == rows[:len(first)] and first
    finally:
        server.shutdown()
        server.server_close()
