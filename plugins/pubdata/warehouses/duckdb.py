"""The embedded warehouse: DuckDB, running reviewed BigQuery SQL through sqlglot.

The source file holds the production tables under their dataset schemas (telemetry.clients_daily);
it is only ever attached READ_ONLY, so any number of runs can read it at once. Each dataset stages
into its own DuckDB file (one writer per file), one table per partition. Query parameters stay
parameters: sqlglot turns BigQuery's @name into DuckDB's $name and the values are bound by DuckDB.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import sqlglot
from sqlglot import exp

from pubdata.warehouses.base import Column, QueryError, StagedTable, Warehouse, WarehouseError

if TYPE_CHECKING:
    from pubdata.formats import Part

SOURCE_ALIAS = "source"
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


def write_parts(con: duckdb.DuckDBPyConnection, relation: str, order_by: list[str] | None, fmt: str,
                max_bytes: int, out_dir: Path, *, spill: Path, what: str) -> list[Part]:
    """Stream the rows of `relation` (a table, or a table function over files) into numbered parts.

    With order_by the rows are sorted under the export memory limit, spilling to `spill`; with
    None they are taken in stored order by a one-thread scan. DuckDB renders every row (to_json
    for JSON, its CSV quoting for CSV, Arrow batches for Parquet), so the parts hold the bytes
    its own COPY would write, and Python writes them a batch at a time (pubdata.formats).
    """
    from pubdata import formats

    rel = con.sql(f"SELECT * FROM {relation}")
    columns, types = rel.columns, [str(t) for t in rel.types]
    cap_text = export_memory_limit()
    cap = memory_bytes(cap_text)
    # (memory limit, threads) to try in turn, the next one only after DuckDB ran out of memory.
    if order_by is None:
        attempts = [(limit, 1) for limit in sorted({min(cap, SCAN_MEMORY_BASE + SCAN_MEMORY_PER_COLUMN * len(columns)), cap})]
    else:
        attempts = [(cap, 0), (cap, 1)]  # 0: DuckDB's thread count; one thread sorts in less memory
    ordering = f" ORDER BY {', '.join('r.' + _ident(c) for c in order_by)}" if order_by else ""
    if fmt == "json":
        query = f"SELECT to_json(r)::VARCHAR || ',' || chr(10) AS row FROM {relation} AS r{ordering}"
    elif fmt == "csv":
        fields = " || ',' || ".join(_csv_field_sql("r." + _ident(c), t) for c, t in zip(columns, types, strict=True))
        query = f"SELECT {fields} || chr(10) AS row FROM {relation} AS r{ordering}"
    elif fmt == "parquet":
        query = f"SELECT * FROM {relation} AS r{ordering}"
    else:
        raise WarehouseError(f"export format {fmt!r} is not one of json, csv, parquet")
    for number, (limit, threads) in enumerate(attempts, start=1):
        shutil.rmtree(out_dir, ignore_errors=True)
        spill.mkdir(parents=True, exist_ok=True)
        # SET, not a connect option: every connection to a file in a process shares one config.
        con.execute(f"SET memory_limit = '{limit}B'")
        if con.execute("SELECT current_setting('temp_directory')").fetchone()[0] != str(spill):
            con.execute(f"SET temp_directory = '{_sql_str(spill)}'")  # DuckDB refuses to switch once used
        if threads:
            con.execute(f"SET threads = {threads}")
        try:
            reader = con.sql(query).to_arrow_reader(EXPORT_BATCH_ROWS)
            if fmt == "parquet":
                writer = formats.ParquetParts(reader.schema, max_bytes, out_dir)
                for batch in reader:
                    writer.add(batch)
            else:
                header = ",".join(formats.csv_field(c) for c in columns).encode("utf-8")
                writer = formats.TextParts(fmt, max_bytes, out_dir, header=header)
                for batch in reader:
                    writer.add(batch.column(0))
            return writer.finish()
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


def _csv_field_sql(column: str, type_name: str) -> str:
    """SQL for one CSV field of a row, quoted as DuckDB's CSV writer quotes it (formats.csv_field)."""
    text = f"CAST({column} AS VARCHAR)"
    if _CSV_PLAIN_TYPE.match(type_name):
        return f"coalesce({text}, '')"
    return (f"CASE WHEN {column} IS NULL THEN '' "
            f"WHEN {text} = '' OR regexp_matches({text}, '[,\"\\r\\n#]') "
            f"THEN '\"' || replace({text}, '\"', '\"\"') || '\"' ELSE {text} END")


