"""LocalStore: the same contract as GCSStore, on a directory, including concurrent writers."""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pubdata.stores import PreconditionFailed, StoreError, open_store
from pubdata.stores.base import StoredObject
from pubdata.stores.local import LocalStore

JSON = "application/json"
WORKERS = 20


@pytest.fixture
def store(tmp_path) -> LocalStore:
    return LocalStore(tmp_path / "public")


def read_modify_write(store, key: str, item: int) -> int:
    """Append item to the JSON list at key with optimistic concurrency; return the conflicts met."""
    conflicts = 0
    while True:
        current = store.read(key)
        doc = json.loads(current.data) if current else {"updates": []}
        doc["updates"].append(item)
        try:
            store.write(key, json.dumps(doc).encode(), content_type=JSON,
                        if_generation_match=current.generation if current else 0)
            return conflicts
        except PreconditionFailed:
            conflicts += 1


def test_open_store_file_url(tmp_path):
    store = open_store(f"file://{tmp_path}/public")
    assert isinstance(store, LocalStore)
    assert store.url == f"file://{tmp_path}/public"


def test_roundtrip(store):
    assert store.read("a/b.json") is None
    assert not store.exists("a/b.json")
    gen = store.write("a/b.json", b'{"x": 1}', content_type=JSON)
    assert store.read("a/b.json") == StoredObject(b'{"x": 1}', gen)
    assert store.exists("a/b.json")
    gen2 = store.write("a/b.json", b'{"x": 2}', content_type=JSON, cache_control="no-cache")
    assert gen2 != gen
    assert store.read("a/b.json") == StoredObject(b'{"x": 2}', gen2)
    assert (store.root / "a" / "b.json").read_bytes() == b'{"x": 2}'  # servable as a plain file


def test_compress_is_ignored_on_disk(store):
    """A plain HTTP server cannot send Content-Encoding, so files stay as the public reads them."""
    store.write("files/000000000000.json", b"[]", content_type=JSON, compress=True)
    assert (store.root / "files" / "000000000000.json").read_bytes() == b"[]"
    assert store.read("files/000000000000.json").data == b"[]"


def test_if_generation_match_zero_means_only_if_absent(store):
    gen = store.write("k", b"first", content_type="text/plain", if_generation_match=0)
    with pytest.raises(PreconditionFailed):
        store.write("k", b"second", content_type="text/plain", if_generation_match=0)
    assert store.read("k") == StoredObject(b"first", gen)


def test_stale_generation_is_refused(store):
    gen1 = store.write("k", b"v1", content_type="text/plain")
    gen2 = store.write("k", b"v2", content_type="text/plain", if_generation_match=gen1)
    with pytest.raises(PreconditionFailed):
        store.write("k", b"v3", content_type="text/plain", if_generation_match=gen1)
    with pytest.raises(PreconditionFailed):
        store.write("absent", b"v", content_type="text/plain", if_generation_match=gen2)
    assert store.read("k").data == b"v2"
    assert store.write("k", b"v4", content_type="text/plain", if_generation_match=gen2) > gen2


def test_generations_increase_even_when_the_clock_does_not(store):
    """Generations are mtimes; coarse timestamps or a clock stepping back must not make an old
    generation current again, or a stale writer's precondition would pass (lost update)."""
    path = store.root / "k"
    gen = store.write("k", b"v1", content_type="text/plain")
    future = gen + 10**12  # the object looks 1000 s newer than the clock
    os.utime(path, ns=(future, future))
    current = store.read("k")
    assert current.generation == future
    gen2 = store.write("k", b"v2", content_type="text/plain", if_generation_match=current.generation)
    assert gen2 > future
    gen3 = store.write("k", b"v3", content_type="text/plain")
    assert gen3 > gen2
    store.upload_file("k", path, content_type="text/plain")
    assert store.read("k").generation > gen3
    with pytest.raises(PreconditionFailed):
        store.write("k", b"stale", content_type="text/plain", if_generation_match=future)


def test_unconditional_writes_take_part_in_compare_and_swap(store, monkeypatch):
    """A plain write landing between a conditional writer's check and its rename must make that
    conditional write fail, not be silently overwritten by it."""
    gen = store.write("k", b"v1", content_type="text/plain")
    checked, plain_done = threading.Event(), threading.Event()
    real_replace = store._replace

    def slow_replace(path, writer, *args, **kwargs):
        if threading.current_thread().name == "conditional":
            checked.set()
            plain_done.wait(2)
        return real_replace(path, writer, *args, **kwargs)

    monkeypatch.setattr(store, "_replace", slow_replace)
    errors: list[BaseException] = []

    def conditional():
        try:
            store.write("k", b"conditional", content_type="text/plain", if_generation_match=gen)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=conditional, name="conditional")
    thread.start()
    assert checked.wait(5)
    plain = threading.Thread(target=lambda: store.write("k", b"plain", content_type="text/plain"))
    plain.start()
    plain.join(0.5)
    plain_done.set()
    thread.join(5)
    plain.join(5)
    # Either the plain write waited for the conditional one (both land, plain last), or the
    # conditional one saw the plain write and failed; never "conditional" over "plain".
    final = store.read("k").data
    assert final == b"plain" or (final == b"conditional" and errors)


def test_concurrent_threads_lose_no_update(store):
    start = threading.Barrier(WORKERS)

    def work(i: int) -> int:
        start.wait()
        return read_modify_write(store, "all-datasets.json", i)

    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(work, range(WORKERS)))
    assert sorted(json.loads(store.read("all-datasets.json").data)["updates"]) == list(range(WORKERS))


def _process_worker(root: str, item: int, start) -> None:
    start.wait()
    read_modify_write(LocalStore(root), "all-datasets.json", item)


