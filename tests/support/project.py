"""The test suite's project: a copy of the repository's declarations, the example dataset and
the rows tests stage as it, and the installed `pubdata` command."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TEST_SCALE = 300_000  # rows of clients_daily: 100k clients a day, a few cells over 5,000


def copy_project(dest: Path) -> Path:
    for name in ("dags", "metadata", "sql", "expectations", "schema"):
        if (REPO / name).exists():
            shutil.copytree(REPO / name, dest / name)
    (dest / "plugins").mkdir(exist_ok=True)
    return dest


EXAMPLE = "telemetry_public.page_loads_by_country_v1"
# The example's staged shape with every row at or above the minimum bucket.
GOOD_ROWS = """
    SELECT * FROM (VALUES
      (DATE '2026-11-01', 'US', 'Windows_NT', 'en-US', 'release', 120000, 6000),
      (DATE '2026-11-01', 'DE', 'Windows_NT', 'de', 'release', 90000, 5000),
      (DATE '2026-11-01', 'Other', 'Other', 'Other', 'Other', 400000, 25000)
    ) t(submission_date, country, os, locale, normalized_channel, page_loads, client_count)
"""


MISCOUNTED = "telemetry_public.page_loads_miscounted_v1"


def add_miscounted_example(project: Path) -> str:
    """A version of the example whose client_count lies (a scaled count): every staged row has at
    least the minimum of clients, as the warehouse counts them, but the column the public reads
    says otherwise, so validation fails."""
    (project / "sql/telemetry_public/page_loads_miscounted_v1.sql").write_text(
        "SELECT @submission_date AS submission_date, country, os, locale, normalized_channel,\n"
        "       SUM(scalar_parent_browser_engagement_total_uri_count_sum) AS page_loads, COUNT(DISTINCT client_id) * 2 AS client_count\n"
        "FROM `moz-fx-data-shared-prod.telemetry.clients_daily`\n"
        "WHERE submission_date = @submission_date\n"
        "GROUP BY country, os, locale, normalized_channel\n"
    )
    meta = (project / "metadata/telemetry_public/page_loads_by_country_v1.yaml").read_text()
    (project / "metadata/telemetry_public/page_loads_miscounted_v1.yaml").write_text(meta)
    return MISCOUNTED


def local_path(url: str) -> Path:
    """The file behind a file:// link (a report's, in the local run-state store)."""
    from urllib.parse import unquote, urlsplit

    assert url.startswith("file://"), url
    return Path(unquote(urlsplit(url).path))


def pubdata_cli(*args: str, env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the installed `pubdata` command as a user would."""
    exe = Path(sys.executable).with_name("pubdata")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200", **(env or {})})


def staged_exists(warehouse, staged) -> bool:
    """Whether the staged table is still there (DuckDB: a table in the dataset's staging file)."""
    import duckdb

    path = warehouse.staging_file(staged.dataset_id)
    if not path.exists():
        return False
    con = duckdb.connect(str(path), read_only=True)
    try:
        return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?",
                                [staged.table]).fetchone()[0])
    finally:
        con.close()
