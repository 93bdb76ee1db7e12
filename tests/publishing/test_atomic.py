"""Atomic replacement: readers see a complete old version or a complete new one, never a mix and
never a listed file that is missing; a publish killed by SIGKILL at any point leaves the previous
version complete; superseded files are deleted once the new listing is live, so none pile up."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import random
import signal
import threading
import time

import pytest

from pubdata.publishing import publish as publishing
from pubdata.publishing.catalog import INDEX_KEY
from pubdata.stores.base import Store
from pubdata.stores.local import LocalStore
from tests.support.harness import DAY, Harness, expected_rows

DATASET = "ds.atomic_v1"
PART_BYTES = 1024  # small parts: every version has several files


@pytest.fixture(params=["local", pytest.param("gcs", marks=pytest.mark.gcs)])
def store(request, tmp_path) -> Store:
    if request.param == "local":
        return LocalStore(tmp_path / "public")
    return request.getfixturevalue("gcs_store")


def _snapshot(harness: Harness, decl) -> tuple[str, list[dict] | None, str]:
    """Read the dataset as a careful public client: index, listing, every listed file.

    Returns (outcome, rows, detail): "ok" with the rows; "moved" when a listed file was missing
    but the listing had changed meanwhile (a republish finished: read again); "missing" when a
    listed file was missing although the listing had not changed (a broken invariant).
    """
    store = harness.store
    index = harness.read_json(INDEX_KEY) or {}
    entry = index.get("ds", {}).get("atomic", {}).get("v1")
    if entry is None:
        return "absent", None, ""
    files_key = harness.key(entry["files_uri"])
    listing_obj = store.read(files_key)
    urls = json.loads(listing_obj.data)[DAY.isoformat()]
    rows = []
    for url in urls:
        obj = store.read(harness.key(url))
        if obj is None:
            again = store.read(files_key)
            if again is not None and again.generation == listing_obj.generation:
                return "missing", None, url
            return "moved", None, url
        rows += json.loads(obj.data)
    return "ok", rows, ""


def _versions(rows: list[dict]) -> set[int]:
    return {r["marker"] for r in rows}


def test_readers_never_see_a_mix_or_a_missing_file(tmp_path, store):
    harness = Harness(tmp_path, store)
    decl = harness.declare(DATASET, max_file_bytes=PART_BYTES)
    shapes = {1: 40, 2: 23, 3: 31}  # marker -> rows; each version has a different number of parts
    harness.publish(decl, marker=1, n=shapes[1])

    stop = threading.Event()
    seen: dict[str, int] = {"ok": 0, "moved": 0}
    problems: list[str] = []
    markers_seen: set[int] = set()

    def reader():
        try:
            read()
        except Exception as exc:  # a reader that crashes on what it read is a finding, not a quiet thread
            problems.append(f"reader crashed: {exc!r}")

    def read():
        while not stop.is_set():
            outcome, rows, detail = _snapshot(harness, decl)
            if outcome == "missing":
                problems.append(f"listed file missing while the listing was unchanged: {detail}")
                continue
            if outcome == "absent":
                problems.append("the dataset vanished from the index")
                continue
            seen[outcome] += 1
            if outcome == "ok":
                markers = _versions(rows)
                if len(markers) != 1:
                    problems.append(f"mixed versions in one listing: {sorted(markers)}")
                    continue
                marker = markers.pop()
                markers_seen.add(marker)
                if rows != expected_rows(marker, shapes[marker]):
                    problems.append(f"version {marker} incomplete or out of order: {len(rows)} rows")

    threads = [threading.Thread(target=reader, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for i in range(12):
            marker = [2, 3, 1][i % 3]
            harness.publish(decl, marker=marker, n=shapes[marker], run_key=f"run{i}")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)

    assert problems == []
    assert seen["ok"] >= 20, seen
    assert len(markers_seen) >= 2, "the readers never saw a publish happen"
    # After all that, only the live version's files remain.
    live = {harness.key(u) for u in harness.listing(decl)[DAY.isoformat()]}
    assert set(harness.data_keys(decl)) == live
    # ... and the fixed names serve exactly those files.
    fixed = {k.rsplit("/", 1)[1]: harness.store.read(k).data for k in harness.fixed_keys(decl)}
    assert fixed == {k.rsplit("/", 1)[1]: harness.store.read(k).data for k in live}
    assert harness.staging.list("exports/") == []  # staged parts are removed once published


class KillAt(Store):
    """A store that SIGKILLs its own process right before its n-th change (write, upload, copy, delete)."""

    def __init__(self, inner: Store, n: int | None):
        self.inner, self.n, self.changes, self.url = inner, n, 0, inner.url

    def _change(self):
        self.changes += 1
        if self.n is not None and self.changes == self.n:
            os.kill(os.getpid(), signal.SIGKILL)

    def read(self, key):
        return self.inner.read(key)

    def list(self, prefix):
        return self.inner.list(prefix)

    def write(self, key, data, **kwargs):
        self._change()
        return self.inner.write(key, data, **kwargs)

    def upload_file(self, key, path, **kwargs):
        self._change()
        return self.inner.upload_file(key, path, **kwargs)

    def copy(self, src, dst):
        self._change()
        return self.inner.copy(src, dst)

    def delete(self, key):
        self._change()
        return self.inner.delete(key)


def _publish_in_child(root, kill_at, marker, n, run_key, counter):
    store = KillAt(LocalStore(root / "public"), kill_at)
    harness = Harness(root, store)
    harness.publish(harness.load(DATASET), marker=marker, n=n, run_key=run_key)
    counter.value = store.changes


def _run_child(root, kill_at, marker, n, run_key, *, kill_after: float | None = None) -> int:
    """Publish in a forked child; SIGKILL it at its kill_at-th change or after kill_after seconds."""
    ctx = multiprocessing.get_context("fork")
    counter = ctx.Value("i", 0)
    child = ctx.Process(target=_publish_in_child, args=(root, kill_at, marker, n, run_key, counter))
    child.start()
    if kill_after is not None:
        time.sleep(kill_after)
        if child.is_alive():
            os.kill(child.pid, signal.SIGKILL)
    child.join(60)
    assert not child.is_alive()
    return child.exitcode if child.exitcode != 0 else counter.value


def _check_complete(harness: Harness, decl, candidates: dict[int, int]) -> int:
    """The listed version is complete and one of the candidates; metadata's files exist and match."""
    listing = harness.listing(decl)
    assert listing is not None and list(listing) == [DAY.isoformat()]
    rows = []
    for url in listing[DAY.isoformat()]:
        obj = harness.store.read(harness.key(url))
        assert obj is not None, f"listed file {url} is missing"
        rows += json.loads(obj.data)
    markers = _versions(rows)
    assert len(markers) == 1, f"mixed versions {markers}"
    live = markers.pop()
    assert live in candidates and rows == expected_rows(live, candidates[live])
    meta = harness.read_json(f"{decl.dataset_id.public_prefix}/metadata.json")
    for f in meta["partitions"][DAY.isoformat()]["files"]:
        obj = harness.store.read(harness.key(f["url"]))
        assert obj is not None and hashlib.sha256(obj.data).hexdigest() == f["sha256"], f["url"]
    assert "atomic" in harness.read_json(INDEX_KEY)["ds"]
    return live


