"""The warehouse interface: stage a reviewed query, let validation look at it, export it.

Write-audit-publish lives in this shape: `stage` writes the query result to a staging table the
public never sees; validation reads that same table (through `gx_batch` and `scalar`); `export`
streams that same table out. Nothing here knows about Airflow.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pubdata.formats import Part


class WarehouseError(Exception):
    """The warehouse could not do what was asked (infrastructure, not data)."""


class QueryError(WarehouseError):
    """The reviewed query itself is wrong (syntax, unknown column): fix the query, do not retry."""


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
class Column:
    name: str
    type: str


class Warehouse(ABC):
    engine: str  # "duckdb" or "bigquery"

    @abstractmethod
    def stage(self, dataset_id: str, query: str, params: dict[str, Any], partition: dt.date | None,
              *, partition_field: str | None = None, order_by: list[str] | None = None) -> StagedTable:
        """Run the reviewed BigQuery-SQL query with bound params into a staging table (replacing the partition).

        order_by names the columns export will order the rows by; an engine whose tables keep
        their row order stores them so (and says so in StagedTable.ordered_by), others ignore it.
        """

    @abstractmethod
    def columns(self, staged: StagedTable) -> list[Column]:
        """Names and types of the staged table's columns, in order."""

    @abstractmethod
    def scalar(self, staged: StagedTable, sql: str) -> Any:
        """Evaluate one SQL expression over the staged table; `{table}` in sql names it."""

    @abstractmethod
    def gx_batch(self, context: Any, staged: StagedTable) -> Any:
        """A Great Expectations Batch over the staged table, evaluated inside the warehouse."""

    @abstractmethod
    def export(self, staged: StagedTable, dest: Path, order_by: list[str], fmt: str = "json") -> int:
        """Stream the staged rows, ordered by order_by, into a local file; return the row count.

        fmt is json (one JSON array of row objects), csv (with header) or parquet.
        """

    def write_parts(self, staged: StagedTable, order_by: list[str], fmt: str, max_bytes: int, out_dir: Path) -> list[Part]:
        """The staged rows, ordered by order_by, as numbered parts of at most max_bytes in out_dir.

        By default through one whole local file (`export`) cut by formats.split; an engine that
        can hand over rows in batches writes the parts directly.
        """
        from pubdata import formats

        whole = out_dir.parent / f"{out_dir.name}.whole.{fmt}"
        try:
            self.export(staged, whole, order_by, fmt)
            return formats.split(whole, fmt, max_bytes, out_dir)
        finally:
            whole.unlink(missing_ok=True)

    @abstractmethod
    def drop(self, staged: StagedTable) -> None:
        """Remove a staged table (after a successful publish)."""
