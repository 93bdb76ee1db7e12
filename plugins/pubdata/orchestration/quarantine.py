"""Quarantine: the staged table of a run whose data failed validation stays internal, for a while.

On-call inspects exactly what was refused (the DuckDB staging file, or the BigQuery staging
partition) instead of re-running the query. It is never exported. Each quarantined run records
when it expires (PUBDATA_QUARANTINE_DAYS, 14 by default); `purge` drops expired tables. The stage
task purges its own dataset's expired quarantine before it stages, and `pubdata quarantine
--purge` purges every dataset's.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from pubdata.config import Settings
from pubdata.errors import ConfigurationError
from pubdata.orchestration.records import QuarantineInfo, RunRecord, RunRecords
from pubdata.warehouses import Warehouse, open_warehouse
from pubdata.warehouses.base import StagedTable

DAYS_ENV = "PUBDATA_QUARANTINE_DAYS"
DEFAULT_DAYS = 14


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


def mark(cfg: Settings, dataset_id: str, partition: str | None, staged: dict[str, Any],
         now: dt.datetime | None = None) -> QuarantineInfo:
    """Record that this run's staged table is kept as quarantine, and until when."""
    now = now or _now()
    info = QuarantineInfo(staged=staged, since=now.isoformat(),
                          expires=(now + dt.timedelta(days=retention_days())).isoformat())
    RunRecords(cfg.internal_dir).update(dataset_id, partition, quarantine=info)
    return info


def held(cfg: Settings, dataset_id: str | None = None) -> list[RunRecord]:
    """Run records whose staged table is still held in quarantine."""
    return [r for r in RunRecords(cfg.internal_dir).all(dataset_id)
            if r.state == "quarantined" and r.quarantine is not None and not r.quarantine.purged_at]


def purge(cfg: Settings, dataset_id: str | None = None, now: dt.datetime | None = None,
          warehouse: Warehouse | None = None) -> list[RunRecord]:
    """Drop the staged tables whose quarantine has expired; return their records.

    The record stays (state quarantined, with purged_at) so `pubdata status` still tells what
    happened to that run.
    """
    now = now or _now()
    expired = [r for r in held(cfg, dataset_id)
               if r.quarantine is not None and dt.datetime.fromisoformat(r.quarantine.expires) <= now]
    if not expired:
        return []
    wh = warehouse or open_warehouse(cfg.warehouse_url, home=cfg.home)
    records = RunRecords(cfg.internal_dir)
    for rec in expired:
        assert rec.quarantine is not None
        wh.drop(StagedTable.from_dict(rec.quarantine.staged))
        records.update(rec.dataset, rec.partition,
                       quarantine=rec.quarantine.model_copy(update={"purged_at": now.isoformat()}))
    return expired
