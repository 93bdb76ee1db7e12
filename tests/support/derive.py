"""Derived datasets for tests: a copy of a repository example with its declaration or query edited."""

from __future__ import annotations

from pathlib import Path

import yaml

DS = "telemetry_public"


def derive(project: Path, source: str, table: str, edit=None, sql: str | None = None) -> str:
    """Declare dataset `table` as a copy of `source` (declaration and query), edited; return its id."""
    src = yaml.safe_load((project / "metadata" / DS / f"{source}.yaml").read_text())
    if edit:
        edit(src)
    (project / "metadata" / DS / f"{table}.yaml").write_text(yaml.safe_dump(src, sort_keys=False))
    query = sql if sql is not None else (project / "sql" / DS / f"{source}.sql").read_text()
    (project / "sql" / DS / f"{table}.sql").write_text(query)
    return f"{DS}.{table}"


def without_steward(spec: dict) -> None:
    del spec["review"]["steward"]


CLIENT_SHARDS_SQL = """
SELECT
  submission_date,
  SUBSTR(TO_HEX(MD5(client_id)), 1, 2) AS client_shard,
  COUNT(DISTINCT client_id) AS client_count
FROM `moz-fx-data-shared-prod.telemetry.clients_daily`
WHERE submission_date = @submission_date
GROUP BY 1, 2
"""


def client_shards(spec: dict) -> None:
    spec["policy"].pop("rollup", None)
    spec["policy"]["dimensions"] = [
        {"name": "submission_date", "category": 1, "kind": "date"},
        {"name": "client_shard", "category": 1, "kind": "categorical", "description": "two hex digits"},
    ]
    spec["policy"]["metrics"] = [{"name": "client_count", "sensitive": False}]
