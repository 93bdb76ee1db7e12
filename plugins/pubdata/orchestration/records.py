"""Run records: what happened to each run of a dataset, typed, for the CLI, alerts and on-call.

They live in the run-state store (PUBDATA_STATE_URL: a private directory beside the public one
on the embedded stack, a private GCS bucket or prefix in production), which every worker and the
CLI reach, so no task depends on the disk of the worker that ran the task before it:

    runs/<dataset>/<partition or full>.json      the current run of each (dataset, partition)
    runs/<dataset>/latest.json                   which partition's run started last
    history/<dataset>/<partition or full>/<started>__<run>.json  each earlier run, kept when the next starts
    quarantine/<dataset>/<partition or full>.json  a staged table kept after failed validation
    reports/<dataset>/<partition or full>/<run>.html  validation reports (validation.reports)

Records are read-modify-written with generation preconditions, so two writers (a task and the
failure callback of another worker) lose no update. They are informational: what a later task
needs travels in XCom (these models: ValidationSummary, ExportResult, PublishResult, as JSON).
"""

from __future__ import annotations

import datetime as dt
import os
import random
import socket
import time
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from pubdata.errors import ErrorKind, PreconditionFailed, StoreError
from pubdata.stores.base import Store

if TYPE_CHECKING:
    from pubdata.config import Settings

RunState = Literal["running", "staged", "validated", "quarantined", "validation_error", "exported", "published",
                   "failed"]
"""running -> staged -> validated -> exported -> published; or quarantined (the data failed
validation), validation_error (validation could not run) or failed (a task failed for good: see
`failure`)."""

RUNS = "runs"
HISTORY = "history"
QUARANTINE = "quarantine"
REPORTS = "reports"
_ATTEMPTS = 30


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
    finding: str | None = None  # in words: "5 rows above 20,000"
    cells: str | None = None  # the first failing cells by their dimension values (redacted)


class ValidationSummary(_Model):
    """What validate hands export and publish (XCom) and keeps in the run record."""

    outcome: Literal["passed", "failed", "error"]
    checks: int
    failures: list[CheckSummary] = []
    warnings: list[CheckSummary] = []
    errors: list[CheckSummary] = []
    seconds: float = 0.0
    fingerprint: str | None = None  # of the staged rows validation ran on (Warehouse.fingerprint); export compares


class ExportResult(_Model):
    """What export hands publish (XCom): the staged files and the staged table's columns.

    The columns travel too because publish drops the staged table once it has published: a
    retried publish must not need it any more.
    """

    files: list[dict[str, Any]]
    columns: list[tuple[str, str, str]]  # name, warehouse type, type family


class QuarantineInfo(_Model):
    staged: dict[str, Any]
    since: str
    expires: str
    purged_at: str | None = None


class QuarantineMark(_Model):
    """A staged table kept as quarantine: the index `pubdata quarantine` and the purge read."""

    dataset: str
    partition: str | None
    run_id: str
    info: QuarantineInfo


class PublishResult(_Model):
    """What publish returns (XCom) and keeps in the run record."""

    files: list[dict[str, Any]]
    rows: int
    version: str
    last_updated: str
    metadata_url: str
    query_sha256: str
    deleted_files: int = 0


class FailureInfo(_Model):
    """How a run failed for good, classified once (errors.classify)."""

    kind: ErrorKind
    task: str | None = None
    error: str | None = None
    log_url: str | None = None
    at: str | None = None


class Worker(_Model):
    """The process running a run's current task: whether a run is still going can be asked of it."""

    host: str
    pid: int
    task: str | None = None


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
    report: str | None = None  # a URL on-call can open (file:// locally, the private bucket's in production)
    exported: list[dict[str, Any]] | None = None
    published: PublishResult | None = None
    query_sha256: str | None = None
    quarantine: QuarantineInfo | None = None
    failure: FailureInfo | None = None
    alert: dict[str, str] | None = None
    worker: Worker | None = None


def _name(partition: str | None) -> str:
    return partition or "full"


