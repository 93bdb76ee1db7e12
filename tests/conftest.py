"""Shared fixtures: a throw-away project (declarations, queries, DAG file) on the embedded stack."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TEST_SCALE = 300_000  # rows of clients_daily: 100k clients a day, a few cells over 5,000

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")


@pytest.fixture(scope="session")
def source_warehouse(tmp_path_factory) -> Path:
    """A synthetic source warehouse, generated once per session (sources are only read)."""
    from pubdata.synthetic import SynthSpec, generate

    path = tmp_path_factory.mktemp("warehouse") / "warehouse.duckdb"
    generate(path, SynthSpec(scale=TEST_SCALE))
    return path


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("airflow")


def copy_project(dest: Path) -> Path:
    for name in ("dags", "metadata", "sql", "expectations", "schema"):
        if (REPO / name).exists():
            shutil.copytree(REPO / name, dest / name)
    (dest / "plugins").mkdir(exist_ok=True)
    return dest


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


EXAMPLE = "telemetry_public.page_loads_by_country_v1"
# The example's staged shape with every row at or above the minimum bucket.
GOOD_ROWS = """
    SELECT * FROM (VALUES
      (DATE '2026-11-01', 'US', 'Windows_NT', 'en-US', 'release', 120000, 6000),
      (DATE '2026-11-01', 'DE', 'Windows_NT', 'de', 'release', 90000, 5000),
      (DATE '2026-11-01', 'Other', 'Other', 'Other', 'Other', 400000, 25000)
    ) t(submission_date, country, os, locale, normalized_channel, page_loads, client_count)
"""


@pytest.fixture()
def decl(project):
    """The example's declaration, as loaded from the test project."""
    from pubdata.declaration import load_all

    return load_all(project).declarations[EXAMPLE]


@pytest.fixture()
def stage_sql(project):
    """Stage arbitrary rows as the example dataset's table, the way the stage task leaves them."""
    import duckdb

    from pubdata.config import settings
    from pubdata.warehouses import open_warehouse
    from pubdata.warehouses.base import StagedTable

    wh = open_warehouse(settings().warehouse_url, home=settings().home)

    def make(sql: str) -> tuple:
        path = wh.staging_file(EXAMPLE)
        path.parent.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(str(path))
        con.execute(f"CREATE OR REPLACE TABLE stage_20261101 AS {sql}")
        con.close()
        return wh, StagedTable(EXAMPLE, str(path), "stage_20261101", "2026-11-01")

    return make


UNGROUPED = "telemetry_public.page_loads_ungrouped_v1"


def add_ungrouped_example(project: Path) -> str:
    """A careless version of the example: no grouping into "Other", so small cells reach staging."""
    (project / "sql/telemetry_public/page_loads_ungrouped_v1.sql").write_text(
        "SELECT @submission_date AS submission_date, country, os, locale, normalized_channel,\n"
        "       SUM(page_loads) AS page_loads, COUNT(DISTINCT client_id) AS client_count\n"
        "FROM `moz-fx-data-shared-prod.telemetry.clients_daily`\n"
        "WHERE submission_date = @submission_date\n"
        "GROUP BY country, os, locale, normalized_channel\n"
    )
    meta = (project / "metadata/telemetry_public/page_loads_by_country_v1.yaml").read_text()
    (project / "metadata/telemetry_public/page_loads_ungrouped_v1.yaml").write_text(meta)
    return UNGROUPED


def pubdata_cli(*args: str, env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the installed `pubdata` command as a user would."""
    exe = Path(sys.executable).with_name("pubdata")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200", **(env or {})})


_exit_status = 0


def pytest_sessionfinish(session, exitstatus):
    global _exit_status
    _exit_status = int(exitstatus)


def pytest_unconfigure(config):
    # duckdb's bindings print spurious "leaked" lines at interpreter teardown; skip it.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_exit_status)