def test_sigkill_at_any_point_leaves_the_previous_version_complete(tmp_path):
    root = tmp_path
    harness = Harness(root, LocalStore(root / "public"))
    decl = harness.declare(DATASET, max_file_bytes=PART_BYTES)
    harness.publish(decl, marker=1, n=30)
    shapes = {1: 30}

    # A full publish, counted: how many changes to the bucket it makes.
    shapes[2] = 17
    changes = _run_child(root, None, 2, shapes[2], "counted")
    assert changes > 10
    live = _check_complete(harness, decl, shapes)
    assert live == 2

    # Kill a publish right before each of its changes to the public bucket in turn: while copying
    # the new version, right before and after the switch, in the metadata, while collecting garbage.
    outcomes = {"previous": 0, "new": 0}
    for kill_at in range(1, changes + 1):
        marker = 10 + kill_at
        shapes[marker] = 12 + (kill_at % 5) * 4
        assert _run_child(root, kill_at, marker, shapes[marker], f"k{kill_at}") == -signal.SIGKILL
        now_live = _check_complete(harness, decl, {live: shapes[live], marker: shapes[marker]})
        outcomes["previous" if now_live == live else "new"] += 1
        live = now_live
    assert outcomes["previous"] > 0 and outcomes["new"] > 0, outcomes

    # Kills at random moments, mid-write included.
    rng = random.Random(20261101)
    for i in range(4):
        marker = 100 + i
        shapes[marker] = 20 + i
        _run_child(root, None, marker, shapes[marker], f"t{i}", kill_after=rng.uniform(0.0, 0.3))
        live = _check_complete(harness, decl, {live: shapes[live], marker: shapes[marker]})

    # One complete publish afterwards leaves exactly its own files: nothing stale, nothing staged.
    harness.publish(decl, marker=7, n=25, run_key="final")
    live_keys = {harness.key(u) for u in harness.listing(decl)[DAY.isoformat()]}
    assert _check_complete(harness, decl, {7: 25}) == 7
    assert set(harness.data_keys(decl)) == live_keys
    assert harness.staging.list("exports/") == []
    assert list(harness.work_root.iterdir()) == [], "killed exports' local parts are cleared"


