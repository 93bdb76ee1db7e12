"""`pubdata run` with several datasets at once (--parallel): the same public bucket as one at a
time, and a dataset that fails leaves the others published. Real `airflow dags test` processes on
one SQLite metadata DB, one source warehouse, one local public store."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest

from pubdata.orchestration.runner import RUN_MODE_ENV, WORKER_LINE
from tests.support.project import copy_project, pubdata_cli

pytestmark = pytest.mark.airflow
DATE = "2026-11-01"
GOOD = ("telemetry_public.active_clients_by_country_v1", "telemetry_public.doh_adoption_by_country_v1",
        "telemetry_public.ssl_ratio_by_country_v1")
BROKEN = "telemetry_public.page_loads_broken_v1"
MOMENTS = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?")
"""When a document was written differs between any two runs; what it says must not."""


def _add_broken(project: Path) -> str:
    """The example with a misspelt source column: it passes the static checks and fails in stage.
    Returns the misspelt name."""
    sql = (project / "sql/telemetry_public/page_loads_by_country_v1.sql").read_text()
    summed = re.search(r"SUM\((\w+)\)", sql)
    assert summed, "the example sums a source column"
    misspelt = summed[1] + "_misspelt"
    (project / "sql/telemetry_public/page_loads_broken_v1.sql").write_text(
        sql.replace(summed[0], f"SUM({misspelt})", 1))
    meta = (project / "metadata/telemetry_public/page_loads_by_country_v1.yaml").read_text()
    (project / "metadata/telemetry_public/page_loads_broken_v1.yaml").write_text(meta)
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


def _entries(feed: str) -> tuple[str, list[str]]:
    """An Atom feed as its head and its entries in any order."""
    head, *entries = feed.split("<entry>")
    return head, sorted(entries)


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
    worker = _env(project, root / "one-worker", source_warehouse, airflow_home)
    # the baseline: one `airflow dags test` process per dataset, as pubdata run ran before its workers
    sequential = pubdata_cli("run", *GOOD, "--date", DATE, "--parallel", "1", env={**one, RUN_MODE_ENV: "per-dataset"},
                             timeout=1200)
    concurrent = pubdata_cli("run", *GOOD, BROKEN, "--date", DATE, "--parallel", "2", env=many, timeout=1200)
    # one worker process: the broken dataset first, then one that must still publish
    in_one = pubdata_cli("run", BROKEN, GOOD[0], "--date", DATE, "--parallel", "1", env=worker, timeout=1200)
    return {"one": one, "many": many, "worker": worker, "sequential": sequential, "concurrent": concurrent,
            "in_one": in_one, "misspelt": misspelt}


def test_runs_at_once_publish_the_same_bytes_as_one_at_a_time(runs):
    assert runs["sequential"].returncode == 0, runs["sequential"].stdout + runs["sequential"].stderr
    one = _tree(Path(runs["one"]["PUBDATA_HOME"]) / "public")
    many = _tree(Path(runs["many"]["PUBDATA_HOME"]) / "public")
    data = [k for k in one if "/files/" in k and k.endswith(".json")]
    assert len(data) >= len(GOOD), sorted(one)
    assert sorted(many) == sorted(one)
    for key in one:
        if key == "feed.xml":  # newest publish first: runs at once may finish in another order
            assert _entries(many[key]) == _entries(one[key])
        else:
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


def _worker_of(log: Path) -> tuple[str, str]:
    """Which worker process ran a run, and the run's number in it (its log says)."""
    found = re.search(re.escape(WORKER_LINE) + r" (\d+), its run (\d+)", log.read_text())
    assert found, log
    return found[1], found[2]


def test_a_failing_run_in_a_worker_leaves_its_next_run_published(runs):
    proc = runs["in_one"]
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert f"1 published, 1 failed: {BROKEN}" in out
    assert f'Referenced column "{runs["misspelt"]}" not found' in out
    home = Path(runs["worker"]["PUBDATA_HOME"])
    logs = home / "internal" / "logs"
    # both ran in the one worker, the broken one first: the worker outlived its failed run
    assert _worker_of(logs / BROKEN / f"{DATE}.log") == (_worker_of(logs / GOOD[0] / f"{DATE}.log")[0], "1")
    assert _worker_of(logs / GOOD[0] / f"{DATE}.log")[1] == "2"
    # the good one published what it publishes alone, the broken one nothing
    one = _tree(Path(runs["one"]["PUBDATA_HOME"]) / "public")
    mine = _tree(home / "public")
    table = GOOD[0].split(".")[1].rsplit("_v", 1)[0]
    keys = [k for k in one if f"/telemetry_public/{table}/" in k]
    assert keys and all(mine[k] == one[k] for k in keys), keys
    assert not [k for k in mine if "page_loads_misspelt" in k]
    # each its own run in the run records, the failure with its cause
    status = pubdata_cli("status", "--json", env=runs["worker"], timeout=300)
    rows = {r["dataset"]: r for r in json.loads(status.stdout)}
    assert rows[GOOD[0]]["state"] == "published", rows[GOOD[0]]
    assert rows[BROKEN]["state"] == "failed" and runs["misspelt"] in rows[BROKEN]["cause"], rows[BROKEN]
    assert rows[GOOD[0]]["run_id"] and rows[BROKEN]["run_id"] and rows[GOOD[0]]["run_id"] != rows[BROKEN]["run_id"]
