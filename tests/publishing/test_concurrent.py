"""Concurrency: datasets (and days of one dataset) publishing at once never lose an update to
all-datasets.json, the listing or metadata.json: generation preconditions with retry, on the local
store and on fake-gcs-server (which enforces if_generation_match like GCS)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from pubdata.publishing import publish as publishing
from pubdata.publishing.catalog import INDEX_KEY
from pubdata.stores.base import PreconditionFailed, Store
from pubdata.stores.local import LocalStore
from tests.support.harness import DAY, Harness, expected_rows

WORKERS = 20


@pytest.fixture(params=["local", pytest.param("gcs", marks=pytest.mark.gcs)])
def store(request, tmp_path) -> Store:
    if request.param == "local":
        return LocalStore(tmp_path / "public")
    return request.getfixturevalue("gcs_store")


class CountingStore(Store):
    """Counts the generation conflicts the publishes ran into (and retried)."""

    def __init__(self, inner: Store):
        self.inner, self.url, self.conflicts = inner, inner.url, 0
        self._lock = threading.Lock()

    def read(self, key):
        return self.inner.read(key)

    def list(self, prefix):
        return self.inner.list(prefix)

    def write(self, key, data, **kwargs):
        try:
            return self.inner.write(key, data, **kwargs)
        except PreconditionFailed:
            with self._lock:
                self.conflicts += 1
            raise

    def upload_file(self, key, path, **kwargs):
        return self.inner.upload_file(key, path, **kwargs)

    def copy(self, src, dst):
        return self.inner.copy(src, dst)

    def delete(self, key):
        return self.inner.delete(key)


def test_twenty_datasets_publishing_at_once_all_reach_the_index(tmp_path, store):
    counting = CountingStore(store)
    harness = Harness(tmp_path, counting)
    decls = [harness.declare(f"ds{i % 4}.table{i}_v1") for i in range(WORKERS)]
    staged = {d.id: harness.stage(d, marker=i, n=3 + i) for i, d in enumerate(decls)}
    exported = {d.id: harness.export(d, staged[d.id]) for d in decls}
    columns = [(c.name, c.type, harness.warehouse.type_family(c.type)) for c in harness.warehouse.columns(staged[decls[0].id])]
    start = threading.Barrier(WORKERS)

    def publish(decl):
        start.wait()
        return publishing.publish(decl, staged[decl.id], exported[decl.id], columns, counting, harness.base_url,
                                  staging=harness.staging)

    with ThreadPoolExecutor(WORKERS) as pool:
        results = list(pool.map(publish, decls))

    index = harness.read_json(INDEX_KEY)
    listed = sorted(f"{ds}.{table}_{v}" for ds, tables in index.items() for table, vs in tables.items() for v in vs)
    assert listed == sorted(d.id for d in decls)
    for i, (decl, result) in enumerate(zip(decls, results)):
        entry = index[decl.dataset][decl.table][f"v{decl.version}"]
        assert entry["files_uri"] == harness.base_url + decl.dataset_id.public_prefix + "/files"
        rows = [r for url in harness.listing(decl)[DAY.isoformat()] for r in harness.read_json(harness.key(url))]
        assert rows == expected_rows(i, 3 + i)
        assert result["rows"] == 3 + i
    print(f"{counting.conflicts} generation conflicts retried")
    assert counting.conflicts > 0, "the publishes never raced for all-datasets.json"


def test_a_lost_update_is_retried_not_lost(tmp_path, store):
    """Another dataset's publish lands between our read and our write of the index: we retry."""
    harness = Harness(tmp_path, store)
    ours, theirs = harness.declare("ds.ours_v1"), harness.declare("ds.theirs_v1")
    interfered = []

    class Interfering(Store):
        url = store.url

        def read(self, key):
            obj = store.read(key)
            if key == INDEX_KEY and not interfered:
                interfered.append(key)
                Harness(tmp_path, store).publish(theirs, marker=2, n=2, run_key="theirs")
            return obj

        def write(self, key, data, **kw):
            return store.write(key, data, **kw)

        def list(self, prefix):
            return store.list(prefix)

        def upload_file(self, key, path, **kw):
            return store.upload_file(key, path, **kw)

        def copy(self, src, dst):
            return store.copy(src, dst)

        def delete(self, key):
            return store.delete(key)

    harness.store = Interfering()
    harness.publish(ours, marker=1, n=2)

    assert interfered
    index = harness.read_json(INDEX_KEY)
    assert set(index["ds"]) == {"ours", "theirs"}


def test_days_of_one_dataset_publishing_at_once_are_all_listed_and_described(tmp_path, store):
    harness = Harness(tmp_path, store)
    decl = harness.declare("ds.daily_v1", formats=("json", "csv"))
    days = [DAY.replace(day=d) for d in range(1, 9)]
    staged = {day: harness.stage(decl, marker=day.day, n=day.day, day=day) for day in days}
    exported = {day: harness.export(decl, staged[day], run_key=f"r{day.day}") for day in days}
    columns = [(c.name, c.type, harness.warehouse.type_family(c.type)) for c in harness.warehouse.columns(staged[days[0]])]
    start = threading.Barrier(len(days))

    def publish(day):
        start.wait()
        return publishing.publish(decl, staged[day], exported[day], columns, store, harness.base_url,
                                  staging=harness.staging)

    with ThreadPoolExecutor(len(days)) as pool:
        list(pool.map(publish, days))

    prefix = decl.dataset_id.public_prefix
    listing = harness.listing(decl)
    assert list(listing) == [d.isoformat() for d in days]
    for day in days:
        rows = [r for url in listing[day.isoformat()] for r in harness.read_json(harness.key(url))]
        assert rows == expected_rows(day.day, day.day, day)
    meta = harness.read_json(f"{prefix}/metadata.json")
    assert sorted(meta["partitions"]) == [d.isoformat() for d in days]
    assert meta["row_count"] == sum(d.day for d in days)
    # The derived documents were rebuilt from the final metadata, not from a stale copy.
    package = harness.read_json(f"{prefix}/datapackage.json")
    assert len(package["resources"]) == 2 * len(days)
    assert {r["path"] for r in package["resources"]} == {f["url"] for p in meta["partitions"].values() for f in p["files"]}
    jsonld = harness.read_json(f"{prefix}/dataset.jsonld")
    assert jsonld["temporalCoverage"] == f"{days[0]}/{days[-1]}"
