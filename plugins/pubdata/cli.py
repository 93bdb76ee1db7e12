"""The `pubdata` command line."""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from pubdata import policy
from pubdata.config import settings
from pubdata.declaration import load_all

app = typer.Typer(help="Publish reviewed, aggregated telemetry to a public bucket, safely.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
console = Console()
err = Console(stderr=True)


def _select(ids: list[str] | None):
    cfg = settings()
    catalog = load_all(cfg.project)
    if ids:
        unknown = [i for i in ids if i not in catalog.declarations]
        broken = {str(e.path) for e in catalog.errors}
        for i in unknown:
            hint = " (its declaration has errors: run `pubdata check`)" if any(i.split(".")[0] in b for b in broken) else ""
            err.print(f"[red]unknown dataset {i}[/red]{hint}; known: {', '.join(sorted(catalog.declarations)) or 'none'}")
        if unknown:
            raise typer.Exit(2)
        return cfg, catalog, [catalog.declarations[i] for i in ids]
    return cfg, catalog, list(catalog.declarations.values())


@app.command()
def synth(
    scale: Annotated[int, typer.Option(help="Rows of clients_daily.")] = 1_000_000,
    seed: Annotated[int, typer.Option(help="Seed; the same seed and scale give the same tables.")] = 20261101,
    days: Annotated[int, typer.Option(help="Days of data, ending at --end.")] = 3,
    end: Annotated[str, typer.Option(help="Last day of data (YYYY-MM-DD).")] = "2026-11-01",
    force: Annotated[bool, typer.Option(help="Regenerate even if the warehouse already matches.")] = False,
):
    """Generate the synthetic source tables in the embedded DuckDB warehouse."""
    from pubdata import synthetic

    cfg = settings()
    if not cfg.warehouse_url.startswith("duckdb://"):
        err.print("[red]pubdata synth writes the embedded DuckDB warehouse; PUBDATA_WAREHOUSE is not duckdb://[/red]")
        raise typer.Exit(2)
    from pubdata.warehouses.duckdb import DuckDBWarehouse

    path = DuckDBWarehouse.from_url(cfg.warehouse_url).source
    spec = synthetic.SynthSpec(seed=seed, scale=scale, end_date=dt.date.fromisoformat(end), days=days)
    if not force and synthetic.existing_spec(path) == spec:
        console.print(f"synthetic warehouse {path} is up to date (seed {seed}, {scale:,} rows)")
        return
    counts = synthetic.generate(path, spec)
    for table, n in counts.items():
        console.print(f"{table}: {n:,} rows")
    console.print(f"wrote {path}")


@app.command()
def check(ids: Annotated[Optional[list[str]], typer.Argument(help="Dataset ids; all when omitted.")] = None,
          all_: Annotated[bool, typer.Option("--all", help="Also report datasets that will not publish, and exit 0.")] = False):
    """Validate declarations and the publishing policy; exit 1 naming file, rule and fix."""
    from pubdata import checks

    cfg, catalog, decls = _select(ids)
    problems = checks.check_catalog(cfg, catalog, decls, include_load_errors=not ids)
    table = Table(title="pubdata check", show_lines=False)
    for col in ("dataset", "verdict", "result"):
        table.add_column(col)
    bad = {p.dataset for p in problems}
    for d in decls:
        v = policy.verdict(d.spec)
        table.add_row(d.id, v.status, "[red]problems[/red]" if d.id in bad else "[green]ok[/green]")
    console.print(table)
    for p in problems:
        console.print(f"[red]✗[/red] {p.file}: [bold]{p.rule}[/bold]: {p.message}\n    fix: {p.fix}")
    if problems and not all_:
        raise typer.Exit(1)
    if not problems:
        console.print(f"[green]all {len(decls)} declaration(s) pass[/green]")


@app.command()
def run(ids: Annotated[Optional[list[str]], typer.Argument(help="Dataset ids; all declared datasets when omitted.")] = None,
        date: Annotated[str, typer.Option(help="The day to publish (YYYY-MM-DD).")] = ...):
    """Run datasets' DAGs through Airflow for one date, then print a summary."""
    from pubdata import runner

    try:
        day = dt.date.fromisoformat(date)
    except ValueError:
        err.print(f"[red]--date {date!r} is not a date; use YYYY-MM-DD[/red]")
        raise typer.Exit(2) from None
    cfg, catalog, decls = _select(ids)
    for e in catalog.errors if not ids else []:
        err.print(f"[yellow]skipped:[/yellow] {e}")
    runnable, refused = [], []
    for d in decls:
        v = policy.verdict(d.spec)
        (runnable if v.allows_publish else refused).append((d, v))
    console.print(f"Preparing Airflow (metadata DB under {cfg.airflow_home}) ...")
    runner.ensure_airflow_db(cfg)
    outcomes = []
    for d, _ in runnable:
        with console.status(f"running {d.dag_id} for {day} through Airflow ..."):
            out = runner.run_dag(cfg, d.id, d.dag_id, day.isoformat(), day.isoformat() if d.spec.incremental else None)
        mark = "[green]published[/green]" if out.ok else "[red]FAILED[/red]"
        console.print(f"{d.id}: {mark} in {out.seconds}s (log: {_rel(out.log)})")
        outcomes.append((d, out))
    _summary(cfg, outcomes, refused, day)
    if any(not o.ok for _, o in outcomes):
        raise typer.Exit(1)


def _rel(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _summary(cfg, outcomes, refused, day) -> None:
    from pubdata.publish import table_prefix

    table = Table(title=f"pubdata run — {day}")
    for col in ("dataset", "rows", "validation", "files", "review", "where to look"):
        table.add_column(col, overflow="fold")
    for d, out in outcomes:
        rec = out.record or {}
        validation = (rec.get("validation") or {})
        outcome = validation.get("outcome", "not run")
        if outcome == "failed":
            outcome = "failed: " + "; ".join(f["description"] for f in validation.get("failures", []))
        elif outcome == "error":
            outcome = "error: " + "; ".join(str(f["error"])[:80] for f in validation.get("errors", []))
        files = len((rec.get("published") or {}).get("files", []))
        if out.ok:
            where = f"{cfg.bucket_url}/{table_prefix(d)}/  ·  {cfg.public_base_url}{table_prefix(d)}/metadata.json"
        else:
            where = f"log {_rel(out.log)}" + (" · staged table kept as quarantine" if rec.get("state") == "quarantined" else "")
        table.add_row(d.id, f"{rec.get('rows', '-')}", outcome, str(files), str(d.spec.review.bugs[0]), where)
    for d, v in refused:
        table.add_row(d.id, "-", f"not run: {v.status}", "0", str(d.spec.review.bugs[0]), "; ".join(v.reasons))
    console.print(table)
    console.print(f"Public bucket: {cfg.bucket_url}  (index: {cfg.public_base_url}all-datasets.json)")


@app.command()
def review(dataset_id: Annotated[str, typer.Argument(help="Dataset id, e.g. telemetry_public.page_loads_by_country_v1")]):
    """Print the four review questions, the verdict and the steward's checklist for a review bug."""
    cfg, catalog, decls = _select([dataset_id])
    d = decls[0]
    v = policy.verdict(d.spec)
    console.print(f"## Data publishing review: {d.id}\n")
    console.print(f"{d.spec.friendly_name}\n\nAggregation level {d.spec.policy.aggregation_level}; query sql/{d.dataset}/{d.table}_v{d.version}.sql (sha256 {d.query_sha256})\n")
    for a in v.answers:
        console.print(f"{a.number}. {a.question}\n   {'YES' if a.answer else 'no'}: {a.reason}")
    console.print(f"\nVerdict: {v.status}")
    for r in v.reasons:
        console.print(f"  - {r}")
    if v.fix:
        console.print(f"Fix: {v.fix}")
    checklist = policy.steward_checklist(d.spec)
    if checklist:
        console.print("\nThe data steward must check:")
        for item in checklist:
            console.print(f"  [ ] {item}")


@app.command()
def status():
    """The latest run of each dataset: outcome, when, rows, failing expectations."""
    from pubdata import records

    cfg, catalog, decls = _select(None)
    table = Table(title="pubdata status")
    for col in ("dataset", "partition", "state", "when", "rows", "failing expectations"):
        table.add_column(col, overflow="fold")
    for d in decls:
        rec = records.latest(cfg.internal_dir, d.id) or {}
        fails = "; ".join(f["description"] for f in (rec.get("validation") or {}).get("failures", []))
        table.add_row(d.id, str(rec.get("partition") or "-"), rec.get("state", "never run"),
                      rec.get("updated_at", "-"), str(rec.get("rows", "-")), fails)
    console.print(table)


@app.command()
def serve(port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8000,
          host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1"):
    """Serve the local public bucket over HTTP at PUBDATA_PUBLIC_BASE_URL (read-only)."""
    import time

    from pubdata import serve as serving
    from pubdata.stores import open_store
    from pubdata.stores.local import LocalStore

    cfg = settings()
    store = open_store(cfg.bucket_url)
    if not isinstance(store, LocalStore):
        err.print(f"[red]{cfg.bucket_url} is not a local bucket; it is served by its own host[/red]")
        raise typer.Exit(2)
    server = serving.start(store, host, port, verbose=True)
    console.print(f"serving {store.root} at http://{host}:{port}/  (index: http://{host}:{port}/all-datasets.json); Ctrl-C stops")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.shutdown()


def main() -> None:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    code: int = 0
    try:
        app()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    # duckdb's bindings print spurious "leaked" lines at interpreter teardown; skip it.
    os._exit(code)


if __name__ == "__main__":
    main()
