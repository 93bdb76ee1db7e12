"""Run dataset DAGs through real Airflow on the configured engines (`pubdata run`).

Airflow keeps its metadata DB (SQLite on the embedded stack) under PUBDATA_HOME/airflow. Each
dataset's DAG runs with `airflow dags test <dag_id> <date>`, the same code path the scheduler runs,
and its log is kept under PUBDATA_HOME/internal/logs/.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pubdata import records
from pubdata.config import Settings


def airflow_env(cfg: Settings, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    home = cfg.airflow_home
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(cfg.dags_dir),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(cfg.project / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "60",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "PUBDATA_PROJECT": str(cfg.project),
        "PUBDATA_HOME": str(cfg.home),
        "PYTHONWARNINGS": "ignore",
        "GX_ANALYTICS_ENABLED": "False",
    })
    if extra:
        env.update(extra)
    return env


def _airflow_bin() -> str:
    candidate = Path(sys.executable).with_name("airflow")
    return str(candidate) if candidate.exists() else (shutil.which("airflow") or "airflow")


def ensure_airflow_db(cfg: Settings) -> None:
    """Migrate the metadata DB once per Airflow version (`airflow dags test` needs it)."""
    from importlib.metadata import version

    home = cfg.airflow_home
    home.mkdir(parents=True, exist_ok=True)
    stamp = home / f".migrated-{version('apache-airflow-core')}"
    if stamp.exists() and (home / "airflow.db").exists():
        return
    proc = subprocess.run([_airflow_bin(), "db", "migrate"], env=airflow_env(cfg), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"`airflow db migrate` failed (AIRFLOW_HOME={home}):\n{proc.stderr[-4000:]}")
    stamp.touch()


@dataclass
class RunOutcome:
    dataset_id: str
    dag_id: str
    date: str
    returncode: int
    seconds: float
    log: Path
    record: dict[str, Any] | None

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and (self.record or {}).get("state") == "published"


def run_dag(cfg: Settings, dataset_id: str, dag_id: str, date: str, partition: str | None) -> RunOutcome:
    log_path = cfg.internal_dir / "logs" / dataset_id / f"{date}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.run(
            [_airflow_bin(), "dags", "test", dag_id, date],
            env=airflow_env(cfg, {"PUBDATA_TASK_RETRIES": os.environ.get("PUBDATA_TASK_RETRIES", "0")}),
            stdout=log, stderr=subprocess.STDOUT, cwd=cfg.project,
        )
    record = records.read(cfg.internal_dir, dataset_id, partition)
    return RunOutcome(dataset_id, dag_id, date, proc.returncode, round(time.monotonic() - t0, 1), log_path, record)
