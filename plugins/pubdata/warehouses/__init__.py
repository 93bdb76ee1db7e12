"""Warehouse engines behind one interface: DuckDB (embedded default) and BigQuery (production)."""

from __future__ import annotations

from pubdata.warehouses.base import StagedTable, Warehouse, WarehouseError


def open_warehouse(url: str, *, home=None) -> Warehouse:
    """Open the warehouse named by a PUBDATA_WAREHOUSE url: duckdb:///file or bigquery://project."""
    if url.startswith("duckdb://"):
        from pubdata.warehouses.duckdb import DuckDBWarehouse

        return DuckDBWarehouse.from_url(url, home=home)
    if url.startswith("bigquery://"):
        from pubdata.warehouses.bigquery import BigQueryWarehouse

        return BigQueryWarehouse.from_url(url)
    raise WarehouseError(f"PUBDATA_WAREHOUSE={url!r} is not supported: use duckdb:///path/file.duckdb or bigquery://<project>")


__all__ = ["StagedTable", "Warehouse", "WarehouseError", "open_warehouse"]
