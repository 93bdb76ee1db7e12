"""The staged rows in their public formats, rendered by DuckDB and written as numbered parts.

Every warehouse hands export the staged rows as a DuckDB relation (Warehouse.export_source):
DuckDB's own staging table on the embedded stack, BigQuery's extracted Parquet shards in
production. DuckDB renders each row (to_json for JSON, its CSV quoting for CSV, Arrow batches for
Parquet), so the parts hold the bytes DuckDB's own COPY would write whatever the warehouse (but
for CSV text that a spreadsheet would run as a formula, which is neutralised), and Python writes
them a batch at a time (pubdata.publishing.parts): export memory stays flat.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import duckdb

from pubdata.errors import DataError, WarehouseError
from pubdata.publishing import parts
from pubdata.publishing.parts import Part
from pubdata.warehouses.base import ExportSource

EXPORT_MEMORY_ENV = "PUBDATA_EXPORT_MEMORY_LIMIT"
DEFAULT_EXPORT_MEMORY = "256MB"
_MEMORY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*$", re.IGNORECASE)




# A scan in stored order needs a block or two per column pinned, not a sort's worth of memory:
# its buffer pool starts at this size (at most the export limit) so the table's blocks do not
# pile up in memory as the scan goes; a table too wide for it is retried at the export limit.
SCAN_MEMORY_BASE = 8 * 2**20
SCAN_MEMORY_PER_COLUMN = 1 * 2**20
EXPORT_BATCH_ROWS = 8192
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
CSV_FORMULA_START = r"^[=+@\t\r-]"
"""RE2: the first characters that make a spreadsheet read a CSV cell as a formula (OWASP CSV injection)."""
# Types whose text never holds a comma, quote, newline or '#', so CSV never quotes them.
_CSV_PLAIN_TYPE = re.compile(
    r"^(BOOLEAN|U?(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT)|FLOAT|DOUBLE|DECIMAL\(\d+,\s*\d+\)|DATE|TIME|"
    r"TIMESTAMP(_S|_MS|_NS)?|TIMESTAMP WITH TIME ZONE|TIME WITH TIME ZONE)$"
)


def export_memory_limit() -> str:
    """How much memory DuckDB may use to sort a staged table for export (beyond it, it spills)."""
    value = os.environ.get(EXPORT_MEMORY_ENV) or DEFAULT_EXPORT_MEMORY
    if not _MEMORY_RE.match(value):
        raise WarehouseError(f"{EXPORT_MEMORY_ENV}={value!r} is not a memory size: use e.g. 256MB or 2GB")
    return value.strip()


def memory_bytes(size: str) -> int:
    """'256MB' -> 256000000, '1GiB' -> 1073741824: DuckDB's reading of a memory size."""
    match = _MEMORY_RE.match(size)
    if not match:
        raise WarehouseError(f"{size!r} is not a memory size: use e.g. 256MB or 2GB")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def write_parts(source: ExportSource, order_by: list[str], fmt: str, max_bytes: int, out_dir: Path, *,
                what: str) -> list[Part]:
    """Stream the rows of the source, ordered by order_by, into numbered parts of `fmt` in out_dir.

    A source already in that order is taken by a one-thread scan under a small buffer pool;
    otherwise the rows are sorted under the export memory limit, spilling to source.spill.
    """
    con, spill = source.con, source.spill
    relation = _published(source, order_by)
    in_order = source.ordered_by is not None and list(source.ordered_by) == list(order_by)
    sort_by = None if in_order else list(order_by)
    rel = con.sql(f"SELECT * FROM {relation}")
    columns, types = rel.columns, [str(t) for t in rel.types]
    cap_text = export_memory_limit()
    cap = memory_bytes(cap_text)
    # (memory limit, threads) to try in turn, the next one only after DuckDB ran out of memory.
    if sort_by is None:
        attempts = [(limit, 1) for limit in sorted({min(cap, SCAN_MEMORY_BASE + SCAN_MEMORY_PER_COLUMN * len(columns)), cap})]
    else:
        attempts = [(cap, 0), (cap, 1)]  # 0: DuckDB's thread count; one thread sorts in less memory
    query = _row_query(relation, columns, types, fmt, sort_by)
    for number, (limit, threads) in enumerate(attempts, start=1):
        shutil.rmtree(out_dir, ignore_errors=True)
        spill.mkdir(parents=True, exist_ok=True)
        # SET, not a connect option: every connection to a file in a process shares one config.
        con.execute(f"SET memory_limit = '{limit}B'")
        if con.execute("SELECT current_setting('temp_directory')").fetchall()[0][0] != str(spill):
            con.execute(f"SET temp_directory = '{_sql_str(spill)}'")  # DuckDB refuses to switch once used
        if threads:
            con.execute(f"SET threads = {threads}")
        try:
            reader = con.sql(query).to_arrow_reader(EXPORT_BATCH_ROWS)
            if fmt == "parquet":
                parquet = parts.ParquetParts(reader.schema, max_bytes, out_dir)
                for batch in reader:
                    parquet.add(batch)
                return parquet.finish()
            header = ",".join(parts.csv_field(c) for c in columns).encode("utf-8")
            text = parts.TextParts(fmt, max_bytes, out_dir, header=header)
            for batch in reader:
                text.add(batch.column(0))
            return text.finish()
        except (duckdb.Error, OSError) as exc:
            # Past the first batch DuckDB's errors reach us through Arrow, as OSError.
            if "Out of Memory Error" not in str(exc):
                raise WarehouseError(f"exporting {what} failed: {exc}") from exc
            if number == len(attempts):
                raise WarehouseError(
                    f"exporting {what} ran out of the {cap_text} DuckDB may use ({EXPORT_MEMORY_ENV}): "
                    f"raise it, e.g. {EXPORT_MEMORY_ENV}=1GB. DuckDB said: {str(exc).splitlines()[0]}"
                ) from exc
        finally:
            con.execute("RESET memory_limit")
            con.execute("RESET threads")
            shutil.rmtree(spill, ignore_errors=True)
    raise AssertionError("unreachable: the last memory limit either returns or raises")


