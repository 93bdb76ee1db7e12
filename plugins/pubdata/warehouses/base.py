"""The warehouse interface: stage a reviewed query, let validation look at it, hand it to export.

Write-audit-publish lives in this shape: `stage` writes the query result to a staging table the
public never sees; validation reads that same table (through `gx_batch` and `scalar`); export
reads that same table through `export_source`. What an engine can do, how it quotes and which
type names it uses are attributes of its class, so no code outside warehouses/ asks which
engine it is talking to.
"""

from __future__ import annotations

import datetime as dt
import re
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pubdata.errors import QueryError, WarehouseError

if TYPE_CHECKING:
    import duckdb

    from pubdata.stores.base import Store

__all__ = ["Column", "ExportSource", "JobScope", "QueryError", "StagePlan", "StagedTable", "TypeFamily", "Warehouse",
           "WarehouseError"]

TypeFamily = str
"""date, timestamp, time, string, boolean, integer, fractional, array, object or other."""

UNITS = "_pubdata_units"
"""Distinct privacy units (clients) behind a staged row, counted by the warehouse."""
ROW = "_pubdata_row"
"""The group a staged row is, as text (a key the side tables refer to)."""
DISJOINT = "_pubdata_disjoint"
"""True when every client is in one input row of the aggregation: no row can be a subset of another."""
INTERNAL_COLUMNS = (UNITS, ROW, DISJOINT)
STAGED = "_pubdata_staged"
"""The name side queries read the staged rows by."""
DIFFERENCING = "differencing"
SIDE_TABLES = (DIFFERENCING,)
"""Side tables stage may write beside a staged table (sql.rewrite), dropped with it."""


