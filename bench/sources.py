"""Synthetic source warehouses and throw-away projects for the benchmarks.

Warehouses are generated once per scale under the work directory and reused while their recorded
(seed, scale) matches: 50M rows take minutes and a few GB of disk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import child

REPO = child.REPO
EXAMPLE_ID = "telemetry_public.page_loads_by_country_v1"
DAY = "2026-11-01"
GENERATE_MEMORY_LIMIT = "4GB"


def generate_child(path: str, scale: int, memory_limit: str) -> dict[str, Any]:
    """Generate the synthetic tables with DuckDB's memory capped (its default is 80% of RAM).

    synthetic.generate opens its own connection; on a shared machine its 50M-row sort must spill
    to disk instead of taking most of the memory, so the connection it opens here gets a limit.
    """
    import time

    import duckdb

    from pubdata.sources import synthetic

    connect = duckdb.connect

    class CappedDuckDB:
        Error = duckdb.Error

        @staticmethod
        def connect(database: str, **kwargs: Any):
            return connect(database, config={"memory_limit": memory_limit, **kwargs.pop("config", {})}, **kwargs)

    synthetic.duckdb = CappedDuckDB  # type: ignore[assignment]
    started = time.perf_counter()
    counts = synthetic.generate(Path(path), synthetic.SynthSpec(scale=scale))
    return {"seconds": time.perf_counter() - started, "counts": counts}


def source_warehouse(work: Path, scale: int, log=print) -> Path:
    """The synthetic source warehouse of `scale` rows of clients_daily, generated if needed."""
    from pubdata.sources.synthetic import existing_spec

    path = work / f"source-{scale}.duckdb"
    spec = existing_spec(path)
    if spec is None or spec.scale != scale:
        log(f"  generating the {scale:,}-row source warehouse ({path}) ...")
        path.parent.mkdir(parents=True, exist_ok=True)
        result = child.run("bench.sources:generate_child", path=str(path), scale=scale,
                           memory_limit=GENERATE_MEMORY_LIMIT, timeout=4 * 3600)
        log(f"  generated in {result['seconds']:.0f} s (peak RSS {result['peak_rss_mb']:.0f} MiB)")
    return path


def copy_project(dest: Path) -> Path:
    """The repository's declarations, queries and DAG file, in a directory a run may scribble in."""
    from tests.support.project import copy_project as copy  # the test suite's own copy, one definition

    return copy(dest)


def pubdata_env(project: Path, home: Path, warehouse: Path, bucket: str | None = None) -> dict[str, str]:
    return {
        "PUBDATA_PROJECT": str(project),
        "PUBDATA_HOME": str(home),
        "PUBDATA_WAREHOUSE": f"duckdb://{warehouse}",
        "PUBDATA_BUCKET": bucket or f"file://{home / 'public'}",
        "PUBDATA_PUBLIC_BASE_URL": "http://localhost:8000/",
        "PUBDATA_ALERT_WEBHOOK_URL": "",
        "GX_ANALYTICS_ENABLED": "False",
        "PYTHONWARNINGS": "ignore",
    }


def stage_child(dataset_id: str, day: str) -> dict[str, Any]:
    """Stage a dataset through the pipeline's own task (the environment names the project)."""
    import datetime as dt

    from pubdata.config import settings
    from pubdata.orchestration import tasks
    from pubdata.warehouses import open_warehouse
    from pubdata.warehouses.base import StagedTable

    staged = tasks.stage(dataset_id, dt.date.fromisoformat(day), "bench")
    cfg = settings()
    rows = open_warehouse(cfg.warehouse_url, home=cfg.home).scalar(StagedTable.from_dict(staged), "SELECT count(*) FROM {table}")
    return {"staged": staged, "rows": int(rows)}
