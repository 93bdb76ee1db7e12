"""A small publishing harness for tests: synthetic declarations staged in DuckDB, exported and
published to any store with the real code, without Airflow.

Each dataset's rows carry a `marker` (which publish wrote them) and `n` rows, so a reader can
tell versions apart and see whether a version is complete.
"""

from __future__ import annotations

import datetime as dt
import json
import textwrap
from pathlib import Path
from typing import Any

import duckdb

from pubdata.declarations import Declaration, load_declaration
from pubdata.publishing import export as exporting
from pubdata.publishing import publish as publishing
from pubdata.stores.base import Store
from pubdata.stores.local import LocalStore
from pubdata.warehouses.duckdb import DuckDBWarehouse

BASE_URL = "http://127.0.0.1:8000/"
DAY = dt.date(2026, 11, 1)

QUERY = textwrap.dedent("""\
    -- Synthetic rows for publishing tests: n rows, each with the publish's marker.
    SELECT
      @submission_date AS submission_date,
      CONCAT('c', CAST(i AS STRING)) AS country,
      5000 + i AS client_count,
      @marker AS marker
    FROM UNNEST(GENERATE_ARRAY(1, @n)) AS i
""")

DECLARATION = """\
friendly_name: Synthetic dataset {name}
description: Rows that say which publish wrote them, for tests of atomic and concurrent publishing.
owners: [data-eng@example.org]
review:
  bugs: ["https://bugzilla.mozilla.org/show_bug.cgi?id=1414839"]
  data_reviews: ["https://bugzilla.mozilla.org/show_bug.cgi?id=1414839#c1"]
policy:
  aggregation_level: 2
  min_bucket_size: 5000
  bucket_column: client_count
  dimensions:
    - {{name: submission_date, category: 1, kind: date, description: "Day"}}
    - {{name: country, category: 1, kind: categorical, description: "A made-up cell"}}
  metrics:
    - {{name: client_count, sensitive: false, description: "Clients of the cell"}}
    - {{name: marker, sensitive: false, description: "Which publish wrote the row"}}
schedule: null
start_date: 2026-10-01
incremental: {incremental}
{partition}{incremental_export}params: {{n: 10, marker: 0}}
export:
  formats: [{formats}]
  max_file_bytes: {max_file_bytes}
"""


class Harness:
    """A throw-away project (declarations + queries) and an empty source warehouse under root.

    store is the public bucket; staging the private one export writes to (a local directory
    beside root by default).
    """

    def __init__(self, root: Path, store: Store, base_url: str = BASE_URL, staging: Store | None = None):
        self.root = Path(root)
        self.project = self.root / "project"
        self.store = store
        self.staging = staging or LocalStore(self.root / "private-staging")
        self.base_url = base_url
        source = self.root / "source.duckdb"
        if not source.exists():
            source.parent.mkdir(parents=True, exist_ok=True)
            duckdb.connect(str(source)).close()
        self.warehouse = DuckDBWarehouse(source, self.root / "staging")
        self.work_root = self.root / "export-work"  # where export writes parts before upload

    def declare(self, dataset_id: str, *, incremental: bool = True, formats: tuple[str, ...] = ("json",),
                max_file_bytes: int = 256 * 1024 * 1024, incremental_export: bool | None = None) -> Declaration:
        """incremental_export: None publishes an incremental table day by day (what most of these
        tests are about); False exports it whole (Mozilla's default)."""
        if incremental_export is None:
            incremental_export = incremental
        ds, _, table = dataset_id.partition(".")
        meta = self.project / "metadata" / ds / f"{table}.yaml"
        sql = self.project / "sql" / ds / f"{table}.sql"
        meta.parent.mkdir(parents=True, exist_ok=True)
        sql.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text(DECLARATION.format(
            name=dataset_id, incremental=str(incremental).lower(), formats=", ".join(formats),
            partition="partition_field: submission_date\n" if incremental else "", max_file_bytes=max_file_bytes,
            incremental_export=f"incremental_export: {str(incremental_export).lower()}\n" if incremental else "",
        ))
        sql.write_text(QUERY)
        return self.load(dataset_id)

    def load(self, dataset_id: str) -> Declaration:
        ds, _, table = dataset_id.partition(".")
        return load_declaration(self.project / "metadata" / ds / f"{table}.yaml", self.project)

    def stage(self, decl: Declaration, *, marker: int, n: int, day: dt.date = DAY):
        part = day if decl.spec.incremental else None
        return self.warehouse.stage(decl.id, decl.query, {"submission_date": day, "marker": marker, "n": n}, part,
                                    partition_field=decl.spec.partition_field, order_by=list(decl.spec.policy.columns))

    def export(self, decl: Declaration, staged, run_key: str = "run") -> list[exporting.ExportedFile]:
        return exporting.export(decl, self.warehouse, staged, self.staging, run_key, work_root=self.work_root)

    def publish(self, decl: Declaration, *, marker: int, n: int, day: dt.date = DAY, run_key: str = "run") -> dict[str, Any]:
        staged = self.stage(decl, marker=marker, n=n, day=day)
        exported = self.export(decl, staged, run_key)
        columns = [(c.name, c.type, self.warehouse.type_family(c.type)) for c in self.warehouse.columns(staged)]
        return publishing.publish(decl, staged, exported, columns, self.store, self.base_url,
                                  {"outcome": "passed", "checks": 0, "warnings": []}, staging=self.staging)

    # -- reading back, as the public would -------------------------------------------------

    def key(self, url: str) -> str:
        assert url.startswith(self.base_url), url
        return url[len(self.base_url):]

    def read_json(self, key: str) -> Any:
        obj = self.store.read(key)
        return None if obj is None else json.loads(obj.data)

    def listing(self, decl: Declaration) -> Any:
        return self.read_json(f"{decl.dataset_id.public_prefix}/files")

    def public_keys(self, decl: Declaration) -> list[str]:
        return self.store.list(decl.dataset_id.public_prefix + "/")

    def data_keys(self, decl: Declaration) -> list[str]:
        """The versions' files (in their folders), without the fixed-name copies."""
        return [k for k in self.store.list(decl.dataset_id.public_prefix + "/files/") if k not in self.fixed_keys(decl)]

    def fixed_keys(self, decl: Declaration) -> list[str]:
        """The fixed names Mozilla's clients hard-code: files/[<date>/]000000000000.json."""
        prefix = decl.dataset_id.public_prefix + "/files/"
        depth = 1 if decl.spec.per_day_files else 0  # a version's files are one folder deeper
        return [k for k in self.store.list(prefix) if k[len(prefix):].count("/") == depth]


def expected_rows(marker: int, n: int, day: dt.date = DAY) -> list[dict[str, Any]]:
    """The rows the synthetic query returns, in the published order (every column, ascending)."""
    rows = [{"submission_date": day.isoformat(), "country": f"c{i}", "client_count": 5000 + i, "marker": marker}
            for i in range(1, n + 1)]
    return sorted(rows, key=lambda r: (r["submission_date"], r["country"], r["client_count"], r["marker"]))