def transpile(query: str) -> str:
    """BigQuery Standard SQL -> DuckDB SQL, with every project-qualified table read from the source.

    `moz-fx-data-shared-prod.telemetry.clients_daily` and `telemetry.clients_daily` both resolve to
    source.telemetry.clients_daily; CTE names are left alone.
    """
    try:
        statements = sqlglot.parse(query, read="bigquery")
    except sqlglot.errors.ParseError as exc:
        raise QueryError(f"the reviewed query does not parse as BigQuery SQL: {exc}") from None
    statements = [s for s in statements if s is not None]
    if len(statements) != 1:
        raise QueryError(f"the reviewed query must be exactly one SELECT statement, found {len(statements)}")
    tree = statements[0]
    if not isinstance(tree, exp.Query):
        raise QueryError(f"the reviewed query must be a SELECT, found {tree.key.upper()}")
    cte_names = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    for table in tree.find_all(exp.Table):
        if not table.name or (not table.args.get("db") and table.name in cte_names):
            continue
        if table.args.get("db"):
            table.set("catalog", exp.to_identifier(SOURCE_ALIAS))
    return tree.sql(dialect="duckdb")


def _param(value: Any) -> Any:
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return dt.date.fromisoformat(value)
    return value


@lru_cache(maxsize=1)
def _gx_datasource_type():
    """A GX SQL datasource whose engine keeps one connection for the whole validation.

    Stock GX returns each pooled connection before it fetches the result; DuckDB then discards
    the pending result and GX fails with IndexError. Keeping the connection (as GX already does
    for SQLite and BigQuery) makes every SQL expectation really evaluate in DuckDB.
    """
    from typing import Literal

    from great_expectations.datasource.fluent import SQLDatasource
    from great_expectations.execution_engine import SqlAlchemyExecutionEngine

    class DuckDBExecutionEngine(SqlAlchemyExecutionEngine):
        @contextmanager
        def get_connection(self):
            if getattr(self, "_connection", None) is None:
                self._connection = self.engine.connect()
            try:
                yield self._connection
            except Exception:
                # A failed query aborts DuckDB's transaction; without a rollback every later
                # expectation on this connection would fail too, hiding which one was broken.
                self._connection.rollback()
                raise

    class DuckDBDatasource(SQLDatasource):
        type: Literal["pubdata_duckdb"] = "pubdata_duckdb"  # type: ignore[assignment]

        @property
        def execution_engine_type(self):
            return DuckDBExecutionEngine

    DuckDBDatasource.__module__ = __name__
    return DuckDBDatasource


