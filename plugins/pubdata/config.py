"""Runtime configuration, read from the environment.

Defaults are the embedded stack: everything lives under PUBDATA_HOME (var/ in the project),
DuckDB for the warehouse, a local directory for the public bucket.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PUBLIC_BASE_URL = "http://localhost:8000/"


def project_root() -> Path:
    """The directory holding dags/, sql/, metadata/ and expectations/.

    PUBDATA_PROJECT wins; otherwise the checkout this package lives in; otherwise the cwd.
    """
    env = os.environ.get("PUBDATA_PROJECT")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve().parents[2]
    if (here / "metadata").is_dir() and (here / "dags").is_dir():
        return here
    return Path.cwd().resolve()


@dataclass(frozen=True)
class Settings:
    project: Path
    home: Path
    warehouse_url: str
    bucket_url: str
    public_base_url: str
    alert_webhook_url: str | None

    @property
    def metadata_dir(self) -> Path:
        return self.project / "metadata"

    @property
    def sql_dir(self) -> Path:
        return self.project / "sql"

    @property
    def expectations_dir(self) -> Path:
        return self.project / "expectations"

    @property
    def dags_dir(self) -> Path:
        return self.project / "dags"

    @property
    def airflow_home(self) -> Path:
        """Airflow's home (metadata DB, logs); PUBDATA_AIRFLOW_HOME lets several homes share one."""
        env = os.environ.get("PUBDATA_AIRFLOW_HOME")
        return Path(env).resolve() if env else self.home / "airflow"

    @property
    def internal_dir(self) -> Path:
        """Internal state never exposed publicly: staging databases, run records, reports."""
        return self.home / "internal"


def settings() -> Settings:
    project = project_root()
    home = Path(os.environ.get("PUBDATA_HOME") or project / "var").resolve()
    base = os.environ.get("PUBDATA_PUBLIC_BASE_URL") or DEFAULT_PUBLIC_BASE_URL
    if not base.endswith("/"):
        base += "/"
    return Settings(
        project=project,
        home=home,
        warehouse_url=os.environ.get("PUBDATA_WAREHOUSE") or f"duckdb://{home / 'warehouse.duckdb'}",
        bucket_url=os.environ.get("PUBDATA_BUCKET") or f"file://{home / 'public'}",
        public_base_url=base,
        alert_webhook_url=os.environ.get("PUBDATA_ALERT_WEBHOOK_URL") or None,
    )
