"""Export a validated staged table and publish it in the public layout.

Layout (compatible with Mozilla's public-data API), under the bucket root:
  all-datasets.json                                    {ds: {table: {"v<N>": entry}}}
  api/v1/tables/<ds>/<table>/v<N>/files/[<date>/]000000000000.json
  api/v1/tables/<ds>/<table>/v<N>/files                [urls] or {date: [urls]}
  api/v1/tables/<ds>/<table>/v<N>/last_updated         "YYYY-MM-DD HH:MM:SS"
  api/v1/tables/<ds>/<table>/v<N>/metadata.json        the full public record
Export writes the files under an internal staging prefix; publish copies them into place first,
then switches the listing, metadata, last_updated and finally the index, so a reader following
the index only ever finds files that exist.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pubdata import __version__, policy
from pubdata.declaration import Declaration
from pubdata.stores.base import PreconditionFailed, Store, StoreError
from pubdata.warehouses.base import StagedTable, Warehouse

INDEX_KEY = "all-datasets.json"
STAGING_PREFIX = "_staging"
CONTENT_TYPES = {"json": "application/json", "csv": "text/csv", "parquet": "application/vnd.apache.parquet"}


@dataclass(frozen=True)
class ExportedFile:
    name: str          # 000000000000.json
    format: str
    staged_key: str    # where export left it
    bytes: int
    sha256: str
    rows: int


def table_prefix(decl: Declaration) -> str:
    return f"api/v1/tables/{decl.table_path}"


def file_key(decl: Declaration, partition: str | None, name: str) -> str:
    sub = f"{partition}/" if decl.spec.incremental and partition else ""
    return f"{table_prefix(decl)}/files/{sub}{name}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1024 * 1024), b""):
            h.update(chunk)
    return h.hexdigest()


def export(decl: Declaration, warehouse: Warehouse, staged: StagedTable, store: Store, run_key: str) -> list[ExportedFile]:
    """Write the staged rows, in a deterministic order, to the bucket's internal staging prefix."""
    order_by = decl.spec.policy.columns
    prefix = f"{STAGING_PREFIX}/{decl.table_path}/{staged.partition or 'full'}/{run_key}"
    out = []
    with tempfile.TemporaryDirectory(prefix="pubdata-export-") as tmp:
        for fmt in decl.spec.export.formats:
            name = f"000000000000.{fmt}"
            local = Path(tmp) / name
            rows = warehouse.export(staged, local, order_by, fmt)
            key = f"{prefix}/{name}"
            store.upload_file(key, local, content_type=CONTENT_TYPES[fmt], compress=fmt != "parquet")
            out.append(ExportedFile(name, fmt, key, local.stat().st_size, _sha256(local), rows))
    return out


def public_url(base_url: str, key: str) -> str:
    return base_url + key


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=False, default=str, ensure_ascii=False) + "\n").encode("utf-8")


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(obj).items()}
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    return obj


def policy_record(decl: Declaration) -> dict[str, Any]:
    p = decl.spec.policy
    v = policy.verdict(decl.spec)
    return {
        "aggregation_level": p.aggregation_level,
        "min_bucket_size": p.min_bucket_size if p.bucket_column else None,
        "bucket_column": p.bucket_column,
        "dimensions": [d.model_dump(mode="json") for d in p.dimensions],
        "metrics": [m.model_dump(mode="json") for m in p.metrics],
        "review_questions": [_jsonable(a) for a in v.answers],
        "verdict": v.status,
        "steward": decl.spec.review.steward.model_dump(mode="json") if decl.spec.review.steward else None,
    }


def schema_record(decl: Declaration, columns: list[tuple[str, str]]) -> list[dict[str, str]]:
    described = {d.name: ("dimension", d.description) for d in decl.spec.policy.dimensions}
    described.update({m.name: ("metric", m.description) for m in decl.spec.policy.metrics})
    return [
        {"name": name, "type": type_, "role": described.get(name, ("", ""))[0], "description": described.get(name, ("", ""))[1]}
        for name, type_ in columns
    ]