def _row_query(relation: str, columns: list[str], types: list[str], fmt: str, sort_by: list[str] | None) -> str:
    """The SELECT that renders each row in `fmt` (one text column; Arrow columns for Parquet)."""
    ordering = f" ORDER BY {', '.join('r.' + _ident(c) for c in sort_by)}" if sort_by else ""
    if fmt == "json":
        return f"SELECT to_json(r)::VARCHAR || ',' || chr(10) AS row FROM {relation} AS r{ordering}"
    if fmt == "csv":
        fields = " || ',' || ".join(_csv_field_sql("r." + _ident(c), t) for c, t in zip(columns, types, strict=True))
        return f"SELECT {fields} || chr(10) AS row FROM {relation} AS r{ordering}"
    if fmt == "parquet":
        return f"SELECT * FROM {relation} AS r{ordering}"
    raise ValueError(f"export format {fmt!r} is not one of json, csv, parquet")


def _csv_field_sql(column: str, type_name: str) -> str:
    """SQL for one CSV field of a row, quoted as DuckDB's CSV writer quotes it (parts.csv_field).

    A text that a spreadsheet would run as a formula (it starts with =, +, -, @, a tab or a
    carriage return) gets a leading single quote, as OWASP advises for CSV exports: the cell
    then shows the text instead of computing it. Only text columns: numbers such as -5 stay numbers.
    """
    text = f"CAST({column} AS VARCHAR)"
    if _CSV_PLAIN_TYPE.match(type_name):
        return f"coalesce({text}, '')"
    if type_name == "VARCHAR":
        text = f"CASE WHEN regexp_matches({text}, '{CSV_FORMULA_START}') THEN chr(39) || {text} ELSE {text} END"
    return (f"CASE WHEN {column} IS NULL THEN '' "
            f"WHEN {text} = '' OR regexp_matches({text}, '[,\"\\r\\n#]') "
            f"THEN '\"' || replace({text}, '\"', '\"\"') || '\"' ELSE {text} END")


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_str(path: Path | str) -> str:
    return str(path).replace("'", "''")


def _published(source: ExportSource, columns: list[str]) -> str:
    """The source's published columns only: the pipeline's own columns of the staged table stay internal."""
    return f"(SELECT {', '.join(_ident(c) for c in columns)} FROM {source.relation})"


def published_types(source: ExportSource, columns: list[str]) -> list[str]:
    """The DuckDB type of each published column, in the order of columns."""
    return [str(t) for t in source.con.sql(f"SELECT * FROM {_published(source, columns)}").types]


def check_finite(source: ExportSource, columns: list[str], what: str) -> None:
    """Refuse rows holding NaN or an infinity: JSON cannot carry them and CSV readers misread them."""
    relation = _published(source, columns)
    rel = source.con.sql(f"SELECT * FROM {relation}")
    floats = [c for c, t in zip(rel.columns, rel.types, strict=True) if str(t) in ("FLOAT", "DOUBLE")]
    if not floats:
        return
    counts = ", ".join(f"count(*) FILTER (WHERE NOT isfinite({_ident(c)}))" for c in floats)
    found = source.con.execute(f"SELECT {counts} FROM {relation}").fetchone()
    bad = {c: n for c, n in zip(floats, found or (), strict=True) if n}
    if bad:
        listed = ", ".join(f"{c} ({n} row{'s' if n != 1 else ''})" for c, n in bad.items())
        raise DataError(f"{what}: NaN or infinity in {listed}, which JSON cannot carry: fix the query "
                        "(SAFE_DIVIDE, IFNULL) so every published number is finite")
