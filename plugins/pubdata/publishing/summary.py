"""What the public pages show of the data itself, computed once per publish: the first rows (a
preview) and the main metric's total per day (the chart), recorded in metadata.json; and when the
published content last really changed, so the feed announces changes, not republishes.

Read back from the files just published, so the page shows exactly what a reader downloads. The totals
are sums of published cells only (the policy allows totals derived from published cells; a total
over all clients minus the published cells would reveal the suppressed ones).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pubdata.declarations import Declaration
from pubdata.errors import StoreError
from pubdata.stores.base import Store

PREVIEW_ROWS = 10
VOLATILE = ("generated_at", "last_updated", "validation", "changed_at", "content_sha256", "pipeline_version", "links")
"""metadata.json keys that change with every publish even when what is published does not."""


def main_metric(decl: Declaration, families: dict[str, str]) -> str:
    """The metric the chart shows: the first declared count (an integer column: its sum over a day's
    rows means something, a ratio's would not) that is not the client count, else the client count."""
    policy = decl.spec.policy
    counts = [m.name for m in policy.metrics if families.get(m.name) == "integer"]
    others = [n for n in counts if n != policy.bucket_column]
    if others:
        return others[0]
    return policy.bucket_column or (counts[0] if counts else policy.metrics[0].name)


def date_column(decl: Declaration) -> str | None:
    """The column that says which day a row is about: the partition field, else a date dimension."""
    if decl.spec.incremental and decl.spec.partition_field:
        return decl.spec.partition_field
    return next((d.name for d in decl.spec.policy.dimensions if d.kind == "date"), None)


@dataclass
class Seen:
    """The published rows' preview and the metric's totals by day."""

    metric: str
    date_column: str | None
    rows: list[dict[str, Any]] = field(default_factory=list)
    totals: dict[str, float | int] = field(default_factory=dict)

    def preview(self, partition: str | None, existing: Any = None) -> dict[str, Any]:
        """The first rows of the newest day: republishing an older day keeps the newer day's preview."""
        if partition is not None and isinstance(existing, dict) and str(existing.get("partition") or "") > partition:
            return existing
        return {"partition": partition, "rows": self.rows}

    def merged_totals(self, existing: Any, keep_days: set[str] | None) -> dict[str, Any]:
        """This publish's totals, over an incremental table's earlier days (keep_days: its partitions)."""
        days: dict[str, float | int] = {}
        if keep_days is not None and isinstance(existing, dict) and existing.get("metric") == self.metric \
                and isinstance(existing.get("days"), dict):
            days = {d: v for d, v in existing["days"].items() if d in keep_days}
        days.update(self.totals)
        return {"metric": self.metric, "date_column": self.date_column, "days": dict(sorted(days.items()))}


def summarize(decl: Declaration, store: Store, keys: list[str], columns: list[tuple[str, str, str]]) -> Seen:
    """The preview and the daily totals of the published JSON files, in bounded memory.

    Each file is saved to a temporary file (streamed from GCS); the preview is read line by line
    (a part holds one row per line) and DuckDB sums the totals, streaming the files: the 256 MiB
    parts of a 50M-row export are never loaded whole. columns: (name, warehouse type, type family)
    of the published columns.
    """
    families = {name: family for name, _type, family in columns}
    seen = Seen(main_metric(decl, families), date_column(decl))
    with tempfile.TemporaryDirectory(prefix="pubdata-summary-") as tmp:
        paths = []
        for i, key in enumerate(keys):
            path = Path(tmp) / f"{i:06d}.json"
            try:
                store.download_file(key, path)
            except StoreError as exc:
                raise StoreError(f"{decl.id}: {key} could not be read back from {store.url} while publishing "
                                 f"({exc}); run publish again") from exc
            paths.append(path)
        for path in paths:
            if len(seen.rows) >= PREVIEW_ROWS:
                break
            seen.rows.extend(_first_rows(path, PREVIEW_ROWS - len(seen.rows)))
        if seen.date_column is not None and paths:
            seen.totals = _totals(paths, seen.date_column, seen.metric, families.get(seen.metric))
    return seen


def _first_rows(path: Path, n: int) -> list[dict[str, Any]]:
    """The first n rows of a JSON part as written by publishing.parts: "[", one row per line, "]"."""
    rows: list[dict[str, Any]] = []
    with open(path, "rb") as fh:
        for line in fh:
            line = line.strip()
            if line in (b"", b"[", b"]", b"[]"):
                continue
            try:
                rows.append(json.loads(line.removesuffix(b",")))
            except json.JSONDecodeError:
                return json.loads(path.read_bytes())[:n]  # not one row per line: read it whole
            if len(rows) >= n:
                break
    return rows


def _totals(paths: list[Path], day: str, metric: str, family: str | None) -> dict[str, float | int]:
    """The metric's sum per day over the files. The names are declared identifiers (lowercase
    letters, digits and underscores), so they can be spelled into the SQL."""
    import duckdb

    kind = "HUGEINT" if family == "integer" else "DOUBLE"
    con = duckdb.connect(config={"memory_limit": "256MB", "threads": 1})
    try:
        rows = con.execute(
            f'SELECT "{day}", sum("{metric}") FROM read_json(?, format = \'array\', '
            f"columns = {{'{day}': 'VARCHAR', '{metric}': '{kind}'}}) GROUP BY 1",
            [[str(p) for p in paths]],
        ).fetchall()
    finally:
        con.close()
    return {str(d)[:10]: (int(v) if kind == "HUGEINT" else float(v)) for d, v in rows if d is not None and v is not None}


def content_sha256(record: dict[str, Any]) -> str:
    """A digest of what a reader gets from this version: everything but the publish's own time stamps."""
    # A table published day by day: latest_partition, files and version say which day was
    # published last, not what the table holds (its days are all in partitions). Exported
    # whole, files and version are the table; which day ran last is not content.
    per_day = record.get("incremental") and record.get("incremental_export", True)
    ignored = VOLATILE + (("latest_partition", "files", "version") if per_day else
                          ("latest_partition",) if record.get("incremental") else ())
    content = {k: v for k, v in record.items() if k not in ignored}
    content["partitions"] = {
        day: {k: v for k, v in (p or {}).items() if k != "published_at"}
        for day, p in (record.get("partitions") or {}).items()
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def stamp_change(record: dict[str, Any], existing: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    """record with content_sha256 and changed_at: now when its content differs from the existing
    record's, else the existing changed_at (an identical republish changes nothing a reader sees)."""
    digest = content_sha256(record)
    if existing.get("content_sha256") == digest and existing.get("changed_at"):
        changed_at = existing["changed_at"]
    else:
        changed_at = now.isoformat()
    return {**record, "content_sha256": digest, "changed_at": changed_at}
