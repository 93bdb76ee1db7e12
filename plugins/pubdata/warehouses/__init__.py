"""Warehouse engines behind one interface: DuckDB (embedded default) and BigQuery (production).

Adding a warehouse: a module here with a Warehouse subclass, and its URL scheme in ENGINES.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from pubdata.errors import ConfigurationError
from pubdata.warehouses.base import JobScope, StagedTable, Warehouse

if TYPE_CHECKING:
    from sqlglot.exp import Expr

ENGINES: dict[str, str] = {
    "duckdb": "pubdata.warehouses.duckdb:DuckDBWarehouse",
    "bigquery": "pubdata.warehouses.bigquery:BigQueryWarehouse",
}
"""URL scheme of PUBDATA_WAREHOUSE -> the class that opens it (imported only when used)."""


def open_warehouse(url: str, *, home: Path | None = None, scope: JobScope | None = None) -> Warehouse:
    """Open the warehouse named by a PUBDATA_WAREHOUSE url: duckdb:///file or bigquery://project.

    scope: the run and the dataset's limits the warehouse's jobs are for (JobScope).
    """
    scheme = url.split("://", 1)[0] if "://" in url else ""
    target = ENGINES.get(scheme)
    if target is None:
        raise ConfigurationError(f"PUBDATA_WAREHOUSE={url!r} is not supported: use duckdb:///path/file.duckdb or "
                                 "bigquery://<project>")
    module, _, name = target.partition(":")
    cls = getattr(importlib.import_module(module), name)
    warehouse: Warehouse = cls.from_url(url, home=home, scope=scope or JobScope())
    return warehouse


def unresolved_functions(statement: Expr) -> list[str]:
    """The functions a reviewed query calls that the embedded engine cannot resolve, each with why.

    Every query runs its SQL test cases on the embedded engine, and BigQuery resolves everything
    it does (Mozilla's functions natively), so this is the list `pubdata check` refuses.
    """
    from pubdata.warehouses.duckdb_dialect import unresolved_functions as embedded

    return embedded(statement)


__all__ = ["ENGINES", "JobScope", "StagedTable", "Warehouse", "open_warehouse", "unresolved_functions"]
