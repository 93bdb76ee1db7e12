"""An incremental table exported whole (incremental_export: false, Mozilla's default).

Each run stages, validates and exports one day; publish then merges that day's exported rows
into the table as it is published (the files the live listing names: rows that already passed
validation on their own day), replacing the day's earlier rows, and renders the whole table,
ordered by the partition field, as one new file set. The earlier days are read from the public
bucket, the one store every worker shares and the only one that holds exactly what was
published; the rows are read back with the DuckDB types they were rendered from, so each value
keeps its bytes. The layout and the switch are publishing.publish's.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import duckdb

from pubdata.declarations import Declaration
from pubdata.errors import DataError, StoreError
from pubdata.publishing import rows
from pubdata.publishing.export import ExportedFile
from pubdata.publishing.parts import Part
from pubdata.stores.base import Store
from pubdata.warehouses.base import ExportSource


@dataclass(frozen=True)
class Merged:
    parts: list[tuple[str, Part]]  # (format, part), in the declaration's format order
    days: dict[str, int]           # rows per partition of the whole table


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def merge(decl: Declaration, partition: str, exported: list[ExportedFile], base_keys: list[str], store: Store,
          staging: Store, work: Path) -> Merged:
    """The published table with `partition` replaced by the exported day, as numbered parts under work.

    base_keys: the JSON files the live listing names (the table as published); exported: the
    day's files in the staging store. The day's rows must all belong to the day: a row of
    another day would stand beside that day's own rows.
    """
    day = dt.date.fromisoformat(partition).isoformat()
    field = decl.spec.partition_field
    if field is None:
        raise ValueError(f"{decl.id} is incremental: it needs a partition_field")
    columns = list(decl.spec.policy.columns)
    day_files = [f for f in exported if f.format == "json"]
    if not day_files:
        raise ValueError(f"{decl.id}: nothing to publish: the export has no JSON file")
    types = day_files[0].column_types
    if not types or len(types) != len(columns):
        raise StoreError(f"{decl.id}: the export of {day} does not say how its columns were typed (an export made "
                         "before this version of pubdata): run export again (clear the export task)")
    (work / "day").mkdir(parents=True)
    (work / "base").mkdir()
    day_paths, base_paths = [], []
    for f in day_files:
        path = work / "day" / f.name
        try:
            staging.download_file(f.staged_key, path)
        except StoreError as exc:
            raise StoreError(f"{decl.id}: the staged file {f.staged_key} could not be read from {staging.url} ({exc}): "
                             "run export again (clear the export task)") from exc
        day_paths.append(path)
    for i, key in enumerate(base_keys):
        path = work / "base" / f"{i:06d}.json"
        try:
            store.download_file(key, path)
        except StoreError as exc:
            raise StoreError(f"{decl.id}: the published file {key} could not be read from {store.url} ({exc}): "
                             "another publish may have replaced it; run publish again") from exc
        base_paths.append(path)

    spec = "{" + ", ".join(f"{_literal(c)}: {_literal(t)}" for c, t in zip(columns, types, strict=True)) + "}"
    select = ", ".join(_ident(c) for c in columns)
    on_day = f"CAST({_ident(field)} AS DATE) = DATE '{day}'"

    def read(paths: list[Path]) -> str:
        files = "[" + ", ".join(_literal(str(p)) for p in paths) + "]"
        return f"(SELECT {select} FROM read_json({files}, format = 'array', columns = {spec}))"

    con = duckdb.connect(str(work / "merge.duckdb"), config={"threads": 1, "memory_limit": rows.export_memory_limit()})
    try:
        con.execute(f"CREATE TABLE day AS SELECT * FROM {read(day_paths)}")
        strays = (con.execute(f"SELECT count(*) FROM day WHERE NOT coalesce({on_day}, false)").fetchone() or (0,))[0]
        if strays:
            raise DataError(f"{decl.id}: {strays} exported row(s) of {day} hold another {field} (or none): a day's run "
                            f"may publish only that day's rows; make the query filter {field} = @submission_date")
        base = f"SELECT * FROM {read(base_paths)} WHERE NOT coalesce({on_day}, false)" if base_paths else None
        con.execute("CREATE TABLE merged AS SELECT * FROM day" + (f" UNION ALL {base}" if base else ""))
        found = con.execute(f"SELECT strftime(CAST({_ident(field)} AS DATE), '%Y-%m-%d'), count(*) FROM merged "
                            "GROUP BY 1 ORDER BY 1").fetchall()
        days = {str(d): int(n) for d, n in found if d is not None}
        days.setdefault(day, 0)
        order_by = [field] + [c for c in columns if c != field]
        source = ExportSource(con=con, relation="merged", ordered_by=None, spill=work / "spill")
        out: list[tuple[str, Part]] = []
        for fmt in decl.spec.export.formats:
            out += [(fmt, p) for p in rows.write_parts(source, order_by, fmt, decl.spec.export.max_file_bytes,
                                                       work / "out" / fmt, what=decl.id)]
    except duckdb.Error as exc:
        raise StoreError(f"{decl.id}: merging {day} into the published table failed: {exc}") from exc
    finally:
        con.close()
    return Merged(out, dict(sorted(days.items())))
