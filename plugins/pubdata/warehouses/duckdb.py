"""The embedded warehouse: DuckDB, running reviewed BigQuery SQL through sqlglot.

The source file holds the production tables under their dataset schemas (telemetry.clients_daily);
it is only ever attached READ_ONLY, so any number of runs can read it at once. Each dataset stages
into its own DuckDB file (one writer per file), one table per partition, under the staging
directory: PUBDATA_HOME/internal/staging by default, or the one the URL names
(`duckdb:///path/warehouse.duckdb?staging_dir=/shared/staging`) when tasks run on several
workers, each with its own home, that share the warehouse. Query parameters stay parameters:
sqlglot turns BigQuery's @name into DuckDB's $name and the values are bound by DuckDB.

Every connection that runs a reviewed query or an expectation is sandboxed (README, "What the
embedded engine allows"): once the source is attached, external access is off (no file, URL,
ATTACH, COPY or extension), no extension loads, and the configuration is locked, so it reads the
warehouse's own tables and nothing else. Validation and export open the staging file read-only;
Great Expectations gets its connections from the same function, so they are sandboxed alike (and,
as DuckDB requires of connections to one file in one process, configured alike).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import duckdb
import sqlglot
from sqlglot import exp

from pubdata.errors import ConfigurationError, QueryError, WarehouseError
from pubdata.warehouses.base import STAGED, Column, ExportSource, JobScope, StagedTable, Warehouse
from pubdata.warehouses.duckdb_dialect import BigQueryOnDuckDB, prepare
from pubdata.warehouses.duckdb_routines import create_statements

if TYPE_CHECKING:
    from pubdata.stores.base import Store

SOURCE_ALIAS = "source"
SANDBOX_CONFIG: dict[str, Any] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
}
"""Set when a connection opens (DuckDB takes these only then); the rest of the sandbox follows the ATTACH."""
TUNABLE_SETTINGS = ("memory_limit", "threads")
"""What may still be SET once the configuration is locked: export sizes its buffer pool per attempt."""
SANDBOX_REFUSAL = (
    "the embedded warehouse reads only its own tables: no files, URLs, ATTACH, COPY, extensions or "
    "settings"
)
PARTITION_COLUMNS = ("submission_date", "submission_timestamp")
"""The day partitioning columns of Mozilla's tables, as the synthetic source tables reproduce them."""


def transpile(query: str, materialize: tuple[str, ...] = ()) -> str:
    """BigQuery Standard SQL -> DuckDB SQL, with every project-qualified table read from the source.

    `moz-fx-data-shared-prod.telemetry.clients_daily` and `telemetry.clients_daily` both resolve to
    source.telemetry.clients_daily; CTE names are left alone. CTEs named in `materialize` are
    computed once (AS MATERIALIZED) however often the query reads them.
    """
    tree = _parse_bigquery(query)
    for cte in tree.find_all(exp.CTE):
        if cte.alias_or_name in materialize:
            cte.set("materialized", True)
    return _to_duckdb(tree)


def _parse_bigquery(query: str) -> exp.Query:
    try:
        statements = sqlglot.parse(query, read="bigquery")
    except sqlglot.errors.ParseError as exc:
        raise QueryError(f"the reviewed query does not parse as BigQuery SQL: {exc}") from None
    statements = [s for s in statements if s is not None]
    if len(statements) != 1:
        raise QueryError(f"the reviewed query must be exactly one SELECT statement, found {len(statements)}")
    tree = statements[0]
    if not isinstance(tree, exp.Query):
        raise QueryError(f"the reviewed query must be a SELECT, found {tree.key.upper() if tree else 'nothing'}")
    return tree


def _to_duckdb(tree: exp.Query) -> str:
    cte_names = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    for table in tree.find_all(exp.Table):
        if not table.name or (not table.args.get("db") and table.name in cte_names):
            continue
        if table.args.get("db"):
            table.set("catalog", exp.to_identifier(SOURCE_ALIAS))
    return prepare(tree).sql(dialect=BigQueryOnDuckDB)


