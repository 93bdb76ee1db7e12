"""Quarantine: the staged table of a run whose data failed validation stays internal, for a while.

On-call inspects exactly what was refused (the DuckDB staging table, or the run's BigQuery
staging table) instead of re-running the query. It is never exported. Each quarantined run has
a mark in the run-state store saying when it expires (PUBDATA_QUARANTINE_DAYS, 14 by default);
`purge` drops expired tables. The stage task purges its own dataset's expired quarantine before
it stages, and `pubdata quarantine --purge` purges every dataset's. On BigQuery the staged
tables also expire by themselves after the same period, purge or not.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from pubdata.config import Settings
from pubdata.errors import ConfigurationError
from pubdata.orchestration.records import QuarantineInfo, QuarantineMark, RunRecords
from pubdata.warehouses import Warehouse, open_warehouse
from pubdata.warehouses.base import StagedTable

DAYS_ENV = "PUBDATA_QUARANTINE_DAYS"
DEFAULT_DAYS = 14
MIN_STAGING_DAYS = 2
"""A staged table must outlive the run that stages it (DAG run timeout), whatever the quarantine period."""


def retention_days() -> int:
    raw = os.environ.get(DAYS_ENV, str(DEFAULT_DAYS))
    try:
        days = int(raw)
    except ValueError:
        days = -1
    if days < 0:
        raise ConfigurationError(f"{DAYS_ENV}={raw!r} is not a whole number of days >= 0")
    return days


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def mark(cfg: Settings, dataset_id: str, partition: str | None, staged: dict[str, Any], run_id: str = "manual",
         now: dt.datetime | None = None) -> QuarantineInfo:
    """Record that this run's staged table is kept as quarantine, and until when.

    The mark goes to the run-state store beside the run record, so any worker (or `pubdata
    quarantine --purge` anywhere) can purge it when it expires.
    """
    now = now or _now()
    info = QuarantineInfo(staged=staged, since=now.isoformat(),
                          expires=(now + dt.timedelta(days=retention_days())).isoformat())
    records = RunRecords.open(cfg)
    records.mark(QuarantineMark(dataset=dataset_id, partition=partition, run_id=run_id, info=info))
    records.update(dataset_id, partition, quarantine=info)
    return info


def release(cfg: Settings, dataset_id: str, partition: str | None) -> None:
    """A new run stages this partition again: its table replaces the quarantined one, which is
    no longer held (and must never be purged from under the new run)."""
    RunRecords.open(cfg).unmark(dataset_id, partition)


def held(cfg: Settings, dataset_id: str | None = None) -> list[QuarantineMark]:
    """Staged tables still held in quarantine."""
    return RunRecords.open(cfg).marks(dataset_id)


def purge(cfg: Settings, dataset_id: str | None = None, now: dt.datetime | None = None,
          warehouse: Warehouse | None = None) -> list[QuarantineMark]:
    """Drop the staged tables whose quarantine has expired; return their marks.

    The run record stays (state quarantined, with purged_at) so `pubdata status` still tells
    what happened to that run; the mark goes.
    """
    now = now or _now()
    expired = [m for m in held(cfg, dataset_id) if dt.datetime.fromisoformat(m.info.expires) <= now]
    if not expired:
        return []
    wh = warehouse or open_warehouse(cfg.warehouse_url, home=cfg.home)
    records = RunRecords.open(cfg)
    for m in expired:
        wh.drop(StagedTable.from_dict(m.info.staged))
        record = records.get(m.dataset, m.partition)
        if record is not None and record.quarantine is not None and record.quarantine.since == m.info.since:
            records.update(m.dataset, m.partition, quarantine=m.info.model_copy(update={"purged_at": now.isoformat()}))
        records.unmark(m.dataset, m.partition)
    return expired
