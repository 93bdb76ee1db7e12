"""`pubdata run` with several datasets at once (--parallel): the same public bucket as one at a
time, and a dataset that fails leaves the others published. Real `airflow dags test` processes on
one SQLite metadata DB, one source warehouse, one local public store."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest

from tests.support.project import copy_project, pubdata_cli

pytestmark = pytest.mark.airflow
DATE = "2026-11-01"
GOOD = ("telemetry_public.active_clients_by_country_v1", "telemetry_public.doh_adoption_by_country_v1",
        "telemetry_public.ssl_ratio_by_country_v1")
BROKEN = "telemetry_public.page_loads_misspelt_v1"
MOMENTS = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?")
"""When a document was written differs between any two runs; what it says must not."""


def _add_broken(project: Path) -> str:
    """The example with a misspelt source column: it passes the static checks and fails in stage.
    Returns the misspelt name."""
    sql = (project / "sql/telemetry_public/page_loads_by_country_v1.sql").read_text()
    summed = re.search(r"SUM\((\w+)\)", sql)
    assert summed, "the example sums a source column"
    misspelt = summed[1] + "_misspelt"
    (project / "sql/telemetry_public/page_loads_misspelt_v1.sql").write_text(
        sql.replace(summed[0], f"SUM({misspelt})", 1))
    meta = (project / "metadata/telemetry_public/page_loads_by_country_v1.yaml").read_text()
    (project / "metadata/telemetry_public/page_loads_misspelt_v1.yaml").write_text(meta)
    return misspelt


def _env(project: Path, home: Path, source_warehouse: Path, airflow_home: Path) -> dict[str, str]:
    return {"PUBDATA_PROJECT": str(project), "PUBDATA_HOME": str(home),
            "PUBDATA_WAREHOUSE": f"duckdb://{source_warehouse}", "PUBDATA_BUCKET": f"file://{home / 'public'}",
            "PUBDATA_AIRFLOW_HOME": str(airflow_home), "PUBDATA_PUBLIC_BASE_URL": "http://127.0.0.1:8000/"}


def _tree(root: Path) -> dict[str, str]:
    """Every object of the public store by key, its bytes with the moments they were written masked."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            text = p.read_bytes().decode("utf-8", errors="surrogateescape")
            out[str(p.relative_to(root))] = MOMENTS.sub("<moment>", text)
    return out


def _span(log: Path) -> tuple[dt.datetime, dt.datetime]:
    """When a run's `airflow dags test` logged its first and its last line."""
    stamps = [dt.datetime.fromisoformat(m[0].replace("Z", "+00:00"))
              for m in (re.match(r"\d{4}-\d\d-\d\dT\S+Z", ln) for ln in log.read_text().splitlines()) if m]
    return stamps[0], stamps[-1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, source_warehouse, airflow_home):
    root = tmp_path_factory.mktemp("concurrent")
    project = copy_project(root / "project")
    misspelt = _add_broken(project)
    one = _env(project, root / "one-at-a-time", source_warehouse, airflow_home)
    many = _env(project, root / "at-once", source_warehouse, airflow_home)
    sequential = pubdata_cli("run", *GOOD, "--date", DATE, "--parallel", "1", env=one, timeout=1200)
    concurrent = pubdata_cli("run", *GOOD, BROKEN, "--date", DATE, "--parallel", "2", env=many, timeout=1200)
    return {"one": one, "many": many, "sequential": sequential, "concurrent": concurrent, "misspelt": misspelt}


def test_runs_at_once_publish_the_same_bytes_as_one_at_a_time(runs):
    assert runs["sequential"].returncode == 0, runs["sequential"].stdout + runs["sequential"].stderr
    one = _tree(Path(runs["one"]["PUBDATA_HOME"]) / "public")
    many = _tree(Path(runs["many"]["PUBDATA_HOME"]) / "public")
    data = [k for k in one if "/files/" in k and k.endswith(".json")]
    assert len(data) >= len(GOOD), sorted(one)
    assert sorted(many) == sorted(one)
    for key in one:
        assert many[key] == one[key], key
    index = json.loads((Path(runs["many"]["PUBDATA_HOME"]) / "public" / "all-datasets.json").read_text())
    assert sorted(f"{ds}.{t}_{v}" for ds, tables in index.items() for t, vs in tables.items() for v in vs) == sorted(GOOD)


def test_a_failing_dataset_fails_alone_and_the_run_says_so(runs):
    proc = runs["concurrent"]
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert f"3 published, 1 failed: {BROKEN}" in out
    assert f'Referenced column "{runs["misspelt"]}" not found' in out
    for ds in GOOD:
        assert f"{ds}: published in " in out
        table = ds.split(".")[1].rsplit("_v", 1)[0]
        assert (Path(runs["many"]["PUBDATA_HOME"]) / "public/api/v1/tables/telemetry_public" / table / "v1/metadata.json").is_file()
    assert "catalog: rebuilt" in out
    # whole lines: every task line names its dataset, and none is cut into another
    task_lines = [ln for ln in out.splitlines() if re.match(r"\s+\S+: [✓✗…] ", ln)]
    assert task_lines and all(ln.split(":")[0].strip() in (*GOOD, BROKEN) for ln in task_lines), task_lines


def test_at_most_parallel_runs_at_once_and_they_did_overlap(runs):
    logs = Path(runs["many"]["PUBDATA_HOME"]) / "internal" / "logs"
    spans = [_span(logs / ds / f"{DATE}.log") for ds in (*GOOD, BROKEN)]
    moments = sorted({t for s in spans for t in s})
    at_once = max(sum(1 for a, b in spans if a <= t <= b) for t in moments)
    assert at_once == 2, spans
