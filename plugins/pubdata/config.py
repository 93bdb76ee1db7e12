"""Runtime configuration, read from the environment.

Defaults are the embedded stack: everything lives under PUBDATA_HOME (var/ in the project),
DuckDB for the warehouse, a local directory for the public bucket and, beside it, private
directories for staging (PUBDATA_HOME/private/staging) and run state (PUBDATA_HOME/private/state).
With a public bucket on GCS, tasks may run on several machines: staging and run state must then
be named explicitly (a private bucket), never defaulted to one machine's disk.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pubdata.errors import ConfigurationError

DEFAULT_PUBLIC_BASE_URL = "http://localhost:8000/"
DEFAULT_PUBLIC_CONTACT = "public-data@example.org"
"""The team alias the public pages and documents name unless PUBDATA_PUBLIC_CONTACTS says otherwise."""
OWNERS = "owners"
"""PUBDATA_PUBLIC_CONTACTS value that publishes each declaration's own owners instead."""


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
    staging_bucket_url: str | None = None  # PUBDATA_STAGING_BUCKET
    state_store_url: str | None = None     # PUBDATA_STATE_URL
    airflow_api_url: str | None = None     # PUBDATA_AIRFLOW_API_URL
    public_contacts_setting: tuple[str, ...] = (DEFAULT_PUBLIC_CONTACT,)  # PUBDATA_PUBLIC_CONTACTS

    def public_contacts(self, owners: list[str]) -> list[str]:
        """Whom the public documents of a dataset with these owners name: the configured addresses
        (a team alias by default), or the owners themselves only when configured as `owners`."""
        if self.public_contacts_setting == (OWNERS,):
            return list(owners)
        return list(self.public_contacts_setting)

    @property
    def staging_url(self) -> str:
        """Where export stages parts and BigQuery extracts shards before publish copies them."""
        return self._private("staging", self.staging_bucket_url, "PUBDATA_STAGING_BUCKET")

    @property
    def state_url(self) -> str:
        """Where run records, quarantine marks and validation reports live, for every worker and the CLI."""
        return self._private("state", self.state_store_url, "PUBDATA_STATE_URL")

    def _private(self, name: str, configured: str | None, variable: str) -> str:
        if configured:
            return configured
        if not self.bucket_url.startswith("file://"):
            raise ConfigurationError(
                f"PUBDATA_BUCKET={self.bucket_url} is not a local directory, so tasks may run on several machines: "
                f"set {variable} to a private location every worker reaches (e.g. gs://<private-bucket>/{name}; "
                "README, \"Deploying\")"
            )
        return f"file://{self.home / 'private' / name}"

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
        """This machine's own working files, never exposed publicly and never needed by another task:
        the DuckDB staging databases (unless the warehouse URL names a shared directory), export's
        parts before upload, logs of `pubdata run`, the declaration cache."""
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
        staging_bucket_url=os.environ.get("PUBDATA_STAGING_BUCKET") or None,
        state_store_url=os.environ.get("PUBDATA_STATE_URL") or None,
        airflow_api_url=os.environ.get("PUBDATA_AIRFLOW_API_URL") or None,
        public_contacts_setting=_public_contacts(os.environ.get("PUBDATA_PUBLIC_CONTACTS")),
    )


def _public_contacts(value: str | None) -> tuple[str, ...]:
    if value is None or not value.strip():
        return (DEFAULT_PUBLIC_CONTACT,)
    contacts = tuple(c.strip() for c in value.split(",") if c.strip())
    if contacts == (OWNERS,):
        return contacts
    bad = [c for c in contacts if c == OWNERS or "@" not in c or any(ch.isspace() or ch in "<>\",;:()[]" for ch in c)]
    if bad or not contacts:
        raise ConfigurationError(
            f"PUBDATA_PUBLIC_CONTACTS={value!r}: {', '.join(map(repr, bad)) or 'no address'} is not an e-mail "
            f"address; give comma-separated addresses (e.g. a team alias such as {DEFAULT_PUBLIC_CONTACT}), "
            f"or '{OWNERS}' alone to publish each dataset's declared owners"
        )
    return contacts
