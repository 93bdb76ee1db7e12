"""Export step: a validated staged table -> numbered public files under the bucket's staging prefix.

Two routes lead to the same files:

- embedded (and any warehouse/store pair but the one below): the warehouse writes the staged
  rows, ordered by every declared column, as numbered parts of at most `export.max_file_bytes`
  (Warehouse.write_parts). DuckDB streams them a batch at a time, and a table it staged in that
  order already is scanned rather than sorted, so export memory does not grow with the data.
- production (BigQuery warehouse, GCS bucket): an extract job writes the staged partition to
  `<staging prefix>/extract/` as Parquet, so no rows pass through the BigQuery API. Extract
  output has no defined row order and arbitrary shard boundaries, so the shards are downloaded
  and DuckDB sorts them by every declared column (under the export memory limit, spilling)
  into the same parts. Parquet keeps BigQuery's types exactly (JSON extracts would turn INT64
  into strings).

Either way the parts land under `_staging/<table path>/<partition>/<run>/` and publish copies them
into the public layout; identical staged rows give identical files.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pubdata import formats
from pubdata.declaration import Declaration
from pubdata.stores.base import Store, StoreError
from pubdata.warehouses.base import StagedTable, Warehouse, WarehouseError

STAGING_PREFIX = "_staging"


@dataclass(frozen=True)
class ExportedFile:
    name: str          # 000000000000.json
    format: str
    staged_key: str    # where export left it
    bytes: int         # uncompressed size, as a client receives it
    sha256: str        # of those bytes
    rows: int


def partition_staging_prefix(decl: Declaration, partition: str | None) -> str:
    return f"{STAGING_PREFIX}/{decl.table_path}/{partition or 'full'}"


def staging_prefix(decl: Declaration, partition: str | None, run_key: str) -> str:
    return f"{partition_staging_prefix(decl, partition)}/{run_key}"


def uses_extract(warehouse: Warehouse, store: Store) -> bool:
    """The production route: BigQuery exports straight into the GCS bucket."""
    from pubdata.stores.gcs import GCSStore  # no google import: GCSStore loads clients lazily

    return warehouse.engine == "bigquery" and isinstance(store, GCSStore)


def export(decl: Declaration, warehouse: Warehouse, staged: StagedTable, store: Store, run_key: str,
           work_root: Path | None = None) -> list[ExportedFile]:
    """Write the staged rows as numbered files, in a deterministic order, to the staging prefix.

    Leftovers of earlier attempts for this partition (a killed run) are removed first: in the
    bucket, and under work_root (where parts are written before upload: one directory per
    dataset, as a DAG runs one export at a time) when given, else a temporary directory is used.
    """
    prefix = staging_prefix(decl, staged.partition, run_key)
    for key in store.list(partition_staging_prefix(decl, staged.partition) + "/"):
        store.delete(key)
    with _work_dir(work_root, decl) as work:
        return _export(decl, warehouse, staged, store, prefix, work)


@contextlib.contextmanager
def _work_dir(work_root: Path | None, decl: Declaration) -> Iterator[Path]:
    if work_root is None:
        with tempfile.TemporaryDirectory(prefix="pubdata-export-") as tmp:
            yield Path(tmp)
        return
    work = Path(work_root) / decl.id
    shutil.rmtree(work, ignore_errors=True)  # a killed export's parts: as large as the export
    work.mkdir(parents=True)
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _export(decl: Declaration, warehouse: Warehouse, staged: StagedTable, store: Store, prefix: str,
            work: Path) -> list[ExportedFile]:
    order_by = list(decl.spec.policy.columns)
    max_bytes = decl.spec.export.max_file_bytes
    shards = _extract(decl, warehouse, staged, store, prefix, work) if uses_extract(warehouse, store) else None
    out = []
    for fmt in decl.spec.export.formats:
        if shards is None:
            parts = warehouse.write_parts(staged, order_by, fmt, max_bytes, work / fmt)
        else:
            parts = _sort_shards(decl, shards, order_by, fmt, max_bytes, work)
        for part in parts:
            key = f"{prefix}/{part.name}"
            store.upload_file(key, part.path, content_type=formats.CONTENT_TYPES[fmt], compress=formats.COMPRESSED[fmt])
            out.append(ExportedFile(part.name, fmt, key, part.bytes, part.sha256, part.rows))
    return out


def _extract(decl: Declaration, warehouse, staged: StagedTable, store: Store, prefix: str, work: Path) -> list[Path]:
    """Extract job -> Parquet shards in the bucket -> local shard files (the bucket's copies removed)."""
    extract_prefix = f"{prefix}/extract/"
    warehouse.extract_to_gcs(staged, f"{store.url}/{extract_prefix}part-*.parquet", fmt="parquet")
    shards = [k for k in store.list(extract_prefix) if k.endswith(".parquet")]
    if not shards:
        raise WarehouseError(
            f"the extract job for {decl.id} ({staged.partition or 'full table'}) wrote no files under "
            f"{store.url}/{extract_prefix}: check that the BigQuery service account may write to the bucket "
            "(roles/storage.objectAdmin)"
        )
    local = []
    for i, key in enumerate(shards):
        path = work / "shards" / f"{i:06d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        store.download_file(key, path)
        local.append(path)
    for key in shards:
        store.delete(key)
    return local


def _sort_shards(decl: Declaration, shards: list[Path], order_by: list[str], fmt: str, max_bytes: int,
                 work: Path) -> list[formats.Part]:
    """The extracted rows, sorted by DuckDB, as parts (the same writer as the embedded route)."""
    import duckdb

    from pubdata.warehouses.duckdb import write_parts

    files = "[" + ", ".join(_sql_str(p) for p in shards) + "]"
    con = duckdb.connect()
    try:
        return write_parts(con, f"read_parquet({files})", order_by, fmt, max_bytes, work / fmt,
                           spill=work / "spill", what=f"the extracted rows of {decl.id}")
    finally:
        con.close()


def discard(store: Store, exported: list[ExportedFile]) -> None:
    """Remove staged files once they are published (or abandoned)."""
    for f in exported:
        try:
            store.delete(f.staged_key)
        except StoreError:
            pass  # internal leftovers are cleared by the next export of the partition


def _sql_str(value: Path | str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


__all__ = ["ExportedFile", "STAGING_PREFIX", "discard", "export", "staging_prefix", "uses_extract"]
