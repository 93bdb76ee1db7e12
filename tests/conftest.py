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
