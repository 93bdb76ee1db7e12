"""Row-count band: the row count stays within a band of the previous published partition's."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from pubdata.declarations import Declaration
from pubdata.stores.base import Store
from pubdata.validation.spec import ExpectationSpec


@dataclass(frozen=True)
class RowCountBand:
    """The row count must lie within [min_ratio, max_ratio] times the previous published partition's."""

    min_ratio: float = 0.5
    max_ratio: float = 2.0
    severity: str = "warn"


DEFAULT_ROW_COUNT_BAND = RowCountBand()


def row_count_band(band: RowCountBand | None, previous: tuple[str, int] | None) -> list[ExpectationSpec]:
    """The band expectation, or none on the first partition (nothing to compare with) or when disabled."""
    if band is None or previous is None:
        return []
    where, rows = previous
    low, high = math.floor(rows * band.min_ratio), math.ceil(rows * band.max_ratio)
    return [ExpectationSpec(
        "ExpectTableRowCountToBeBetween", {"min_value": low, "max_value": high}, band.severity,
        f"row count within {band.min_ratio:g}x-{band.max_ratio:g}x of the previous published {where} ({rows} rows)",
        "dataset",
    )]


def previous_published(store: Store, decl: Declaration, partition: str | None) -> tuple[str, int] | None:
    """(label, rows) of the publication to compare with: the latest published partition before
    this one (incremental), or the current publication (full tables); None the first time.

    Read from the public metadata.json, i.e. what was really published, through the store.
    """
    obj = store.read(f"{decl.dataset_id.public_prefix}/metadata.json")
    if obj is None:
        return None
    meta = json.loads(obj.data)
    if decl.spec.incremental:
        earlier = sorted(p for p in (meta.get("partitions") or {}) if partition is None or p < partition)
        if not earlier:
            return None
        return f"partition {earlier[-1]}", int(meta["partitions"][earlier[-1]]["rows"])
    if meta.get("row_count") is None:
        return None
    return "version", int(meta["row_count"])
