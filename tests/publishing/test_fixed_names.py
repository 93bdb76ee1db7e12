"""Mozilla's clients hard-code file URLs (`.../files/000000000000.json`, `.../files/<date>/000000000000.json`):
those names serve the version the listing names, on a local directory and on fake-gcs-server, and
a reader of one of them during a publish always gets one whole file of one version."""

from __future__ import annotations

import json
import threading

import pytest

from pubdata.stores.base import Store
from pubdata.stores.local import LocalStore
from tests.support.harness import DAY, Harness, expected_rows

PART_BYTES = 1024  # small parts: a version has several files


@pytest.fixture(params=["local", pytest.param("gcs", marks=pytest.mark.gcs)])
def store(request, tmp_path) -> Store:
    if request.param == "local":
        return LocalStore(tmp_path / "public")
    return request.getfixturevalue("gcs_store")


def _rows_at_fixed_names(harness: Harness, scope: str) -> list[dict]:
    """What a client that knows only the fixed names reads: 000000000000.json, ...001.json, ... until a 404."""
    rows: list[dict] = []
    for i in range(1000):
        obj = harness.store.read(f"{scope}{i:012d}.json")
        if obj is None:
            return rows
        rows.extend(json.loads(obj.data))
    raise AssertionError("more fixed names than any version has files")


def test_a_full_table_is_served_at_fixed_names(tmp_path, store):
    harness = Harness(tmp_path, store)
    decl = harness.declare("ds.full_v1", incremental=False, max_file_bytes=PART_BYTES)
    scope = f"{decl.dataset_id.public_prefix}/files/"

    harness.publish(decl, marker=1, n=40)
    assert _rows_at_fixed_names(harness, scope) == expected_rows(1, 40)
    many = len(harness.fixed_keys(decl))
    assert many > 1

    # A smaller version: its files replace the fixed names, and the names it no longer has go.
    harness.publish(decl, marker=2, n=3)
    assert _rows_at_fixed_names(harness, scope) == expected_rows(2, 3)
    assert harness.fixed_keys(decl) == [f"{scope}000000000000.json"]
    listed = [harness.key(u) for u in harness.listing(decl)]
    assert store.read(listed[0]).data == store.read(f"{scope}000000000000.json").data


def test_each_day_is_served_at_its_fixed_names(tmp_path, store):
    harness = Harness(tmp_path, store)
    decl = harness.declare("ds.daily_v1", incremental=True)
    other = DAY.replace(day=2)
    harness.publish(decl, marker=1, n=4)
    harness.publish(decl, marker=2, n=6, day=other)
    harness.publish(decl, marker=3, n=5)  # the first day again

    prefix = f"{decl.dataset_id.public_prefix}/files/"
    assert _rows_at_fixed_names(harness, f"{prefix}{DAY.isoformat()}/") == expected_rows(3, 5)
    assert _rows_at_fixed_names(harness, f"{prefix}{other.isoformat()}/") == expected_rows(2, 6, other)
    # The versions' own folders hold only what the listing names (the fixed names are no version).
    listing = harness.listing(decl)
    assert set(harness.data_keys(decl)) == {harness.key(u) for urls in listing.values() for u in urls}


def test_a_reader_of_a_fixed_name_gets_one_whole_file_during_publishes(tmp_path):
    harness = Harness(tmp_path, LocalStore(tmp_path / "public"))
    decl = harness.declare("ds.busy_v1", incremental=False)
    key = f"{decl.dataset_id.public_prefix}/files/000000000000.json"
    harness.publish(decl, marker=1, n=5)
    stop = threading.Event()
    problems: list[str] = []
    seen: set[int] = set()

    def reader() -> None:
        while not stop.is_set():
            obj = harness.store.read(key)
            if obj is None:
                problems.append("the fixed name was missing during a publish")
                continue
            rows = json.loads(obj.data)
            markers = {r["marker"] for r in rows}
            if len(markers) != 1 or rows != expected_rows(markers.pop(), len(rows)):
                problems.append(f"a mixed or partial file: {len(rows)} rows")
            else:
                seen.add(rows[0]["marker"])

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        for i in range(8):
            harness.publish(decl, marker=2 + i % 2, n=5 + i % 2, run_key=f"run{i}")
    finally:
        stop.set()
        thread.join(timeout=30)
    assert problems == []
    assert len(seen) >= 2, "the reader never saw a publish happen"
