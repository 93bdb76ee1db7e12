"""Fixtures: a throw-away project (declarations, queries, DAG file) on the embedded stack.

Helpers the tests import live in tests/support; fake-gcs-server fixtures come from
tests/support/gcs_emulator.py, registered below.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.support.project import EXAMPLE, TEST_SCALE, copy_project

pytest_plugins = ["tests.support.gcs_emulator"]

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")


@pytest.fixture(scope="session")
def source_warehouse(tmp_path_factory) -> Path:
    """A synthetic source warehouse, generated once per session (sources are only read)."""
    from pubdata.sources.synthetic import SynthSpec, generate

    path = tmp_path_factory.mktemp("warehouse") / "warehouse.duckdb"
    generate(path, SynthSpec(scale=TEST_SCALE))
    return path


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("airflow")


@pytest.fixture()
def project(tmp_path, monkeypatch, source_warehouse, airflow_home) -> Path:
    """A copy of the repo's declarations in tmp, with its own home and bucket; env points at it."""
    proj = copy_project(tmp_path / "project")
    home = tmp_path / "home"
    monkeypatch.setenv("PUBDATA_PROJECT", str(proj))
    monkeypatch.setenv("PUBDATA_HOME", str(home))
    monkeypatch.setenv("PUBDATA_WAREHOUSE", f"duckdb://{source_warehouse}")
    monkeypatch.setenv("PUBDATA_BUCKET", f"file://{home / 'public'}")
    monkeypatch.setenv("PUBDATA_AIRFLOW_HOME", str(airflow_home))
    monkeypatch.delenv("PUBDATA_PUBLIC_BASE_URL", raising=False)
    monkeypatch.delenv("PUBDATA_ALERT_WEBHOOK_URL", raising=False)
    return proj


@pytest.fixture()
def decl(project):
    """The example's declaration, as loaded from the test project."""
    from pubdata.declarations import load_all

    return load_all(project).declarations[EXAMPLE]


@pytest.fixture()
def stage_sql(project):
    """Stage arbitrary rows as the example dataset's table, the way the stage task leaves them: with
    the warehouse's own count of clients per row (here, honestly, the rows' client_count unless the
    SQL gives _pubdata_units itself), a row key, and no client in two rows."""
    import duckdb

    from pubdata.config import settings
    from pubdata.warehouses import open_warehouse
    from pubdata.warehouses.base import StagedTable

    wh = open_warehouse(settings().warehouse_url, home=settings().home)

    def make(sql: str) -> tuple:
        path = wh.staging_file(EXAMPLE)
        path.parent.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(str(path))
        columns = con.sql(sql).columns
        extra = []
        if "_pubdata_units" not in columns and "client_count" in columns:
            extra.append("client_count AS _pubdata_units")
        if "_pubdata_row" not in columns:
            extra.append("CAST(row_number() OVER () AS VARCHAR) AS _pubdata_row")
        if "_pubdata_disjoint" not in columns:
            extra.append("true AS _pubdata_disjoint")
        more = (", " + ", ".join(extra)) if extra else ""
        con.execute(f"CREATE OR REPLACE TABLE stage_20261101 AS SELECT *{more} FROM ({sql}) AS rows")
        con.close()
        return wh, StagedTable(EXAMPLE, str(path), "stage_20261101", "2026-11-01")

    return make


_exit_status = 0


def pytest_sessionfinish(session, exitstatus):
    global _exit_status
    _exit_status = int(exitstatus)


def pytest_unconfigure(config):
    # duckdb's bindings print spurious "leaked" lines at interpreter teardown; skip it.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_exit_status)


@pytest.fixture(scope="session")
def production_schemas() -> dict[str, list[tuple[str, str]]]:
    """The source tables' columns and types, from a tiny synthetic warehouse (same DDL as every run)."""
    from pubdata.sources.fixtures import production_schemas

    return production_schemas()