@dataclass(frozen=True)
class StagePlan:
    """What stage runs for one dataset, in BigQuery SQL (sql.rewrite builds it).

    `query` produces the rows; `materialize` names CTEs it reads twice, which an engine should
    compute once where it can; `sides` (name, SQL) are written beside the staged table for
    validation, reading the staged rows as the table _pubdata_staged, unless every staged row
    has DISJOINT true (then there is nothing for them to find).
    """

    query: str
    materialize: tuple[str, ...] = ()
    sides: tuple[tuple[str, str], ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    """Parameters the pipeline's own SQL binds (the roll-up's lists of valid geo values)."""


@dataclass(frozen=True)
class StagedTable:
    """Where one run's query result sits, internally, until it is validated and exported."""

    dataset_id: str
    location: str          # engine-specific: a DuckDB file path, or a BigQuery project.dataset
    table: str             # table name inside location
    partition: str | None  # YYYY-MM-DD for incremental datasets
    # The columns the table's rows are stored in order of (a DuckDB staged table keeps the order
    # it was written in), so export can scan instead of sort; None when unordered.
    ordered_by: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ordered_by"] = list(self.ordered_by) if self.ordered_by is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StagedTable:
        d = dict(d)
        if d.get("ordered_by") is not None:
            d["ordered_by"] = tuple(d["ordered_by"])
        return cls(**d)


@dataclass(frozen=True)
class JobScope:
    """What the warehouse's jobs are run for: the run (BigQuery derives its job ids from it, so a
    retried task finds the job its first attempt started) and the dataset's byte cap."""

    run_id: str = "manual"
    maximum_bytes_billed: int | None = None
    staging_expiration: dt.timedelta | None = None  # staged tables drop themselves after this (the quarantine period)


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # as the warehouse spells it


@dataclass(frozen=True)
class ExportSource:
    """The staged rows as a DuckDB relation, which the part writers read (pubdata.publishing.rows).

    `ordered_by`: the columns the relation's rows are already in order of (scanned, not sorted);
    `spill`: where DuckDB may spill a sort.
    """

    con: duckdb.DuckDBPyConnection
    relation: str
    ordered_by: tuple[str, ...] | None
    spill: Path


class Warehouse(ABC):
    engine: ClassVar[str]
    TYPE_FAMILIES: ClassVar[dict[TypeFamily, frozenset[str]]]
    """Each type family and the engine's names of its types (without parameters: DECIMAL, not DECIMAL(18,3))."""

    # -- engine knowledge ----------------------------------------------------------------------

    @staticmethod
    @abstractmethod
    def quote(name: str) -> str:
        """A column name as an identifier of this engine's SQL."""

    FINGERPRINT: ClassVar[str]
    """SQL over `{table}` returning one text value that changes whenever any row does, whatever the
    row order: `rows:xor:sum` of a hash per row. Validation records it, export compares it."""
    SQL_DIALECT: ClassVar[str]
    """sqlglot's name for the engine's SQL: what expectations are rendered in."""
    STRING_TYPE: ClassVar[str]
    REGEX_CONTAINS: ClassVar[str]
    """SQL true when {expression} (text) contains a match of the RE2 pattern '{pattern}'."""

    @classmethod
    def as_text(cls, expression: str) -> str:
        """SQL casting an expression to the engine's string type."""
        return f"CAST({expression} AS {cls.STRING_TYPE})"

    @classmethod
    def regex_contains(cls, expression: str, pattern: str) -> str:
        """SQL that is true when the text expression contains a match of an RE2 pattern."""
        if "'" in pattern:
            raise ValueError("patterns must not contain a single quote")
        return cls.REGEX_CONTAINS.format(expression=expression, pattern=pattern)

    @classmethod
    def type_family(cls, type_name: str) -> TypeFamily:
        """The family of one of the engine's type names (parameters ignored); `other` when unknown."""
        base = re.sub(r"\s*\(.*\)$", "", type_name.strip()).upper()
        for family, names in cls.TYPE_FAMILIES.items():
            if base in names:
                return family
        return "other"

    # -- write, audit, export ------------------------------------------------------------------

    def stage(self, dataset_id: str, query: str | StagePlan, params: dict[str, Any], partition: dt.date | None,
              *, partition_field: str | None = None, order_by: list[str] | None = None) -> StagedTable:
        """Run the reviewed BigQuery-SQL query (or a stage plan) with bound params into a staging
        table, replacing the partition, then the plan's side tables.

        order_by names the columns export will order the rows by; an engine whose tables keep
        their row order stores them so (and says so in StagedTable.ordered_by), others ignore it.
        """
        plan = query if isinstance(query, StagePlan) else StagePlan(query)
        params = {**params, **plan.params}
        staged = self.stage_query(dataset_id, plan, params, partition, partition_field=partition_field,
                                  order_by=order_by)
        if plan.sides:
            overlapping = self.scalar(staged, f"SELECT COUNT(*) FROM {{table}} WHERE NOT {DISJOINT}")
            for name, sql in plan.sides:
                if overlapping:
                    self.write_side(staged, name, sql, params)
                else:
                    self.drop(self.side(staged, name))
        return staged

    @abstractmethod
    def stage_query(self, dataset_id: str, plan: StagePlan, params: dict[str, Any], partition: dt.date | None,
                    *, partition_field: str | None = None, order_by: list[str] | None = None) -> StagedTable:
        """Run plan.query into the staging table (see `stage`)."""

    @abstractmethod
    def side(self, staged: StagedTable, name: str) -> StagedTable:
        """Where the side table `name` of a staged table lives (it may not exist)."""

    @abstractmethod
    def write_side(self, staged: StagedTable, name: str, sql: str, params: dict[str, Any]) -> StagedTable:
        """Run BigQuery SQL that reads the staged rows as _pubdata_staged (and the sources) into side table `name`."""

    @abstractmethod
    def rows(self, staged: StagedTable, sql: str, limit: int = 20) -> list[tuple[Any, ...]]:
        """The first `limit` rows of SQL over the staged table (`{table}` names it), as tuples."""

    @abstractmethod
    def columns(self, staged: StagedTable) -> list[Column]:
        """Names and types of the staged table's columns, in order."""

    @abstractmethod
    def scalar(self, staged: StagedTable, sql: str) -> Any:
        """Evaluate one SQL expression over the staged table; `{table}` in sql names it."""

    def fingerprint(self, staged: StagedTable) -> str:
        """The staged rows' fingerprint (FINGERPRINT), computed in the warehouse."""
        return str(self.scalar(staged, self.FINGERPRINT))

    @abstractmethod
    def gx_batch(self, context: Any, staged: StagedTable) -> Any:
        """A Great Expectations Batch over the staged table, evaluated inside the warehouse."""

    @abstractmethod
    def export_source(self, staged: StagedTable, work: Path, store: Store,
                      staging_prefix: str) -> AbstractContextManager[ExportSource]:
        """The staged rows as a DuckDB relation for the part writers, for as long as the context lasts.

        work is a private local directory for this export; staging_prefix a private prefix of
        the store an engine may export into directly (and must leave empty).
        """

    @abstractmethod
    def drop(self, staged: StagedTable) -> None:
        """Remove a staged table (after a successful publish); absent is fine."""

    def latest_source_day(self, table: str) -> dt.date | None:
        """The last day a source table has rows for, when this engine can tell cheaply (the
        embedded warehouse's local data); None when unknown or empty. `pubdata new` starts there."""
        return None

    def missing_sources(self, tables: list[str]) -> dict[str, str]:
        """The source tables (`project.dataset.table`) this warehouse does not hold, each with what
        to do about it; empty when all are there or the engine cannot tell without a job (BigQuery
        reports a missing table itself, by name, when the query runs)."""
        return {}

    @abstractmethod
    def source_ready(self, table: str, day: dt.date) -> bool:
        """Whether a source table (its production name, `project.dataset.table`) has rows for this day.

        Mozilla's tables are partitioned by day (on submission_date or submission_timestamp); a
        source whose day has not arrived yet would publish a partial day.
        """