def _update_json(store: Store, key: str, mutate, *, attempts: int = 50) -> Any:
    """Read-modify-write a shared JSON object with generation preconditions; retry on conflicts."""
    for attempt in range(attempts):
        current = store.read(key)
        value = json.loads(current.data) if current else None
        new = mutate(value)
        try:
            store.write(key, _json_bytes(new), content_type="application/json",
                        if_generation_match=current.generation if current else 0, cache_control="no-cache")
            return new
        except PreconditionFailed:
            time.sleep(min(0.05 * (2 ** attempt), 1.0))
    raise StoreError(f"could not update {key} after {attempts} attempts: too many concurrent writers")


def publish(decl: Declaration, staged: StagedTable, exported: list[ExportedFile], columns: list[tuple[str, str]],
            store: Store, base_url: str, validation: dict[str, Any] | None = None) -> dict[str, Any]:
    """Move exported files into the public layout and switch the listing, metadata and index."""
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    partition = staged.partition if decl.spec.incremental else None
    prefix = table_prefix(decl)

    files = []
    for f in exported:
        key = file_key(decl, partition, f.name)
        store.copy(f.staged_key, key)
        files.append({"url": public_url(base_url, key), "format": f.format, "bytes": f.bytes, "sha256": f.sha256, "rows": f.rows})
    json_urls = [f["url"] for f in files if f["format"] == "json"]

    if decl.spec.incremental:
        def add_partition(listing):
            listing = listing if isinstance(listing, dict) else {}
            listing[partition] = json_urls
            return dict(sorted(listing.items()))
        _update_json(store, f"{prefix}/files", add_partition)
    else:
        store.write(f"{prefix}/files", _json_bytes(json_urls), content_type="application/json", cache_control="no-cache")

    last_updated = now.strftime("%Y-%m-%d %H:%M:%S")
    rows = exported[0].rows if exported else 0

    def record(existing):
        existing = existing if isinstance(existing, dict) else {}
        partitions = dict(existing.get("partitions") or {}) if decl.spec.incremental else {}
        if decl.spec.incremental:
            partitions[partition] = {"rows": rows, "files": files, "published_at": now.isoformat()}
        return {
            "id": decl.id,
            "friendly_name": decl.spec.friendly_name,
            "description": decl.spec.description,
            "owners": decl.spec.owners,
            "incremental": decl.spec.incremental,
            "partition_field": decl.spec.partition_field,
            "review_links": [str(u) for u in decl.spec.review.bugs],
            "review": decl.spec.review.model_dump(mode="json"),
            "policy": policy_record(decl),
            "schema": schema_record(decl, columns),
            "query": {"path": f"sql/{decl.dataset}/{decl.table}_v{decl.version}.sql", "sha256": decl.query_sha256, "text": decl.query},
            "row_count": sum(p["rows"] for p in partitions.values()) if decl.spec.incremental else rows,
            "latest_partition": partition,
            "files": files,
            "partitions": dict(sorted(partitions.items())),
            "validation": validation,
            "last_updated": last_updated,
            "generated_at": now.isoformat(),
            "pipeline_version": __version__,
        }

    _update_json(store, f"{prefix}/metadata.json", record)
    store.write(f"{prefix}/last_updated", _json_bytes(last_updated), content_type="application/json", cache_control="no-cache")

    entry = {
        "friendly_name": decl.spec.friendly_name,
        "description": decl.spec.description,
        "incremental": decl.spec.incremental,
        "incremental_export": decl.spec.incremental,
        "review_links": [str(u) for u in decl.spec.review.bugs],
        "files_uri": public_url(base_url, f"{prefix}/files"),
        "last_updated": public_url(base_url, f"{prefix}/last_updated"),
        "metadata_uri": public_url(base_url, f"{prefix}/metadata.json"),
        "owners": decl.spec.owners,
        "aggregation_level": decl.spec.policy.aggregation_level,
    }

    def add_entry(index):
        index = index if isinstance(index, dict) else {}
        index.setdefault(decl.dataset, {}).setdefault(decl.table, {})[f"v{decl.version}"] = entry
        return {ds: {t: dict(sorted(vs.items())) for t, vs in sorted(tables.items())} for ds, tables in sorted(index.items())}

    _update_json(store, INDEX_KEY, add_entry)
    for f in exported:
        store.delete(f.staged_key)
    return {"files": files, "rows": rows, "last_updated": last_updated,
            "metadata_url": public_url(base_url, f"{prefix}/metadata.json")}
