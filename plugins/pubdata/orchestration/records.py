"""Run records: what happened to each run of a dataset, typed, for the CLI, alerts and on-call.

One JSON file per (dataset, partition) under PUBDATA_HOME/internal/runs/, rewritten atomically
as each task finishes; never written to the public bucket. The models here are also what the
tasks hand each other through XCom (ValidationSummary, PublishResult), as JSON.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

RunState = Literal["running", "staged", "validated", "quarantined", "validation_error", "exported", "published"]
"""running -> staged -> validated -> exported -> published; or quarantined (the data failed
validation) or validation_error (validation could not run)."""


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CheckSummary(_Model):
    """One expectation that did not pass, as it may leave the warehouse (values redacted)."""

    expectation: str
    description: str
    severity: str
    observed: Any = None
    expected: Any = None
    error: str | None = None


class ValidationSummary(_Model):
    """What validate hands export (XCom) and keeps in the run record."""

    outcome: Literal["passed", "failed", "error"]
    checks: int
    failures: list[CheckSummary] = []
    warnings: list[CheckSummary] = []
    errors: list[CheckSummary] = []
    seconds: float = 0.0
    fingerprint: str | None = None  # of the staged rows validation ran on (Warehouse.fingerprint); export compares


class QuarantineInfo(_Model):
    staged: dict[str, Any]
    since: str
    expires: str
    purged_at: str | None = None


class PublishResult(_Model):
    """What publish returns (XCom) and keeps in the run record."""

    files: list[dict[str, Any]]
    rows: int
    version: str
    last_updated: str
    metadata_url: str
    query_sha256: str
    deleted_files: int = 0


class RunRecord(_Model):
    dataset: str
    partition: str | None
    run_id: str = "manual"
    state: RunState = "running"
    started_at: str | None = None
    updated_at: str | None = None
    finished_at: str | None = None
    staged: dict[str, Any] | None = None
    rows: int | None = None
    validation: ValidationSummary | None = None
    validation_report: dict[str, Any] | None = None
    report: str | None = None
    exported: list[dict[str, Any]] | None = None
    published: PublishResult | None = None
    query_sha256: str | None = None
    quarantine: QuarantineInfo | None = None
    alert: dict[str, str] | None = None


class RunRecords:
    """The run records of this home: PUBDATA_HOME/internal/runs/<dataset>/<partition or full>.json."""

    def __init__(self, internal_dir: Path):
        self.root = Path(internal_dir) / "runs"

    def _path(self, dataset_id: str, partition: str | None) -> Path:
        return self.root / dataset_id / f"{partition or 'full'}.json"

    def get(self, dataset_id: str, partition: str | None) -> RunRecord | None:
        return self._read(self._path(dataset_id, partition))

    @staticmethod
    def _read(path: Path) -> RunRecord | None:
        try:
            return RunRecord.model_validate_json(path.read_text())
        except (FileNotFoundError, ValidationError, ValueError):
            return None  # absent, or written by an incompatible version: as if never run

    def save(self, record: RunRecord) -> RunRecord:
        """Write the record atomically (a reader sees the old one or the new one)."""
        record = record.model_copy(update={"updated_at": now()})
        path = self._path(record.dataset, record.partition)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            fh.write(record.model_dump_json(indent=2))
        os.replace(tmp, path)
        return record

    def update(self, dataset_id: str, partition: str | None, **fields: Any) -> RunRecord:
        """Merge fields into the record (created if absent), validated against RunRecord."""
        current = self.get(dataset_id, partition) or RunRecord(dataset=dataset_id, partition=partition)
        merged = RunRecord.model_validate({**current.model_dump(), **fields})
        return self.save(merged)

    def start(self, dataset_id: str, partition: str | None, run_id: str) -> RunRecord:
        """A fresh record for a new run of this partition (keeping nothing from the last one)."""
        return self.save(RunRecord(dataset=dataset_id, partition=partition, run_id=run_id, started_at=now()))

    def all(self, dataset_id: str | None = None) -> list[RunRecord]:
        """Every run record (of one dataset, or of all), oldest first."""
        pattern = f"{dataset_id}/*.json" if dataset_id else "*/*.json"
        out = []
        for path in sorted(self.root.glob(pattern), key=lambda p: p.stat().st_mtime):
            record = self._read(path)
            if record is not None:
                out.append(record)
        return out

    def latest(self, dataset_id: str) -> RunRecord | None:
        """The run that started last (a later update of an older record, e.g. a purge, does not count)."""
        runs = self.all(dataset_id)
        return max(runs, key=lambda r: r.started_at or r.updated_at or "") if runs else None

