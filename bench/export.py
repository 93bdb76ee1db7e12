"""Export throughput to the local store and to fake-gcs-server, and whether export streams.

The example's staged table is a few hundred rows at any scale, so export is measured on a
row-level dataset whose staged partition is one whole source day (a third of the source rows,
no identifiers): the export then grows with the source. Ours is pubdata.export.export, the
function the export task calls (the staged rows streamed into numbered parts, uploaded, with
checksums); the limit is DuckDB's own COPY of the same table, in the same order, to one local
file. Stage stores the rows in export order, so both sides read the table in stored order; what
that sort costs stage is measured beside the query alone. Peak RSS is the whole export
process's high-water mark (VmHWM): if export streams, it barely moves between the smallest and
the largest source.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import child, sources
from bench.report import Row
from bench.validate import WIDE_ID, add_wide_dataset

RSS_TARGET_RATIO = 1.2


def export_child(dataset_id: str, staged: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    from pubdata.config import settings
    from pubdata.orchestration import tasks
    from pubdata.publishing import export as exporting
    from pubdata.stores import open_store
    from pubdata.warehouses import open_warehouse
    from pubdata.warehouses.base import StagedTable

    cfg = settings()
    decl = tasks.load(dataset_id, cfg)
    wh = open_warehouse(cfg.warehouse_url, home=cfg.home)
    store = open_store(cfg.bucket_url)
    t = time.perf_counter()
    files = exporting.export(decl, wh, StagedTable.from_dict(staged), store, "bench")
    end = time.perf_counter()
    return {"seconds": end - t, "with_imports_s": end - started, "rows": sum(f.rows for f in files),
            "bytes": sum(f.bytes for f in files), "files": len(files)}


def stage_child(dataset_id: str, day: str, ordered: bool) -> dict[str, Any]:
    """Stage the dataset as the stage task does, with or without storing it in export order."""
    import datetime as dt

    from pubdata.config import settings
    from pubdata.orchestration import tasks
    from pubdata.warehouses import open_warehouse

    cfg = settings()
    decl = tasks.load(dataset_id, cfg)
    wh = open_warehouse(cfg.warehouse_url, home=cfg.home)
    partition = dt.date.fromisoformat(day)
    t = time.perf_counter()
    staged = wh.stage(decl.id, decl.query, tasks.query_params(decl, partition), partition,
                      partition_field=decl.spec.partition_field,
                      order_by=list(decl.spec.policy.columns) if ordered else None)
    seconds = time.perf_counter() - t
    rows = wh.scalar(staged, "SELECT count(*) FROM {table}")
    return {"seconds": seconds, "staged": staged.to_dict(), "rows": int(rows)}


def copy_child(staged: dict[str, Any], order_by: list[str], dest: str) -> dict[str, Any]:
    """The limit: DuckDB's COPY of the staged table, in export order, to one local JSON file."""
    import duckdb

    t = time.perf_counter()
    con = duckdb.connect(staged["location"], read_only=True)
    in_order = list(staged.get("ordered_by") or []) == list(order_by)
    ordering = "" if in_order else " ORDER BY " + ", ".join('"' + c + '"' for c in order_by)
    con.execute(f"COPY (SELECT * FROM \"{staged['table']}\"{ordering}) TO '{dest}' (FORMAT json, ARRAY true)")
    con.close()
    seconds = time.perf_counter() - t
    size = os.path.getsize(dest)
    os.unlink(dest)
    return {"seconds": seconds, "bytes": size}


@contextlib.contextmanager
def _gcs_bucket():
    """A fresh bucket on a fake-gcs-server bound to 127.0.0.1: (bucket url, extra environment)."""
    from tests.support.gcs_emulator import create_bucket, running_fake_gcs

    with running_fake_gcs() as server:
        yield f"gs://{create_bucket(server.endpoint)}", {"STORAGE_EMULATOR_HOST": server.endpoint}


def run(scales: tuple[int, ...], gcs_scales: tuple[int, ...], work: Path, log=print) -> list[Row]:
    from pubdata.declarations import load_declaration

    rows: list[Row] = []
    rss: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="pubdata-bench-export-", dir=work) as tmp:
        project = sources.copy_project(Path(tmp) / "project")
        add_wide_dataset(project)
        ds, table = WIDE_ID.split(".")
        order_by = load_declaration(project / "metadata" / ds / f"{table}.yaml", project).spec.policy.columns
        for scale in scales:
            warehouse = sources.source_warehouse(work, scale, log)
            home = Path(tmp) / f"home-{scale}"
            env = sources.pubdata_env(project, home, warehouse)
            log(f"  staging {WIDE_ID}: the query alone, then stored in export order ...")
            alone = child.run("bench.export:stage_child", env=env, dataset_id=WIDE_ID, day=sources.DAY, ordered=False)
            stage = child.run("bench.export:stage_child", env=env, dataset_id=WIDE_ID, day=sources.DAY, ordered=True)
            rows.append(Row(
                "export", f"stage in export order, {scale:,} source rows", stage["seconds"], "s", alone["seconds"],
                "the query alone", note=f"{stage['rows']:,} rows; peak RSS {stage['peak_rss_mb']:,.0f} MiB "
                f"(query alone {alone['peak_rss_mb']:,.0f} MiB)", detail={"ordered": stage, "alone": alone}))
            targets = [("local store", env)]
            stack = contextlib.ExitStack()
            with stack:
                if scale in gcs_scales:
                    bucket, extra = stack.enter_context(_gcs_bucket())
                    targets.append(("fake-gcs-server", {**sources.pubdata_env(project, home, warehouse, bucket), **extra}))
                for name, target_env in targets:
                    log(f"  export of {stage['rows']:,} staged rows to the {name} ...")
                    base = child.run("bench.export:copy_child", staged=stage["staged"], order_by=order_by,
                                     dest=str(Path(tmp) / "copy.json"))
                    ours = child.run("bench.export:export_child", env=target_env, dataset_id=WIDE_ID, staged=stage["staged"])
                    mb = ours["bytes"] / 1e6
                    rows.append(Row(
                        "export", f"{name}, {scale:,} source rows", ours["seconds"], "s", base["seconds"],
                        "DuckDB COPY, same order", note=f"{ours['rows']:,} rows, {mb:,.0f} MB in {ours['files']} file(s): "
                        f"{ours['rows'] / ours['seconds']:,.0f} rows/s, {mb / ours['seconds']:,.1f} MB/s; "
                        f"peak RSS {ours['peak_rss_mb']:,.0f} MiB", detail={"ours": ours, "copy": base, "staged_rows": stage["rows"]}))
                    if name == "local store":
                        rss[scale] = ours["peak_rss_mb"]
    if len(rss) >= 2:
        lo, hi = min(rss), max(rss)
        rows.append(Row("export", f"peak RSS {hi:,} vs {lo:,} source rows", rss[hi], "MiB", rss[lo], f"at {lo:,}",
                        f"<= {RSS_TARGET_RATIO:g}x", rss[hi] <= RSS_TARGET_RATIO * rss[lo], "export process high-water mark"))
    if len(rss) >= 3:
        # Between the two largest sources as well: more data must not mean more memory.
        mid, hi = sorted(rss)[-2:]
        rows.append(Row("export", f"peak RSS {hi:,} vs {mid:,} source rows", rss[hi], "MiB", rss[mid], f"at {mid:,}",
                        note="flat if export streams"))
    return rows
