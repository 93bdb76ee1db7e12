"""The parse-time cache of validated declarations only ever saves work: it never changes an answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pubdata.declarations import load_all
from pubdata.declarations.cache import SpecCache

EXAMPLE = "telemetry_public.page_loads_by_country_v1"
META = Path("metadata/telemetry_public/page_loads_by_country_v1.yaml")


@pytest.fixture()
def cache_path(tmp_path) -> Path:
    return tmp_path / "cache" / "declarations.json"


def _specs(project: Path, cache: SpecCache | None):
    catalog = load_all(project, cache)
    return {k: d.spec for k, d in catalog.declarations.items()}, [str(e) for e in catalog.problems]


def test_cached_load_equals_a_fresh_load(project, cache_path):
    fresh = _specs(project, None)
    first = _specs(project, SpecCache(cache_path))  # fills the cache
    assert cache_path.is_file()
    entries = json.loads(cache_path.read_text())["entries"]
    assert len(entries) == len(fresh[0])
    second = SpecCache(cache_path)
    assert _specs(project, second) == fresh == first
    assert len(second._used) == len(entries)  # every declaration came from the cache


def test_an_edited_file_is_read_again(project, cache_path):
    _specs(project, SpecCache(cache_path))
    path = project / META
    path.write_text(path.read_text().replace("friendly_name: ", "friendly_name: Edited ", 1))
    specs, _ = _specs(project, SpecCache(cache_path))
    assert specs[EXAMPLE].friendly_name.startswith("Edited")
    # The stale entry is dropped on save: one entry per file on disk.
    assert len(json.loads(cache_path.read_text())["entries"]) == len(specs)


def test_a_broken_file_is_never_cached_and_keeps_reporting(project, cache_path):
    path = project / META
    path.write_text(path.read_text() + "\nunknown_key: 1\n")
    for _ in range(2):
        specs, errors = _specs(project, SpecCache(cache_path))
        assert EXAMPLE not in specs
        assert any("page_loads_by_country_v1.yaml" in e and "unknown_key" in e for e in errors), errors
    assert len(json.loads(cache_path.read_text())["entries"]) == len(specs)


@pytest.mark.parametrize("content", ["not json", '{"key": "another model", "entries": {}}', "[]"])
def test_an_unreadable_or_foreign_cache_is_ignored(project, cache_path, content):
    cache_path.parent.mkdir(parents=True)
    cache_path.write_text(content)
    assert _specs(project, SpecCache(cache_path)) == _specs(project, None)


def test_a_tampered_entry_is_validated_again_not_trusted(project, cache_path):
    """An entry that no longer passes the strict model is a miss: the YAML is parsed again."""
    _specs(project, SpecCache(cache_path))
    data = json.loads(cache_path.read_text())
    data["entries"] = {k: json.dumps({**json.loads(v), "surprise": 1}) for k, v in data["entries"].items()}
    cache_path.write_text(json.dumps(data))
    assert _specs(project, SpecCache(cache_path)) == _specs(project, None)


def test_an_unwritable_cache_is_not_an_error(project, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the cache directory should be")
    assert _specs(project, SpecCache(blocker / "cache" / "declarations.json")) == _specs(project, None)