def test_concurrent_processes_lose_no_update(store):
    # fork: a spawned child would re-import pytest (about a second each); the workers touch
    # nothing but the filesystem, so forking the test process is safe.
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    start = context.Barrier(WORKERS)
    processes = [context.Process(target=_process_worker, args=(str(store.root), i, start)) for i in range(WORKERS)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
    assert [p.exitcode for p in processes] == [0] * WORKERS
    assert sorted(json.loads(store.read("all-datasets.json").data)["updates"]) == list(range(WORKERS))


def test_list_by_prefix(store):
    for key in ["api/v1/tables/a/t/v1/files/2026-11-01/000000000000.json", "api/v1/tables/a/t/v1/last_updated",
                "api/v1/tables/b/t/v1/metadata.json", "all-datasets.json"]:
        store.write(key, b"{}", content_type=JSON)
    assert store.list("api/v1/tables/a/") == [
        "api/v1/tables/a/t/v1/files/2026-11-01/000000000000.json",
        "api/v1/tables/a/t/v1/last_updated",
    ]
    assert store.list("api/v1/tables/a/t/v1/l") == ["api/v1/tables/a/t/v1/last_updated"]
    assert len(store.list("")) == 4
    assert store.list("nothing/") == []
    assert LocalStore(store.root / "never-created").list("") == []


def test_list_hides_temporary_files(store):
    store.write("a/k", b"v", content_type="text/plain")
    (store.root / "a" / ".k.123.tmp").write_bytes(b"partial")
    assert store.list("") == ["a/k"]


def test_delete(store):
    store.write("k", b"v", content_type="text/plain")
    store.delete("k")
    assert store.read("k") is None
    store.delete("k")  # absent is fine
    store.delete("never/was")
    assert store.list("") == []


def test_copy(store):
    store.write("src.json", b'{"a": 1}', content_type=JSON)
    store.copy("src.json", "staging/dst.json")
    assert store.read("staging/dst.json").data == b'{"a": 1}'
    store.copy("src.json", "staging/dst.json")  # overwriting is fine
    with pytest.raises(StoreError, match="does not exist"):
        store.copy("missing.json", "x.json")


def test_copy_from_another_directory_and_links(store, tmp_path):
    staging = LocalStore(tmp_path / "private" / "staging")
    staging.write("exports/part.json", b"[1]", content_type=JSON)
    store.copy_from(staging, "exports/part.json", "files/v/part.json", content_type=JSON, compress=True)
    assert store.read("files/v/part.json").data == b"[1]" and staging.exists("exports/part.json")
    with pytest.raises(StoreError, match="does not exist"):
        store.copy_from(staging, "exports/missing.json", "x.json", content_type=JSON)
    assert store.link("files/v/part.json") == (tmp_path / "public" / "files/v/part.json").as_uri()


def test_private_locations_the_public_can_read_are_refused(tmp_path):
    from pubdata.errors import ConfigurationError
    from pubdata.stores import open_private, readable_through

    public = f"file://{tmp_path}/public"
    assert readable_through(f"file://{tmp_path}/public/_staging", public)
    assert readable_through(public, public)
    assert not readable_through(f"file://{tmp_path}/private/staging", public)
    assert not readable_through(f"file://{tmp_path}", public)  # the public directory inside a private one is fine
    assert readable_through("gs://pub/staging", "gs://pub/public") and not readable_through("gs://priv/x", "gs://pub")
    with pytest.raises(ConfigurationError, match=r"PUBDATA_STAGING_BUCKET=.*/public/tmp is readable through"):
        open_private(f"file://{tmp_path}/public/tmp", public, "PUBDATA_STAGING_BUCKET")
    assert isinstance(open_private(f"file://{tmp_path}/private/staging", public, "PUBDATA_STAGING_BUCKET"), LocalStore)


@pytest.mark.parametrize("compress", [True, False])
def test_upload_file_of_several_megabytes(store, tmp_path, compress):
    path = tmp_path / "rows.json"
    with open(path, "wb") as fh:
        for _ in range(24):
            fh.write(os.urandom(1024 * 1024))
    store.upload_file("files/rows.json", path, content_type=JSON, compress=compress)
    assert store.read("files/rows.json").data == path.read_bytes()
    assert store.list("files/") == ["files/rows.json"]


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", ".."])
def test_invalid_keys_are_refused(store, key):
    with pytest.raises(StoreError, match="invalid object key"):
        store.write(key, b"x", content_type="text/plain")


def test_written_files_are_world_readable(store):
    store.write("k", b"v", content_type="text/plain")
    assert (store.root / "k").stat().st_mode & 0o777 == 0o644
    assert not [p for p in Path(store.root).iterdir() if p.name.startswith(".")]


def test_download_file_and_list_under_a_deep_prefix(store, tmp_path):
    store.write("a/b/files", b"[]", content_type=JSON)  # an object that is also a directory
    store.write("a/b/files/2026-11-01/v/000000000000.json", b"[1]", content_type=JSON)
    store.write("a/bc", b"x", content_type=JSON)
    assert store.list("a/b/files") == ["a/b/files", "a/b/files/2026-11-01/v/000000000000.json"]
    assert store.list("a/b/files/") == ["a/b/files/2026-11-01/v/000000000000.json"]
    assert store.list("a/b") == ["a/b/files", "a/b/files/2026-11-01/v/000000000000.json", "a/bc"]
    assert store.list("a/x/") == []

    store.download_file("a/b/files", tmp_path / "listing.json")
    assert (tmp_path / "listing.json").read_bytes() == b"[]"
    with pytest.raises(StoreError, match="does not exist"):
        store.download_file("a/missing", tmp_path / "missing")
