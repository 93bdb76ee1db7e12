"""Internal run records: what happened to each dataset's run, for the CLI summary and on-call.

One JSON file per (dataset, partition) under PUBDATA_HOME/internal/runs/, updated as each task
finishes. Never written to the public bucket.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def _path(internal_dir: Path, dataset_id: str, partition: str | None) -> Path:
    return Path(internal_dir) / "runs" / dataset_id / f"{partition or 'full'}.json"


def read(internal_dir: Path, dataset_id: str, partition: str | None) -> dict[str, Any] | None:
    try:
        return json.loads(_path(internal_dir, dataset_id, partition).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def update(internal_dir: Path, dataset_id: str, partition: str | None, **fields: Any) -> dict[str, Any]:
    """Merge fields into the record and rewrite it atomically."""
    path = _path(internal_dir, dataset_id, partition)
    record = read(internal_dir, dataset_id, partition) or {"dataset": dataset_id, "partition": partition}
    record.update(fields)
    record["updated_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(record, fh, indent=2, default=str)
    os.replace(tmp, path)
    return record


def reset(internal_dir: Path, dataset_id: str, partition: str | None, run_id: str) -> dict[str, Any]:
    """Start a fresh record for a new run of this partition (keeping nothing from the last one)."""
    path = _path(internal_dir, dataset_id, partition)
    path.unlink(missing_ok=True)
    return update(internal_dir, dataset_id, partition, run_id=run_id, state="running",
                  started_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))


def latest(internal_dir: Path, dataset_id: str) -> dict[str, Any] | None:
    """The run that started last (a later update of an older record, e.g. a purge, does not count)."""
    runs = all_records(internal_dir, dataset_id)
    return max(runs, key=lambda r: r.get("started_at") or r.get("updated_at") or "") if runs else None


def all_records(internal_dir: Path, dataset_id: str | None = None) -> list[dict[str, Any]]:
    """Every run record (of one dataset, or of all), oldest first."""
    pattern = f"{dataset_id}/*.json" if dataset_id else "*/*.json"
    out = []
    for path in sorted((Path(internal_dir) / "runs").glob(pattern), key=lambda p: p.stat().st_mtime):
        try:
            out.append(json.loads(path.read_text()))
        except (FileNotFoundError, json.JSONDecodeError):
            continue
    return out
