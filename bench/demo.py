"""`make demo` and one dataset's `pubdata run`, each beside its baseline, through real Airflow.

demo: `pubdata run --date D` over every declared dataset, several at once (the default: one per
core) in worker processes (the default), against the same command with one `airflow dags test`
process per dataset (PUBDATA_RUN_MODE=per-dataset), at once and with `--parallel 1` (one after
another, as `make demo` ran before). one dataset: `pubdata run ID --date D` (one worker process
running the DAG as `airflow dags test` does: Airflow's start, its DAG parse and in-process API,
the four tasks, then the catalog DAG) against the same four steps called in one fresh Python process with no Airflow (bench.publish's pipeline child).

Every measurement starts with an empty public bucket and run state; all share one source
warehouse (read-only) and one Airflow metadata DB, migrated by a run before the first
measurement, as `make demo` finds it on its second run. The two sides alternate, so load on the
machine falls on both; each keeps the best of its repeats.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import child, sources
from bench.report import Row
from pubdata.orchestration.runner import RUN_MODE_ENV

DEMO_SCALE = 1_000_000
"""Rows of clients_daily `make demo` generates (`pubdata synth`'s default)."""


def _pubdata(args: list[str], env: dict[str, str]) -> float:
    exe = Path(sys.executable).with_name("pubdata")
    started = time.perf_counter()
    proc = subprocess.run([str(exe), *args], env={**os.environ, **env, "COLUMNS": "200"},
                          capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise child.ChildFailed(f"pubdata {' '.join(args)} failed (exit {proc.returncode}):\n"
                                f"{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return seconds


def measure(repeats: int, work: Path, log=print) -> dict[str, Any]:
    from bench.machine import load_average

    warehouse = sources.source_warehouse(work, DEMO_SCALE, log)
    out: dict[str, list[float]] = {"concurrent": [], "concurrent_per_dataset": [], "sequential": [], "one_run": [],
                                   "one_process": []}
    loads: list[float] = [load_average()[0]]
    with tempfile.TemporaryDirectory(prefix="pubdata-bench-demo-", dir=work) as tmp:
        project = sources.copy_project(Path(tmp) / "project")
        airflow_home = Path(tmp) / "airflow"

        def env(name: str) -> dict[str, str]:
            return {**sources.pubdata_env(project, Path(tmp) / name, warehouse),
                    "PUBDATA_AIRFLOW_HOME": str(airflow_home)}

        log("  demo: preparing Airflow's metadata DB (one unmeasured run) ...")
        _pubdata(["run", sources.EXAMPLE_ID, "--date", sources.DAY], env("warm-up"))
        for i in range(repeats):
            log(f"  demo, run {i + 1}/{repeats}: every dataset one at a time ...")
            out["sequential"].append(_pubdata(["run", "--date", sources.DAY, "--parallel", "1"],
                                              {**env(f"seq-{i}"), RUN_MODE_ENV: "per-dataset"}))
            log(f"    {out['sequential'][-1]:.1f} s")
            log(f"  demo, run {i + 1}/{repeats}: every dataset at once, in worker processes (the default) ...")
            out["concurrent"].append(_pubdata(["run", "--date", sources.DAY], env(f"conc-{i}")))
            log(f"    {out['concurrent'][-1]:.1f} s")
            loads.append(load_average()[0])
            log(f"  demo, run {i + 1}/{repeats}: every dataset at once, one `airflow dags test` process each ...")
            out["concurrent_per_dataset"].append(_pubdata(["run", "--date", sources.DAY],
                                                          {**env(f"conc-pd-{i}"), RUN_MODE_ENV: "per-dataset"}))
            log(f"    {out['concurrent_per_dataset'][-1]:.1f} s")
            loads.append(load_average()[0])
            log(f"  one dataset, run {i + 1}/{repeats}: the four steps in one process ...")
            r = child.run("bench.publish:pipeline_child", env=env(f"proc-{i}"), dataset_id=sources.EXAMPLE_ID,
                          day=sources.DAY)
            out["one_process"].append(r["process_wall_s"])
            log(f"    {r['process_wall_s']:.1f} s (steps: {', '.join(f'{k} {v:.1f}' for k, v in r['steps'].items())})")
            log(f"  one dataset, run {i + 1}/{repeats}: pubdata run ...")
            out["one_run"].append(_pubdata(["run", sources.EXAMPLE_ID, "--date", sources.DAY], env(f"one-{i}")))
            log(f"    {out['one_run'][-1]:.1f} s")
            loads.append(load_average()[0])
    return {"runs": out, "loads": loads, "parallel": max(len(os.sched_getaffinity(0)), 1)}


def run(repeats: int, work: Path, log=print) -> list[Row]:
    r = measure(repeats, work, log)
    runs, loads = r["runs"], r["loads"]
    load = f"load {min(loads):.1f}-{max(loads):.1f}; best of {repeats}"
    return [
        Row("demo", f"every dataset, {r['parallel']} at once in worker processes", min(runs["concurrent"]), "s",
            min(runs["concurrent_per_dataset"]), f"{r['parallel']} at once, one `airflow dags test` process each",
            note=load, detail=r),
        Row("demo", f"every dataset, {r['parallel']} at once in worker processes", min(runs["concurrent"]), "s",
            min(runs["sequential"]), "one at a time, one `airflow dags test` process each", note=load),
        Row("demo", f"one dataset ({sources.EXAMPLE_ID}), pubdata run", min(runs["one_run"]), "s",
            min(runs["one_process"]), "the four steps in one process, no Airflow", note=load),
    ]