def _bind(sql: str, params: dict[str, Any]) -> dict[str, Any]:
    """The parameters the DuckDB statement uses, as DuckDB values; QueryError naming any missing."""
    bound = {k: _param(v) for k, v in params.items()}
    used = set(re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", sql))
    missing = used - bound.keys()
    if missing:
        raise QueryError(f"the reviewed query uses parameter(s) {', '.join('@' + m for m in sorted(missing))} that are "
                         "not provided; declare them under params:")
    return {k: v for k, v in bound.items() if k in used}


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
                if self._connection is not None:
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
    SQL_DIALECT = "duckdb"
    FINGERPRINT = ("SELECT count(*) || ':' || coalesce(bit_xor(h), 0) || ':' || coalesce(sum(h::HUGEINT), 0) "
                   "FROM (SELECT hash(r) AS h FROM {table} AS r)")
    STRING_TYPE = "VARCHAR"
    REGEX_CONTAINS = "regexp_matches({expression}, '{pattern}')"
    TYPE_FAMILIES = {
        "date": frozenset({"DATE"}),
        "timestamp": frozenset({"TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS", "TIMESTAMP WITH TIME ZONE",
                                "TIMESTAMPTZ", "DATETIME"}),
        "time": frozenset({"TIME", "TIME WITH TIME ZONE"}),
        "string": frozenset({"VARCHAR", "TEXT"}),
        "boolean": frozenset({"BOOLEAN"}),
        "integer": frozenset({"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT",
                              "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT"}),
        "fractional": frozenset({"FLOAT", "DOUBLE", "DECIMAL", "REAL"}),
        "object": frozenset({"STRUCT", "MAP", "JSON"}),
    }

    @staticmethod
    def quote(name: str) -> str:
        return _ident(name)


    @classmethod
    def type_family(cls, type_name: str) -> str:
        if type_name.strip().endswith("[]"):
            return "array"
        return super().type_family(type_name)

    def __init__(self, source: Path, staging_dir: Path):
        self.source = Path(source)
        self.staging_dir = Path(staging_dir)

    @classmethod
    def from_url(cls, url: str, *, home: Path | None = None, scope: JobScope | None = None) -> DuckDBWarehouse:
        """`duckdb:///path/file.duckdb[?staging_dir=/dir]`; scope (limits, run) means nothing to DuckDB."""
        raw, _, query = url[len("duckdb://"):].partition("?")
        path = Path(raw[1:] if raw.startswith("//") else raw)  # duckdb:///abs and duckdb:////abs alike
        options = dict(parse_qsl(query, keep_blank_values=True))
        unknown = sorted(set(options) - {"staging_dir"})
        if unknown:
            raise ConfigurationError(f"PUBDATA_WAREHOUSE={url!r}: unknown option {unknown[0]!r}; known: staging_dir")
        if options.get("staging_dir"):
            staging = Path(options["staging_dir"])
        else:
            staging = Path(home) / "internal" / "staging" if home else path.parent / "staging"
        return cls(path, staging)

    # -- connections -------------------------------------------------------------------------

    def staging_file(self, dataset_id: str) -> Path:
        return self.staging_dir / f"{dataset_id}.duckdb"

    def spill_dir(self, dataset_id: str) -> Path:
        """Where DuckDB may spill a sort or a join of this dataset (its temp_directory)."""
        return self.staging_dir / ".spill" / dataset_id

    def _open(self, dataset_id: str, *, read_only: bool, attach_source: bool) -> duckdb.DuckDBPyConnection:
        """A sandboxed connection to the dataset's staging file (read-only for validation and export)."""
        path = self.staging_file(dataset_id)
        if read_only and not path.exists():
            raise WarehouseError(f"no staged data for {dataset_id} at {path}: run the stage task first")
        if attach_source and not self.source.is_file():
            raise WarehouseError(
                f"source warehouse {self.source} does not exist: run `pubdata synth` to generate the "
                "synthetic tables, or point PUBDATA_WAREHOUSE at a DuckDB file"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        self.spill_dir(dataset_id).parent.mkdir(parents=True, exist_ok=True)  # DuckDB makes the last level only
        # One configuration for every connection to a staging file: DuckDB refuses a second
        # connection with a different one in the same process (Airflow `dags test` runs all tasks
        # in one process, and GX may still hold its connection). The temp directory is part of
        # it, as it cannot be changed once external access is off.
        config = {**SANDBOX_CONFIG, "temp_directory": str(self.spill_dir(dataset_id))}
        try:
            con = duckdb.connect(str(path), read_only=read_only, config=config)
        except duckdb.Error as exc:
            raise WarehouseError(f"cannot open staging database {path}: {exc}") from exc
        try:
            self._lock_down(con, attach_source)
            if attach_source:  # runs a reviewed query: Mozilla's functions, for this connection only (~18 ms)
                for statement in create_statements():
                    con.execute(statement)
        except BaseException:
            con.close()
            raise
        return con

    def _lock_down(self, con: duckdb.DuckDBPyConnection, attach_source: bool) -> None:
        """Attach the source if asked, then turn external access off and lock the configuration.

        Settings belong to the database instance, which every connection to the file in this
        process shares: the first connection locks it, later ones find it locked.
        """
        if not _setting(con, "lock_configuration"):
            if attach_source:
                con.execute(f"ATTACH '{_sql_str(self.source)}' AS {SOURCE_ALIAS} (READ_ONLY)")
            con.execute("SET enable_external_access = false")
            con.execute(f"SET allowed_configs = [{', '.join(repr(s) for s in TUNABLE_SETTINGS)}]")
            con.execute("SET lock_configuration = true")
        elif attach_source and not con.execute("SELECT count(*) FROM duckdb_databases() WHERE database_name = ?",
                                                [SOURCE_ALIAS]).fetchall()[0][0]:
            raise WarehouseError("the staging database is already open in this process without the source "
                                 "warehouse attached: close it (finish the other task) and stage again")
        if _setting(con, "enable_external_access") or not _setting(con, "lock_configuration"):
            raise WarehouseError("the embedded warehouse could not be sandboxed: refusing to run queries on it")

    @contextmanager
    def _connect(self, dataset_id: str, *, read_only: bool, attach_source: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        con = self._open(dataset_id, read_only=read_only, attach_source=attach_source)
        try:
            yield con
        finally:
            con.close()

    def _gx_connection(self, dataset_id: str) -> Any:
        """The DB-API connection GX's engines use (their `creator`): ours, read-only and sandboxed."""
        from duckdb_engine import ConnectionWrapper

        return ConnectionWrapper(self._open(dataset_id, read_only=True, attach_source=False))

    @staticmethod
    def _table(staged: StagedTable) -> str:
        return '"' + staged.table.replace('"', '""') + '"'

    # -- Warehouse ---------------------------------------------------------------------------

    def stage_query(self, dataset_id, plan, params, partition, *, partition_field=None, order_by=None) -> StagedTable:
        sql = transpile(plan.query, materialize=plan.materialize)
        table = f"stage_{partition.strftime('%Y%m%d')}" if partition else "stage_full"
        staged = StagedTable(dataset_id, str(self.staging_file(dataset_id)), table, partition.isoformat() if partition else None)
        bound = _bind(sql, params)
        with self._connect(dataset_id, read_only=False, attach_source=True) as con:
            try:
                # Stored in export order (DuckDB keeps a table's insertion order), so export is a
                # scan rather than a sort. Declared columns the query lacks are left to validation.
                present = set(con.sql(sql, params=bound).columns) if order_by else set()
                ordered = tuple(c for c in order_by or () if c in present)
                ordering = f" ORDER BY {', '.join(_ident(c) for c in ordered)}" if ordered else ""
                con.execute(f"CREATE OR REPLACE TABLE {self._table(staged)} AS SELECT * FROM (\n{sql}\n) AS q{ordering}", bound)
            except duckdb.PermissionException as exc:
                raise QueryError(f"the reviewed query reaches outside the warehouse, which DuckDB refused "
                                 f"({str(exc).splitlines()[0]}): {SANDBOX_REFUSAL}. Read production tables "
                                 "by name (`project.dataset.table`)") from None
            except duckdb.CatalogException as exc:
                missing = self.missing_sources(_source_tables(plan.query))
                if missing:
                    raise QueryError("the reviewed query reads " + "; ".join(missing.values())) from None
                raise QueryError(f"the reviewed query failed in DuckDB: {exc}") from None
            except (duckdb.ParserException, duckdb.BinderException, duckdb.ConversionException) as exc:
                raise QueryError(f"the reviewed query failed in DuckDB: {exc}") from None
            except duckdb.Error as exc:
                raise WarehouseError(f"staging {dataset_id} failed: {exc}") from exc
        return dataclasses.replace(staged, ordered_by=ordered or None)

    def side(self, staged: StagedTable, name: str) -> StagedTable:
        return dataclasses.replace(staged, table=f"{staged.table}__{name}", ordered_by=None)

    def write_side(self, staged: StagedTable, name: str, sql: str, params: dict[str, Any]) -> StagedTable:
        side = self.side(staged, name)
        tree = _parse_bigquery(sql)
        for table in tree.find_all(exp.Table):
            if table.name == STAGED and not table.args.get("db"):
                table.set("this", exp.to_identifier(staged.table, quoted=True))
        text = _to_duckdb(tree)
        bound = _bind(text, params)
        with self._connect(staged.dataset_id, read_only=False, attach_source=True) as con:
            try:
                con.execute(f"CREATE OR REPLACE TABLE {self._table(side)} AS {text}", bound)
            except duckdb.Error as exc:
                raise WarehouseError(f"writing the {name} check of {staged.dataset_id} failed: {exc}") from exc
        return side

    def rows(self, staged: StagedTable, sql: str, limit: int = 20) -> list[tuple[Any, ...]]:
        with self._connect(staged.dataset_id, read_only=True, attach_source=False) as con:
            return con.execute(sql.format(table=self._table(staged))).fetchmany(limit)

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
            return (con.execute(sql.format(table=self._table(staged))).fetchone() or (None,))[0]

    def gx_batch(self, context, staged):
        _gx_datasource_type()  # registers context.data_sources.add_or_update_pubdata_duckdb
        name = f"staged_{staged.dataset_id.replace('.', '_')}"
        datasource = context.data_sources.add_or_update_pubdata_duckdb(
            name=name, connection_string=f"duckdb:///{staged.location}",
            kwargs={"creator": functools.partial(self._gx_connection, staged.dataset_id)},
        )
        asset = datasource.add_table_asset(name=staged.table, table_name=staged.table)
        return asset.add_batch_definition_whole_table("whole").get_batch()

    @contextmanager
    def export_source(self, staged: StagedTable, work: Path, store: Store,
                      staging_prefix: str) -> Iterator[ExportSource]:
        """The staged table itself, on a connection to its staging file; scanned when in export order."""
        spill = self.spill_dir(staged.dataset_id)
        with self._connect(staged.dataset_id, read_only=True, attach_source=False) as con:
            yield ExportSource(con, self._table(staged), staged.ordered_by, spill)

    def drop(self, staged):
        with contextlib.suppress(WarehouseError):
            with self._connect(staged.dataset_id, read_only=False, attach_source=False) as con:
                con.execute(f"DROP TABLE IF EXISTS {self._table(staged)}")

    def latest_source_day(self, table: str) -> dt.date | None:
        parts = table.replace("`", "").split(".")
        if len(parts) < 2 or not self.source.is_file():
            return None
        schema, name = parts[-2], parts[-1]
        try:
            con = duckdb.connect(str(self.source), read_only=True)
        except duckdb.Error:
            return None
        try:
            columns = {r[0] for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
                [schema, name]).fetchall()}
            column = next((c for c in PARTITION_COLUMNS if c in columns), None)
            if column is None:
                return None
            found = con.execute(f"SELECT max(CAST({_ident(column)} AS DATE)) FROM {_ident(schema)}.{_ident(name)}").fetchone()
            return found[0] if found and found[0] is not None else None
        except duckdb.Error:
            return None
        finally:
            con.close()

    def missing_sources(self, tables: list[str]) -> dict[str, str]:
        """The tables absent from the local source warehouse, each with how to create it: the
        synthetic ones by `pubdata synth`, any other from your own rows by `pubdata load`. None
        while the warehouse does not exist at all: opening it says so, naming `pubdata synth`."""
        if not self.source.is_file():
            return {}
        try:
            con = duckdb.connect(str(self.source), read_only=True)
        except duckdb.Error as exc:
            raise WarehouseError(f"cannot open the source warehouse {self.source}: {exc}") from exc
        try:
            held = {(s, t) for s, t in con.execute("SELECT table_schema, table_name FROM information_schema.tables").fetchall()}
        finally:
            con.close()
        missing = {}
        for table in dict.fromkeys(tables):
            parts = table.replace("`", "").split(".")
            if len(parts) >= 2 and (parts[-2], parts[-1]) not in held:
                missing[table] = missing_source_hint(table, self.source)
        return missing

    def source_ready(self, table: str, day: dt.date) -> bool:
        """Whether the source table has rows on this day (in its submission_date/_timestamp column)."""
        parts = table.replace("`", "").split(".")
        if len(parts) < 2:
            raise QueryError(f"source table {table!r} is not qualified: write it as project.dataset.table")
        schema, name = parts[-2], parts[-1]
        if not self.source.is_file():
            raise WarehouseError(f"source warehouse {self.source} does not exist: run `pubdata synth`")
        try:
            con = duckdb.connect(str(self.source), read_only=True)
        except duckdb.Error as exc:
            raise WarehouseError(f"cannot open the source warehouse {self.source}: {exc}") from exc
        try:
            columns = {r[0] for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
                [schema, name]).fetchall()}
            if not columns:
                raise QueryError(f"the declaration's source_tables name {missing_source_hint(table, self.source)}")
            column = next((c for c in PARTITION_COLUMNS if c in columns), None)
            if column is None:
                return True  # not partitioned by day: nothing to wait for
            relation = f"{_ident(schema)}.{_ident(name)}"
            found = con.execute(f"SELECT EXISTS (SELECT 1 FROM {relation} WHERE CAST({_ident(column)} AS DATE) = ?)",
                                [day]).fetchone()
            return bool(found and found[0])
        except duckdb.Error as exc:
            raise WarehouseError(f"checking {table} for {day} failed: {exc}") from exc
        finally:
            con.close()


def missing_source_hint(table: str, warehouse: Path) -> str:
    """What a missing source table's error says: which table, that the local warehouse holds
    synthetic tables and rows you load, and the command that creates this one."""
    from pubdata.sources.synthetic import TABLES

    name = ".".join(table.replace("`", "").split(".")[-2:])
    where = f"{table}, which the local warehouse {warehouse} does not hold (it holds synthetic tables and rows you load)"
    if name in TABLES:
        return (f"{where}: run `pubdata synth --force` to generate the synthetic {name} (with "
                f"{', '.join(t for t in TABLES if t != name)})")
    return (f"{where}: {name} is not one of the synthetic tables ({', '.join(TABLES)}); load rows for it from a SQL test "
            f"case with `pubdata load tests/sql/<ds>/<table>_v<N>/<case>/` (an input file named {table}.yaml), "
            "or correct the table name")


def _source_tables(query: str) -> list[str]:
    """The warehouse tables a query reads (`dataset.table` or `project.dataset.table`), CTEs left out."""
    tree = _parse_bigquery(query)
    return [".".join(p.name for p in t.parts) for t in tree.find_all(exp.Table) if t.args.get("db")]


def _setting(con: duckdb.DuckDBPyConnection, name: str) -> Any:
    return con.execute("SELECT current_setting(?)", [name]).fetchall()[0][0]  # fetchall: no result left open


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_str(path: Path | str) -> str:
    return str(path).replace("'", "''")