class RunRecords:
    """The run records in one state store."""

    def __init__(self, store: Store):
        self.store = store

    @classmethod
    def open(cls, cfg: Settings) -> RunRecords:
        from pubdata.stores import open_private

        return cls(open_private(cfg.state_url, cfg.bucket_url, "PUBDATA_STATE_URL"))

    @staticmethod
    def key(dataset_id: str, partition: str | None) -> str:
        return f"{RUNS}/{dataset_id}/{_name(partition)}.json"

    def get(self, dataset_id: str, partition: str | None) -> RunRecord | None:
        obj = self.store.read(self.key(dataset_id, partition))
        return _parse(obj.data) if obj is not None else None

    def save(self, record: RunRecord) -> RunRecord:
        """Write the record whole, replacing any other (a reader sees the old one or the new one)."""
        record = record.model_copy(update={"updated_at": now()})
        self.store.write(self.key(record.dataset, record.partition), record.model_dump_json(indent=2).encode(),
                         content_type="application/json")
        return record

    def update(self, dataset_id: str, partition: str | None, **fields: Any) -> RunRecord:
        """Merge fields into the record (created if absent), validated against RunRecord.

        A read-modify-write with a generation precondition, retried on conflict: a concurrent
        writer's fields are kept, and a write whose answer was lost is simply made again.
        """
        key = self.key(dataset_id, partition)
        for attempt in range(_ATTEMPTS):
            obj = self.store.read(key)
            current = (_parse(obj.data) if obj is not None else None) or RunRecord(dataset=dataset_id,
                                                                                     partition=partition)
            merged = RunRecord.model_validate({**current.model_dump(), **fields, "updated_at": now()})
            try:
                self.store.write(key, merged.model_dump_json(indent=2).encode(), content_type="application/json",
                                 if_generation_match=obj.generation if obj is not None else 0)
                return merged
            except PreconditionFailed:
                time.sleep(random.uniform(0, min(0.05 * 2 ** attempt, 1.0)))
        raise StoreError(f"could not update the run record {key} in {self.store.url}: too many concurrent writers")

    def start(self, dataset_id: str, partition: str | None, run_id: str, task: str | None = None) -> RunRecord:
        """A fresh record for a run of this partition; the last run's record moves to the history."""
        previous = self.get(dataset_id, partition)
        if previous is not None and previous.run_id != run_id:
            self.store.write(self.history_key(previous), previous.model_dump_json(indent=2).encode(),
                             content_type="application/json")
        # to the microsecond: runs started within one second still sort in the order they started
        started = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
        record = self.save(RunRecord(dataset=dataset_id, partition=partition, run_id=run_id, started_at=started,
                                     worker=this_worker(task)))
        self.store.write(f"{RUNS}/{dataset_id}/latest.json",
                         _Latest(partition=partition, run_id=run_id).model_dump_json().encode(),
                         content_type="application/json")
        return record

    @staticmethod
    def history_key(record: RunRecord) -> str:
        started = (record.started_at or record.updated_at or "unknown").replace(":", "")
        run = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in record.run_id)
        return f"{HISTORY}/{record.dataset}/{_name(record.partition)}/{started}__{run}.json"

    def history(self, dataset_id: str) -> list[RunRecord]:
        """Every run of a dataset kept here, the current ones and the earlier ones, newest first."""
        out = self.all(dataset_id)
        for key in self.store.list(f"{HISTORY}/{dataset_id}/"):
            obj = self.store.read(key)
            record = _parse(obj.data) if obj is not None else None
            if record is not None:
                out.append(record)
        return sorted(out, key=lambda r: r.started_at or r.updated_at or "", reverse=True)

    def claim(self, dataset_id: str, partition: str | None, run_id: str, task: str) -> None:
        """Note which process runs this run's task now (when the record is this run's)."""
        record = self.get(dataset_id, partition)
        if record is not None and record.run_id == run_id:
            self.update(dataset_id, partition, worker=this_worker(task))

    def all(self, dataset_id: str | None = None) -> list[RunRecord]:
        """Every run record (of one dataset, or of all), oldest first."""
        prefix = f"{RUNS}/{dataset_id}/" if dataset_id else f"{RUNS}/"
        out = []
        for key in self.store.list(prefix):
            if key.endswith(".json") and not key.endswith("/latest.json"):
                obj = self.store.read(key)
                record = _parse(obj.data) if obj is not None else None
                if record is not None:
                    out.append(record)
        return sorted(out, key=lambda r: r.started_at or r.updated_at or "")

    def latest(self, dataset_id: str) -> RunRecord | None:
        """The run that started last (a later update of an older record, e.g. a purge, does not count)."""
        obj = self.store.read(f"{RUNS}/{dataset_id}/latest.json")
        if obj is not None:
            try:
                pointer = _Latest.model_validate_json(obj.data)
            except (ValidationError, ValueError):
                pointer = None
            if pointer is not None:
                record = self.get(dataset_id, pointer.partition)
                if record is not None:
                    return record
        runs = self.all(dataset_id)
        return max(runs, key=lambda r: r.started_at or r.updated_at or "") if runs else None

    # -- quarantine marks -------------------------------------------------------------------

    @staticmethod
    def mark_key(dataset_id: str, partition: str | None) -> str:
        return f"{QUARANTINE}/{dataset_id}/{_name(partition)}.json"

    def mark(self, mark: QuarantineMark) -> None:
        self.store.write(self.mark_key(mark.dataset, mark.partition), mark.model_dump_json(indent=2).encode(),
                         content_type="application/json")

    def unmark(self, dataset_id: str, partition: str | None) -> None:
        self.store.delete(self.mark_key(dataset_id, partition))

    def marks(self, dataset_id: str | None = None) -> list[QuarantineMark]:
        prefix = f"{QUARANTINE}/{dataset_id}/" if dataset_id else f"{QUARANTINE}/"
        out = []
        for key in self.store.list(prefix):
            obj = self.store.read(key)
            if obj is None:
                continue
            try:
                out.append(QuarantineMark.model_validate_json(obj.data))
            except (ValidationError, ValueError):
                continue
        return sorted(out, key=lambda m: m.info.since)


def this_worker(task: str | None) -> Worker:
    return Worker(host=socket.gethostname(), pid=os.getpid(), task=task)


def process_alive(worker: Worker | None) -> bool | None:
    """Whether the worker's process still runs: None when it ran on another host (cannot tell here)."""
    if worker is None or worker.host != socket.gethostname():
        return None
    try:
        os.kill(worker.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Latest(_Model):
    partition: str | None
    run_id: str


def _parse(data: bytes) -> RunRecord | None:
    try:
        return RunRecord.model_validate_json(data)
    except (ValidationError, ValueError):
        return None  # written by an incompatible version: as if never run
