"""Export step: a validated staged table -> numbered files in the private staging store.

One route for every warehouse: the warehouse hands over the staged rows as a DuckDB relation
(Warehouse.export_source: its own staging table on the embedded stack; extracted Parquet shards
in production), and publishing.rows renders them, ordered by every declared column, into parts
of at most `export.max_file_bytes`. Parts are written under a private work directory, uploaded
to the staging store (PUBDATA_STAGING_BUCKET, never the public bucket) under
`exports/<table path>/<partition>/<run>/`, and publish copies them server-side into the public
layout; identical staged rows give identical files.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pubdata.declarations import Declaration
from pubdata.errors import StagedTableChanged, StoreError
from pubdata.publishing import parts, rows
from pubdata.stores.base import Store
from pubdata.warehouses.base import StagedTable, Warehouse

EXPORTS_PREFIX = "exports"


@dataclass(frozen=True)
class ExportedFile:
    name: str          # 000000000000.json
    format: str
    staged_key: str    # where export left it, in the staging store
    bytes: int         # uncompressed size, as a client receives it
    sha256: str        # of those bytes
    rows: int
    # The DuckDB type of each published column as rendered (publishing.rows): what reads the
    # rows back into the same values (an incremental table exported whole merges its days).
    column_types: list[str] | None = None


def partition_staging_prefix(decl: Declaration, partition: str | None) -> str:
    return f"{EXPORTS_PREFIX}/{decl.dataset_id.table_path}/{partition or 'full'}"


def staging_prefix(decl: Declaration, partition: str | None, run_key: str) -> str:
    return f"{partition_staging_prefix(decl, partition)}/{run_key}"


def export(decl: Declaration, warehouse: Warehouse, staged: StagedTable, staging: Store, run_key: str,
           work_root: Path | None = None, *, validated: str | None = None) -> list[ExportedFile]:
    """Write the staged rows as numbered files, in a deterministic order, to the staging store.

    Leftovers of earlier attempts for this partition (a killed run) are removed first: in the
    staging store, and under work_root (where parts are written before upload: one directory per
    dataset, as a DAG runs one export at a time) when given, else a temporary directory is used.
    validated: the fingerprint validation recorded; the rows are exported only if they still have
    it (checked while the export source is open: on DuckDB a read-only connection no writer can
    get past, on BigQuery after the extract).
    An export that fails removes what it uploaded before it raises (the staging bucket's
    lifecycle rule catches what a killed worker leaves).
    """
    prefix = staging_prefix(decl, staged.partition, run_key)
    for key in staging.list(partition_staging_prefix(decl, staged.partition) + "/"):
        staging.delete(key)
    order_by = list(decl.spec.policy.columns)
    out: list[ExportedFile] = []
    try:
        with _work_dir(work_root, decl) as work, warehouse.export_source(staged, work, staging, prefix) as source:
            if validated is not None:
                _same_as_validated(decl, warehouse, staged, validated)
            rows.check_finite(source, order_by, decl.id)
            types = rows.published_types(source, order_by)
            for fmt in decl.spec.export.formats:
                for part in rows.write_parts(source, order_by, fmt, decl.spec.export.max_file_bytes, work / fmt,
                                             what=decl.id):
                    key = f"{prefix}/{part.name}"
                    staging.upload_file(key, part.path, content_type=parts.CONTENT_TYPES[fmt],
                                        compress=parts.COMPRESSED[fmt])
                    out.append(ExportedFile(part.name, fmt, key, part.bytes, part.sha256, part.rows, types))
    except BaseException:
        discard(staging, out)
        raise
    return out


def _same_as_validated(decl: Declaration, warehouse: Warehouse, staged: StagedTable, validated: str) -> None:
    now = warehouse.fingerprint(staged)
    if now != validated:
        was, is_now = validated.split(":", 1)[0], now.split(":", 1)[0]
        raise StagedTableChanged(
            f"{decl.id}: the staged table {staged.table} changed after validation ({was} rows validated, {is_now} now; "
            f"fingerprint {validated} then, {now} now): refusing to export rows that were not validated. Find what "
            "wrote to the staging table, then run the DAG again (stage, validate, export)"
        )


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


def discard(staging: Store, exported: list[ExportedFile], *, strict: bool = False) -> None:
    """Remove staged files once they are published (or abandoned).

    Every file is tried; a failure is raised at the end when strict (publish's cleanup, which a
    retry repeats), else left behind: private leftovers are cleared by the next export of the
    partition, or by the staging bucket's lifecycle rule.
    """
    failed: StoreError | None = None
    for f in exported:
        try:
            staging.delete(f.staged_key)
        except StoreError as exc:
            failed = exc
    if strict and failed is not None:
        raise failed