def test_republishing_deletes_the_old_version_only_after_the_switch(tmp_path):
    harness = Harness(tmp_path, LocalStore(tmp_path / "public"))
    decl = harness.declare(DATASET, formats=("json", "csv", "parquet"), max_file_bytes=PART_BYTES)
    other_day = DAY.replace(day=2)
    first = harness.publish(decl, marker=1, n=40)
    kept = harness.publish(decl, marker=5, n=12, day=other_day)
    old_keys = {harness.key(f["url"]) for f in first["files"]}

    order: list[tuple[str, str]] = []
    inner = harness.store

    class Recording(Store):
        url = inner.url

        def read(self, key):
            return inner.read(key)

        def list(self, prefix):
            return inner.list(prefix)

        def write(self, key, data, **kw):
            order.append(("write", key))
            return inner.write(key, data, **kw)

        def upload_file(self, key, path, **kw):
            order.append(("upload", key))
            return inner.upload_file(key, path, **kw)

        def copy(self, src, dst):
            order.append(("copy", dst))
            return inner.copy(src, dst)

        def copy_from(self, source, src, dst, **kw):
            order.append(("copy", dst))
            return inner.copy_from(source, src, dst, **kw)

        def delete(self, key):
            order.append(("delete", key))
            return inner.delete(key)

    harness.store = Recording()
    second = harness.publish(decl, marker=2, n=33)

    prefix = decl.dataset_id.public_prefix
    writes = [k for op, k in order if op == "write"]
    switch = order.index(("write", f"{prefix}/files"))
    metadata_update = order.index(("write", f"{prefix}/metadata.json"))
    deletions = [i for i, (op, k) in enumerate(order) if op == "delete" and k in old_keys]
    assert len(deletions) == len(old_keys)  # every file of the old version, json, csv and parquet
    assert switch < metadata_update < min(deletions)
    # The dataset's index entry did not change, so all-datasets.json was read but not written again:
    # no write contention on the one object every dataset shares.
    assert INDEX_KEY not in writes
    fixed = set(harness.fixed_keys(decl))
    copies = [i for i, (op, k) in enumerate(order) if op == "copy" and k not in fixed]
    assert max(copies) < switch  # the new version was complete before the listing named it
    # The fixed names follow the listing, before the old version goes.
    fixed_copies = [i for i, (op, k) in enumerate(order) if op == "copy" and k in fixed]
    assert fixed_copies and switch < min(fixed_copies) and max(fixed_copies) < min(deletions)

    new_keys = {harness.key(f["url"]) for f in second["files"]}
    other_keys = {harness.key(f["url"]) for f in kept["files"]}
    assert set(harness.data_keys(decl)) == new_keys | other_keys  # the other day is untouched
    assert second["deleted_files"] == len(old_keys)
    assert harness.staging.list("exports/") == []


def test_a_fixed_name_from_before_serves_the_current_version(tmp_path):
    """A fixed name (files/<date>/000000000000.json) written by an older layout is replaced by the
    listed version's file, and a fixed name the new version no longer has is deleted."""
    harness = Harness(tmp_path, LocalStore(tmp_path / "public"))
    decl = harness.declare(DATASET)
    scope = f"{decl.dataset_id.public_prefix}/files/{DAY.isoformat()}/"
    harness.store.write(scope + "000000000000.json", b"[]", content_type="application/json")
    harness.store.write(scope + "000000000007.json", b"[]", content_type="application/json")

    published = harness.publish(decl, marker=1, n=5)

    [listed] = harness.data_keys(decl)
    assert harness.store.read(scope + "000000000000.json").data == harness.store.read(listed).data
    assert harness.store.read(scope + "000000000007.json") is None
    assert harness.fixed_keys(decl) == [scope + "000000000000.json"]
    assert [harness.key(f["url"]) for f in published["files"]] == [listed]


def test_garbage_collection_deletes_nothing_when_the_partition_is_not_listed(tmp_path):
    harness = Harness(tmp_path, LocalStore(tmp_path / "public"))
    decl = harness.declare(DATASET)
    harness.publish(decl, marker=1, n=5)
    stray = f"{decl.dataset_id.public_prefix}/files/2026-11-05/abc/000000000000.json"
    harness.store.write(stray, b"[]", content_type="application/json")

    assert publishing.collect_garbage(harness.store, decl, "2026-11-05") == []
    assert harness.store.read(stray) is not None