class DuckDBWarehouse(Warehouse):
    engine = "duckdb"

    def __init__(self, source: Path, staging_dir: Path):
        self.source = Path(source)
        self.staging_dir = Path(staging_dir)

    @classmethod
    def from_url(cls, url: str, *, home: Path | None = None) -> DuckDBWarehouse:
        raw = url[len("duckdb://"):]
        path = Path(raw[1:] if raw.startswith("//") else raw)  # duckdb:///abs and duckdb:////abs alike
        staging = Path(home) / "internal" / "staging" if home else path.parent / "staging"
        return cls(path, staging)

    # -- connections -------------------------------------------------------------------------

    def staging_file(self, dataset_id: str) -> Path:
        return self.staging_dir / f"{dataset_id}.duckdb"

    @contextmanager
    def _connect(self, dataset_id: str, *, read_only: bool, attach_source: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        path = self.staging_file(dataset_id)
        if read_only and not path.exists():
            raise WarehouseError(f"no staged data for {dataset_id} at {path}: run the stage task first")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # One configuration for every connection to a staging file: DuckDB refuses a second
            # connection with a different one in the same process (Airflow `dags test` runs all
            # tasks in one process, and GX may still hold its connection). read_only is enforced
            # by what each method does, the source warehouse is attached READ_ONLY.
            con = duckdb.connect(str(path))
        except duckdb.Error as exc:
            raise WarehouseError(f"cannot open staging database {path}: {exc}") from exc
        try:
            if attach_source:
                if not self.source.is_file():
                    raise WarehouseError(
                        f"source warehouse {self.source} does not exist: run `pubdata synth` to generate the "
                        "synthetic tables, or point PUBDATA_WAREHOUSE at a DuckDB file"
                    )
                con.execute(f"ATTACH '{_sql_str(self.source)}' AS {SOURCE_ALIAS} (READ_ONLY)")
            yield con
        finally:
            con.close()

    @staticmethod
    def _table(staged: StagedTable) -> str:
        return '"' + staged.table.replace('"', '""') + '"'

    # -- Warehouse ---------------------------------------------------------------------------

    def stage(self, dataset_id, query, params, partition, *, partition_field=None, order_by=None) -> StagedTable:
        sql = transpile(query)
        table = f"stage_{partition.strftime('%Y%m%d')}" if partition else "stage_full"
        staged = StagedTable(dataset_id, str(self.staging_file(dataset_id)), table, partition.isoformat() if partition else None)
        bound = {k: _param(v) for k, v in params.items()}
        used = set(re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", sql))
        missing = used - bound.keys()
        if missing:
            raise QueryError(f"the reviewed query uses parameter(s) {', '.join('@' + m for m in sorted(missing))} that are not provided; declare them under params:")
        bound = {k: v for k, v in bound.items() if k in used}
        with self._connect(dataset_id, read_only=False, attach_source=True) as con:
            try:
                # Stored in export order (DuckDB keeps a table's insertion order), so export is a
                # scan rather than a sort. Declared columns the query lacks are left to validation.
                present = set(con.sql(sql, params=bound).columns) if order_by else set()
                ordered = tuple(c for c in order_by or () if c in present)
                ordering = f" ORDER BY {', '.join(_ident(c) for c in ordered)}" if ordered else ""
                con.execute(f"CREATE OR REPLACE TABLE {self._table(staged)} AS SELECT * FROM (\n{sql}\n) AS q{ordering}", bound)
            except (duckdb.ParserException, duckdb.BinderException, duckdb.CatalogException, duckdb.ConversionException) as exc:
                raise QueryError(f"the reviewed query failed in DuckDB: {exc}") from None
            except duckdb.Error as exc:
                raise WarehouseError(f"staging {dataset_id} failed: {exc}") from exc
        return dataclasses.replace(staged, ordered_by=ordered or None)

    def columns(self, staged):
        with self._connect(staged.dataset_id, read_only=True, attach_source=False) as con:
            rows = con.execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position",
                [staged.table],
            ).fetchall()
        if not rows:
            raise WarehouseError(f"staged table {staged.table} not found in {staged.location}")
        return [Column(n, t) for n, t in rows]

    def scalar(self, staged, sql):
        with self._connect(staged.dataset_id, read_only=True, attach_source=False) as con:
            return con.execute(sql.format(table=self._table(staged))).fetchone()[0]

    def gx_batch(self, context, staged):
        _gx_datasource_type()  # registers context.data_sources.add_or_update_pubdata_duckdb
        name = f"staged_{staged.dataset_id.replace('.', '_')}"
        datasource = context.data_sources.add_or_update_pubdata_duckdb(
            name=name, connection_string=f"duckdb:///{staged.location}",
        )
        asset = datasource.add_table_asset(name=staged.table, table_name=staged.table)
        return asset.add_batch_definition_whole_table("whole").get_batch()

    def export(self, staged, dest: Path, order_by: list[str], fmt: str = "json") -> int:
        columns = ", ".join(_ident(c) for c in order_by)
        options = {
            "json": "FORMAT json, ARRAY true",
            "csv": "FORMAT csv, HEADER true",
            "parquet": "FORMAT parquet, COMPRESSION zstd",
        }[fmt]
        dest.parent.mkdir(parents=True, exist_ok=True)
        limit = export_memory_limit()
        spill = self.staging_dir / ".spill" / staged.dataset_id
        spill.mkdir(parents=True, exist_ok=True)
        with self._connect(staged.dataset_id, read_only=True, attach_source=False) as con:
            # The ORDER BY is the one step whose memory grows with the data: cap it so DuckDB
            # sorts out of core (spilling under the staging directory) and export streams.
            # SET, not a connect option: every connection to this file must share one config.
            con.execute(f"SET memory_limit = '{_sql_str(limit)}'")
            con.execute(f"SET temp_directory = '{_sql_str(spill)}'")
            try:
                con.execute(
                    f"COPY (SELECT * FROM {self._table(staged)} ORDER BY {columns}) TO '{_sql_str(dest)}' ({options})"
                )
            except duckdb.OutOfMemoryException as exc:
                raise WarehouseError(
                    f"exporting {staged.dataset_id} ran out of the {limit} DuckDB may use ({EXPORT_MEMORY_ENV}): "
                    f"raise it, e.g. {EXPORT_MEMORY_ENV}=1GB. DuckDB said: {str(exc).splitlines()[0]}"
                ) from exc
            finally:
                con.execute("RESET memory_limit")
                shutil.rmtree(spill, ignore_errors=True)
            return con.execute(f"SELECT count(*) FROM {self._table(staged)}").fetchone()[0]

    def write_parts(self, staged, order_by, fmt, max_bytes, out_dir):
        """Stream the staged rows into parts; a table staged in this order is scanned, not sorted."""
        in_order = staged.ordered_by is not None and list(staged.ordered_by) == list(order_by)
        spill = self.staging_dir / ".spill" / staged.dataset_id
        with self._connect(staged.dataset_id, read_only=True, attach_source=False) as con:
            return write_parts(con, self._table(staged), None if in_order else list(order_by), fmt, max_bytes,
                               Path(out_dir), spill=spill, what=staged.dataset_id)

    def drop(self, staged):
        with contextlib.suppress(WarehouseError):
            with self._connect(staged.dataset_id, read_only=False, attach_source=False) as con:
                con.execute(f"DROP TABLE IF EXISTS {self._table(staged)}")

    def exists(self, staged) -> bool:
        try:
            with self._connect(staged.dataset_id, read_only=True, attach_source=False) as con:
                return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [staged.table]).fetchone()[0])
        except WarehouseError:
            return False


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_str(path: Path | str) -> str:
    return str(path).replace("'", "''")
