"""A small client for a deployment's Airflow REST API (v2): what `pubdata backfill` submits there.

PUBDATA_AIRFLOW_API_URL names the deployment (its base URL, e.g. https://airflow.example.org);
authentication is a bearer token, given as PUBDATA_AIRFLOW_TOKEN (for Cloud Composer: an
identity token the environment's web server accepts) or obtained from Airflow's own
`/auth/token` with PUBDATA_AIRFLOW_USERNAME and PUBDATA_AIRFLOW_PASSWORD (the simple auth
manager). Refusals say what to change; an unreachable deployment is an infrastructure error.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from pubdata.errors import ConfigurationError, InfrastructureError, UsageError

TOKEN_ENV = "PUBDATA_AIRFLOW_TOKEN"
USERNAME_ENV = "PUBDATA_AIRFLOW_USERNAME"
PASSWORD_ENV = "PUBDATA_AIRFLOW_PASSWORD"


class AirflowUnavailable(InfrastructureError):
    """The deployment's API could not be reached, or failed on its side."""


@dataclass
class AirflowAPI:
    base_url: str
    token: str | None = None
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0

    @classmethod
    def from_env(cls, base_url: str) -> AirflowAPI:
        return cls(base_url.rstrip("/"), token=os.environ.get(TOKEN_ENV) or None,
                   username=os.environ.get(USERNAME_ENV) or None, password=os.environ.get(PASSWORD_ENV) or None)

    def _request(self, method: str, path: str, *, auth: bool = True, **kwargs: Any) -> Any:
        import requests

        headers = {"Authorization": f"Bearer {self._bearer()}"} if auth else {}
        url = f"{self.base_url}{path}"
        try:
            response = requests.request(method, url, headers=headers, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise AirflowUnavailable(f"cannot reach Airflow at {self.base_url} ({exc}); check "
                                     "PUBDATA_AIRFLOW_API_URL and the network, then run the command again") from exc
        if response.status_code >= 500:
            raise AirflowUnavailable(f"Airflow at {self.base_url} answered {response.status_code} to {method} {path}: "
                                     f"{response.text[:300]}; run the command again later")
        if response.status_code in (401, 403):
            raise ConfigurationError(
                f"Airflow at {self.base_url} refused {method} {path} ({response.status_code}): set {TOKEN_ENV}, or "
                f"{USERNAME_ENV} and {PASSWORD_ENV}, to an account that may create backfills")
        if response.status_code >= 400:
            detail = _detail(response)
            if response.status_code == 404:
                raise UsageError(f"Airflow at {self.base_url} does not know {path.rsplit('/', 1)[-1]!r} ({detail}): "
                                 "is the DAG file deployed and parsed?")
            raise UsageError(f"Airflow at {self.base_url} refused {method} {path} ({response.status_code}): {detail}")
        return response.json() if response.content else None

    def _bearer(self) -> str:
        if self.token:
            return self.token
        if not (self.username and self.password):
            raise ConfigurationError(f"PUBDATA_AIRFLOW_API_URL is set but no credentials are: set {TOKEN_ENV}, or "
                                     f"{USERNAME_ENV} and {PASSWORD_ENV}")
        answer = self._request("POST", "/auth/token", auth=False,
                               json={"username": self.username, "password": self.password})
        self.token = str(answer["access_token"])
        return self.token

    def dag(self, dag_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", f"/api/v2/dags/{quote(dag_id)}")
        return result

    def backfill_body(self, dag_id: str, start: dt.date, end: dt.date, *, reprocess: str,
                      max_active_runs: int) -> dict[str, Any]:
        # Whole days: the runs whose logical date falls on start .. end, both included.
        return {"dag_id": dag_id, "from_date": f"{start.isoformat()}T00:00:00Z",
                "to_date": f"{end.isoformat()}T23:59:59Z", "run_backwards": False, "dag_run_conf": {},
                "reprocess_behavior": reprocess, "max_active_runs": max_active_runs}

    def backfill_dry_run(self, dag_id: str, start: dt.date, end: dt.date, *, reprocess: str,
                         max_active_runs: int = 1) -> list[str]:
        """The logical dates the backfill would run."""
        body = self.backfill_body(dag_id, start, end, reprocess=reprocess, max_active_runs=max_active_runs)
        answer = self._request("POST", "/api/v2/backfills/dry_run", json=body)
        return [str(b.get("logical_date")) for b in answer.get("backfills", [])]

    def create_backfill(self, dag_id: str, start: dt.date, end: dt.date, *, reprocess: str,
                        max_active_runs: int = 1) -> dict[str, Any]:
        body = self.backfill_body(dag_id, start, end, reprocess=reprocess, max_active_runs=max_active_runs)
        result: dict[str, Any] = self._request("POST", "/api/v2/backfills", json=body)
        return result

    def ui_url(self, dag_id: str) -> str:
        return f"{self.base_url}/dags/{quote(dag_id)}"


def _detail(response: Any) -> str:
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = None
    return str(detail or response.text)[:500]
