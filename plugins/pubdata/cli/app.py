"""The `pubdata` command line."""

from __future__ import annotations

import datetime as dt
import os
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pubdata.config import settings
from pubdata.declarations import Declaration, load_all
from pubdata.policy.verdict import Verdict, verdict

app = typer.Typer(help="Publish reviewed, aggregated telemetry to a public bucket, safely.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
# Piped or under make, rich would wrap every table at 80 columns; COLUMNS still wins when set.
_WIDTH = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 240
console = Console(width=_WIDTH)
err = Console(stderr=True, width=None if sys.stderr.isatty() or os.environ.get("COLUMNS") else 160)


def _select(ids: list[str] | None, catalog=None):
    cfg = settings()
    catalog = catalog if catalog is not None else load_all(cfg.project)
    if ids:
        unknown = [i for i in ids if i not in catalog.declarations]
        broken = {str(e.path) for e in catalog.problems}
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
    from pubdata.sources import synthetic

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
def load(case: Annotated[Path, typer.Argument(help="A SQL test case directory, e.g. tests/sql/<ds>/<table>_v<N>/<case>/.")]):
    """Load a SQL test case's input rows into the embedded warehouse, replacing those tables."""
    from pubdata.sources.fixtures import FixtureError, load_case

    cfg = settings()
    if not cfg.warehouse_url.startswith("duckdb://"):
        err.print("[red]pubdata load writes the embedded DuckDB warehouse; PUBDATA_WAREHOUSE is not duckdb://[/red]")
        raise typer.Exit(2)
    from pubdata.warehouses.duckdb import DuckDBWarehouse

    path = DuckDBWarehouse.from_url(cfg.warehouse_url).source
    try:
        counts = load_case(case, path)
    except FixtureError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    for table, n in counts.items():
        console.print(f"{table}: {n:,} rows")
    console.print(f"loaded into {path} (other tables unchanged; `pubdata synth` regenerates the synthetic ones)")


@app.command()
def check(ids: Annotated[list[str] | None, typer.Argument(help="Dataset ids; all when omitted.")] = None,
          all_: Annotated[bool, typer.Option("--all", help="Also report datasets that will not publish, and exit 0.")] = False):
    """Validate declarations and the publishing policy; exit 1 naming file, rule and fix."""
    from pubdata import gate

    cfg = settings()
    catalog = load_all(cfg.project)
    broken = _broken(cfg, catalog, ids or [])
    wanted = [i for i in ids or [] if i not in broken]
    _cfg, catalog, decls = _select(wanted or None, catalog=catalog) if wanted or not ids else (cfg, catalog, [])
    # The same cache the DAG factory reads: a check here spares the next DAG parse the work.
    cache = gate.GateCache(cfg.internal_dir / "cache" / gate.GATE_FILE)
    problems = gate.check_all(cfg.project, catalog, decls, include_load_errors=not ids, cache=cache) if decls or not ids else []
    for path_problems in broken.values():
        problems += [gate.Problem(str(e.path), e.where, f"declaration: {e.field or 'file'}", e.message,
                                  "fix the file; see schema/declaration.schema.json") for e in path_problems]
    problems += _missing_sources(cfg, decls)
    table = Table(title="pubdata check", show_lines=False)
    for col in ("dataset", "verdict", "result"):
        table.add_column(col)
    bad = {p.dataset for p in problems if not p.intended}
    for d in decls:
        v = verdict(d.spec)
        result = ("[red]problems[/red]" if d.id in bad else
                  "[yellow]refused on purpose[/yellow]" if d.spec.refused_on_purpose else "[green]ok[/green]")
        table.add_row(d.id, v.status, result)
    for i in broken:
        table.add_row(i, "-", "[red]declaration errors[/red]")
    console.print(table)
    failing = [p for p in problems if not p.intended]
    for p in problems:
        if p.intended:
            console.print(f"[yellow]○[/yellow] {p.file}: [bold]{p.rule}[/bold] (refused on purpose: the declaration's "
                          f"refused_on_purpose says why): {p.message}\n    fix: {p.fix}")
        else:
            console.print(f"[red]✗[/red] {p.file}: [bold]{p.rule}[/bold]: {p.message}\n    fix: {p.fix}")
    if failing and not all_:
        raise typer.Exit(1)
    if not failing:
        intended = {p.dataset for p in problems if p.intended}
        console.print(f"[green]all {len(decls) - len(intended)} declaration(s) pass[/green]"
                      + (f"; {len(intended)} refused on purpose, as marked" if intended else ""))


def _missing_sources(cfg, decls) -> list:
    """Declared source tables the configured warehouse lacks (the local one, when it exists): the
    run would fail on them, so check names each with the command that creates it."""
    from pubdata import gate
    from pubdata.declarations.loader import relative
    from pubdata.errors import ConfigurationError, WarehouseError
    from pubdata.warehouses import open_warehouse

    try:
        warehouse = open_warehouse(cfg.warehouse_url, home=cfg.home)
        missing = warehouse.missing_sources([t for d in decls for t in d.spec.source_tables])
    except (ConfigurationError, WarehouseError, ImportError):
        return []
    return [gate.Problem(d.id, str(relative(d.metadata_path, cfg.project)), "source: missing table",
                         f"source_tables names {missing[t]}", "create or load the table as said, then run again")
            for d in decls for t in d.spec.source_tables if t in missing]


def _broken(cfg, catalog, ids: list[str]) -> dict:
    """The asked-for datasets whose declaration exists but does not load: id -> its problems."""
    from pubdata.declarations.loader import relative
    from pubdata.ids import DatasetId

    out = {}
    for i in ids:
        if i in catalog.declarations:
            continue
        try:
            path = relative(DatasetId.parse(i).metadata_path(cfg.project), cfg.project)
        except ValueError:
            continue
        found = [e for e in catalog.problems if Path(e.path) == path]
        if found:
            out[i] = found
    return out


@app.command()
def run(date: Annotated[str, typer.Option(help="The day to publish (YYYY-MM-DD).")],
        ids: Annotated[list[str] | None, typer.Argument(help="Dataset ids; all declared datasets when omitted.")] = None,
        parallel: Annotated[int | None, typer.Option(
            min=1, help="Datasets run at once, in as many Airflow worker processes (default: one per core; 1 runs "
                        "them one after another).")] = None):
    """Run datasets' DAGs through Airflow for one date, then print a summary."""
    from pubdata.orchestration import runner, tasks

    day = _parse_day(date, "--date")
    cfg, catalog, decls = _select(ids)
    for e in catalog.problems if not ids else []:
        err.print(f"[yellow]skipped:[/yellow] {e}")
    runnable: list[tuple[Declaration, Verdict]] = []
    refused: list[tuple[Declaration, Verdict]] = []
    too_early: list[tuple[Declaration, str]] = []
    for d in decls:
        v = verdict(d.spec)
        if v.allows_publish and d.spec.incremental and day < d.spec.start_date:
            too_early.append((d, tasks.before_start_date(d, day)))
            err.print(f"[red]{d.id}: not run[/red]: {too_early[-1][1]}")
            continue
        (runnable if v.allows_publish else refused).append((d, v))
    if runnable:
        console.print(f"Preparing Airflow (metadata DB under {cfg.airflow_home}) ...")
        runner.ensure_airflow_db(cfg)
        runner.prime_gate(cfg, [d for d, _ in runnable])
    at_once = min(parallel or runner.default_parallel(), max(len(runnable), 1))
    try:
        mode = runner.run_mode()
    except ValueError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    outcomes = []
    jobs = [runner.DagJob(d.id, d.dag_id, day.isoformat() if d.spec.incremental else None) for d, _ in runnable]
    if at_once <= 1 and mode == "workers":
        with console.status(f"{len(jobs)} datasets running one after another in one Airflow process ...") as status:
            found = runner.run_dags(cfg, jobs, day.isoformat(), 1, on_task=lambda ds, ev: _task_progress(ds, status)(ev),
                                    on_done=_print_outcome, mode=mode)
        outcomes = [(d, out) for (d, _), out in zip(runnable, found)]
    elif at_once <= 1:
        for d, _ in runnable:
            with console.status(f"{d.id}: starting {d.dag_id} for {day} through Airflow ...") as status:
                out = runner.run_dag(cfg, d.id, d.dag_id, day.isoformat(), day.isoformat() if d.spec.incremental else None,
                                     on_task=_task_progress(d.id, status))
            _print_outcome(out)
            outcomes.append((d, out))
    else:
        console.print(f"Running {len(runnable)} datasets through Airflow, {at_once} at once (--parallel 1: one at a time) ...")
        with console.status(f"{len(jobs)} datasets running ...") as status:
            done: list[str] = []

            def on_done(out) -> None:
                done.append(out.dataset_id)
                _print_outcome(out)
                status.update(f"{len(done)} of {len(jobs)} datasets done ...")

            found = runner.run_dags(cfg, jobs, day.isoformat(), at_once, on_task=_prefixed_progress, on_done=on_done,
                                    mode=mode)
        outcomes = [(d, out) for (d, _), out in zip(runnable, found)]
    catalog_ok = True
    if any(o.ok for _, o in outcomes):
        # What the scheduler does after a batch of publishes: the catalog DAG, once.
        with console.status("rebuilding the public catalog (pubdata_catalog) through Airflow ...") as status:
            cat = runner.run_catalog(cfg, day.isoformat(), on_task=_task_progress("catalog", status))
        catalog_ok = cat.returncode == 0
        mark = "[green]rebuilt[/green]" if catalog_ok else "[red]FAILED[/red]"
        console.print(f"catalog: {mark} in {cat.seconds}s (log: {_rel(cat.log)})")
    _summary(cfg, outcomes, refused, day, too_early=too_early)
    failed = [d.id for d, o in outcomes if not o.ok]
    counts = [f"{len(outcomes) - len(failed)} published", f"{len(failed)} failed"]
    counts += [f"{len(refused)} refused by the policy"] if refused else []
    counts += [f"{len(too_early)} before start_date"] if too_early else []
    console.print(", ".join(counts) + (f": {', '.join(failed)}" if failed else "")
                  + ("" if catalog_ok else "; the catalog rebuild failed"))
    if failed or not catalog_ok or too_early:
        raise typer.Exit(1)


_PRINTING = threading.Lock()
"""Concurrent runs print whole lines, and a run's outcome line and its causes together."""


def _print_outcome(out) -> None:
    with _PRINTING:
        mark = "[green]published[/green]" if out.ok else "[red]FAILED[/red]"
        console.print(f"{out.dataset_id}: {mark} in {out.seconds}s (log: {_rel(out.log)})")
        _print_causes(out)


def _prefixed_progress(dataset_id: str, event) -> None:
    """A line as each task of one of several concurrent runs ends, naming its dataset."""
    if not event.ended:
        return
    if event.state == "up_for_reschedule":
        line = f"  {dataset_id}: … {event.task_id} waiting (looks again later)"
    else:
        mark = "[green]✓[/green]" if event.state == "success" else "[red]✗[/red]"
        took = f" in {event.seconds}s" if event.seconds is not None else ""
        line = f"  {dataset_id}: {mark} {event.task_id} {event.state}{took}"
    with _PRINTING:
        console.print(line, soft_wrap=True)


def _print_causes(out) -> None:
    """One line per failed task, the error in its own words, and whether data or infrastructure failed."""
    rec = out.record
    for t in out.failed_tasks:
        kind = rec.failure.kind if rec is not None and rec.failure is not None and rec.failure.task == t.task_id else t.kind
        console.print(f"  [red]✗ {t.task_id}[/red] ({kind} error): {t.error or 'no error was logged; see the log'}",
                      highlight=False, markup=True, soft_wrap=True)
    if not out.failed_tasks and not out.ok:
        for cause in out.causes:
            console.print(f"  [red]✗[/red] {cause}", highlight=False, soft_wrap=True)


def _task_progress(dataset_id: str, status):
    """Show the running task in the spinner and print a line as each task ends."""
    def on_task(event) -> None:
        if not event.ended:
            status.update(f"{dataset_id}: [bold]{event.task_id}[/bold] running ...")
            return
        if event.state == "up_for_reschedule":  # a sensor looks again later
            console.print(f"  … {event.task_id} waiting (looks again later)")
            return
        mark = "[green]✓[/green]" if event.state == "success" else "[red]✗[/red]"
        took = f" in {event.seconds}s" if event.seconds is not None else ""
        console.print(f"  {mark} {event.task_id} {event.state}{took}")
    return on_task


def _rel(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _summary(cfg, outcomes, refused, day, workers: dict[str, str] | None = None, too_early=()) -> None:
    """The table `pubdata run` ends with; workers (dataset -> which worker ran each task), when known."""
    table = Table(title=f"pubdata run — {day}")
    columns = ["dataset", "rows", "validation", "files", "review", "where to look"] + (["workers"] if workers else [])
    for col in columns:
        # ids, links and paths stay whole (copyable); long reasons wrap at word boundaries
        table.add_column(col, no_wrap=col in ("dataset", "review"), overflow="fold")
    for d, out in outcomes:
        rec = out.record
        validation = rec.validation if rec is not None else None
        outcome = validation.outcome if validation is not None else "not run"
        if validation is not None and outcome == "failed":
            outcome = "failed: " + "; ".join(f"{f.description} ({_observed(f)})" for f in validation.failures)
        elif validation is not None and outcome == "error":
            outcome = "error: " + "; ".join(str(f.error)[:80] for f in validation.errors)
        files = len(rec.published.files) if rec is not None and rec.published is not None else 0
        if out.ok:
            where = (_rel(Path(cfg.bucket_url.removeprefix("file://")) / d.dataset_id.public_prefix / "metadata.json")
                     if cfg.bucket_url.startswith("file://") else f"{cfg.public_base_url}{d.dataset_id.public_prefix}/metadata.json")
        else:
            quarantined = rec is not None and rec.state == "quarantined"
            where = f"log {_rel(out.log)}" + (" · staged table kept as quarantine" if quarantined else "")
        rows = rec.rows if rec is not None and rec.rows is not None else "-"
        if rec is not None and rec.failure is not None and outcome == "not run":
            outcome = f"{rec.failure.kind} error in {rec.failure.task or 'a task'}" + (
                f": {rec.failure.error}" if rec.failure.error else "")
        cells = [d.id, f"{rows}", outcome, str(files), str(d.spec.review.bugs[0]), where]
        table.add_row(*cells, *([workers.get(d.id, "-")] if workers else []))
    for d, v in refused:
        status = f"not run: {v.status}" + (" (on purpose)" if d.spec.refused_on_purpose else "")
        cells = [d.id, "-", status, "0", str(d.spec.review.bugs[0]), "; ".join(v.reasons)]
        table.add_row(*cells, *(["-"] if workers else []))
    for d, reason in too_early:
        cells = [d.id, "-", "not run: before start_date", "0", str(d.spec.review.bugs[0]), reason]
        table.add_row(*cells, *(["-"] if workers else []))
    console.print(table)
    console.print(f"Public bucket: {cfg.bucket_url}  (served as {cfg.public_base_url}; index all-datasets.json, "
                  "catalog index.html: `pubdata catalog --serve`)")


def _parse_day(value: str, option: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        err.print(f"[red]{option} {value!r} is not a date; use YYYY-MM-DD[/red]")
        raise typer.Exit(2) from None


@app.command()
def backfill(dataset_id: Annotated[str, typer.Argument(help="An incremental dataset, e.g. telemetry_public.page_loads_by_country_v1")],
             start: Annotated[str, typer.Option(help="First day to publish (YYYY-MM-DD).")],
             end: Annotated[str, typer.Option(help="Last day to publish, included (YYYY-MM-DD).")],
             force: Annotated[bool, typer.Option(help="Also republish days already published by the current query.")] = False):
    """Publish every day from --start to --end through Airflow; after a failure, the same command resumes."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from pubdata.orchestration import backfill as backfilling

    first, last = _parse_day(start, "--start"), _parse_day(end, "--end")
    cfg, _catalog, decls = _select([dataset_id])
    decl = decls[0]
    judged = verdict(decl.spec)
    if not judged.allows_publish:
        err.print(f"[red]{decl.id} may not be published: policy verdict {judged.status}[/red]: {'; '.join(judged.reasons)}. Fix: {judged.fix}")
        raise typer.Exit(1)
    try:
        plan = backfilling.plan(cfg, decl, first, last, force=force)
    except backfilling.BackfillError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    if cfg.airflow_api_url:
        _submit_backfill(cfg, decl, first, last, force)
        return
    if plan.skipped:
        console.print(f"skipping {len(plan.skipped)} day(s) already published by this query "
                      f"({plan.skipped[0]} .. {plan.skipped[-1]}); --force republishes them")
    if not plan.to_run:
        console.print(f"[green]nothing to do[/green]: every day from {first} to {last} is published")
        return
    console.print(f"Backfilling {decl.id}: {len(plan.to_run)} day(s) through Airflow (metadata DB under {cfg.airflow_home})")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task(decl.id, total=len(plan.to_run))

        current = {"day": first}

        def on_start(day: dt.date) -> None:
            current["day"] = day
            progress.update(bar, description=f"{decl.id} {day}")

        def on_task(event) -> None:
            if not event.ended:
                progress.update(bar, description=f"{decl.id} {current['day']}: {event.task_id}")

        def on_done(out) -> None:
            state = out.record.state if out.record is not None else "not started"
            mark = "[green]published[/green]" if out.ok else f"[red]FAILED[/red] ({state})"
            progress.console.print(f"{out.date}: {mark} in {out.seconds}s (log: {_rel(out.log)})")
            if not out.ok:
                _print_causes(out)
            progress.advance(bar)

        outcomes = backfilling.run(cfg, decl, plan.to_run, on_start=on_start, on_done=on_done, on_task=on_task)
    done = sum(1 for o in outcomes if o.ok)
    failed = [o for o in outcomes if not o.ok]
    console.print(f"{decl.id}: {done} published, {len(failed)} failed, {len(plan.skipped)} skipped, "
                  f"{len(plan.to_run) - len(outcomes)} not run")
    if failed:
        out = failed[0]
        validation = out.record.validation if out.record is not None else None
        failures = "; ".join(f.description for f in validation.failures) if validation else ""
        cause = failures or "; ".join(out.causes)
        err.print(f"[red]{out.date} failed[/red]{': ' + cause if cause else ''} (log: {_rel(out.log)}). "
                  f"Fix it, then run the same command again: it resumes from {out.date}.", highlight=False)
        raise typer.Exit(1)


def _submit_backfill(cfg, decl, first: dt.date, last: dt.date, force: bool) -> None:
    """PUBDATA_AIRFLOW_API_URL is set: the deployment's scheduler runs the backfill, not this machine."""
    from pubdata.errors import PubdataError
    from pubdata.orchestration import backfill as backfilling

    try:
        submitted = backfilling.submit(cfg, decl, first, last, force=force)
    except PubdataError as exc:
        err.print(f"[red]backfill of {decl.id} not submitted[/red]: {exc}")
        raise typer.Exit(1) from None
    if not submitted.dates:
        console.print(f"[green]nothing to do[/green]: every day from {first} to {last} already has a run in Airflow "
                      f"({cfg.airflow_api_url}) that succeeded or is still going; --force runs the finished ones again")
        return
    backfill_id = submitted.backfill.get("id")
    console.print(f"Submitted backfill {backfill_id} of {decl.dag_id} to {cfg.airflow_api_url}: "
                  f"{len(submitted.dates)} day(s), {submitted.dates[0][:10]} .. {submitted.dates[-1][:10]}, one at a time")
    console.print(f"Follow it in the Airflow UI: {submitted.url}")
    if submitted.paused:
        err.print(f"[yellow]{decl.dag_id} is paused: its backfill runs wait until you unpause it[/yellow]")


@app.command()
def review(dataset_id: Annotated[str, typer.Argument(help="Dataset id, e.g. telemetry_public.page_loads_by_country_v1")]):
    """Print the review request to paste into the review bug (Markdown): the four review questions
    with their answers and reasons, the verdict, the static checks and the steward's checklist."""
    from pubdata.policy.review import review_markdown

    cfg, _catalog, decls = _select([dataset_id])
    # Plain stdout, not rich: the text is pasted as is, so no markup, colour or re-wrapping.
    sys.stdout.write(review_markdown(decls[0], cfg.project))


@app.command()
def schema(check_only: Annotated[bool, typer.Option("--check", help="Exit 1 if the committed schema is stale; write nothing.")] = False):
    """Write schema/declaration.schema.json, the JSON Schema editors use to complete declarations."""
    from pubdata.declarations import schema as declaration_schema

    cfg = settings()
    target = declaration_schema.path(cfg.project)
    name = declaration_schema.SCHEMA_FILE.as_posix()  # relative to the project, like `pubdata check`
    if declaration_schema.is_current(cfg.project):
        console.print(f"{name} is up to date")
        return
    if check_only:
        state = "is stale: the declaration models changed" if target.is_file() else "is missing"
        err.print(f"[red]{name} {state}[/red]. Fix: run `pubdata schema` and commit the file.")
        raise typer.Exit(1)
    declaration_schema.write(cfg.project)
    console.print(f"wrote {name}")


STALLED_AFTER = dt.timedelta(minutes=5)
"""A run between tasks whose last process is gone is waiting for its next task this long at most
(the scheduler starts it within seconds); after that, nothing is running it."""


def _status_row(d, rec, judged: Verdict | None = None) -> dict:
    """What `pubdata status` shows of one run (rec: a RunRecord, or None when the dataset never ran).

    The outcome is what is true now: a run is `running` only while a process runs it (asked of the
    process on this host; one on another host is reported as running there), a run whose process is
    gone without recording an outcome is `interrupted`, and a dataset the policy refuses is `refused`.
    """
    from pubdata.orchestration.records import process_alive

    row = {"dataset": d.id, "partition": None, "outcome": "never run", "state": "never run", "when": None,
           "run_id": None, "rows": None, "task": None, "cause": None, "failing": [], "report": None, "alert": None,
           "error_kind": None, "log": None}
    if rec is None:
        if judged is not None and not judged.allows_publish:
            row.update(outcome="refused on purpose" if d.spec.refused_on_purpose else f"refused ({judged.status})",
                       state="refused", cause="; ".join(judged.reasons), error_kind="data")
        return row
    state = rec.state
    failure = rec.failure if state != "published" else None
    kind = failure.kind if failure is not None else None
    cause = failure.error if failure is not None else None
    task = failure.task if failure is not None else (rec.worker.task if rec.worker is not None else None)
    q = rec.quarantine
    if state == "published":
        outcome = "published"
    elif state == "quarantined":
        outcome, kind = "failed validation", "data"
        if q is not None:
            outcome += f" (quarantine purged {q.purged_at[:10]})" if q.purged_at else f" (quarantined until {q.expires[:10]})"
    elif state == "failed":
        outcome = f"failed in {task or 'a task'}"
    else:  # still going, or it ended without saying how
        alive = process_alive(rec.worker)
        recent = rec.updated_at is not None and (
            dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(rec.updated_at) < STALLED_AFTER)
        where = f" on {rec.worker.host}" if rec.worker is not None and alive is None else ""
        if alive or alive is None and rec.worker is not None:
            outcome = f"running {task or state}{where}"
        elif state != "running" and recent:
            outcome = f"running: {state}, waiting for the next task"
        else:
            outcome, kind = f"interrupted in {task or state}", "infrastructure"
            cause = cause or ("its process is gone and recorded no outcome (killed, or its worker lost); "
                              "see the log, and run it again")
    failing: list[str] = []
    if rec.validation is not None:
        v = rec.validation
        if v.warnings and state == "published":
            outcome += f" with {len(v.warnings)} warning(s)"
        failing = [f"{f.description}: {_observed(f)}" for f in v.failures]
        failing += [f"could not be evaluated: {f.description}: {f.error}" for f in v.errors]
        failing += [f"warning: {f.description}: {_observed(f)}" for f in v.warnings]
    return {**row, "partition": rec.partition, "outcome": outcome, "state": state,
            "when": rec.finished_at or rec.updated_at, "run_id": rec.run_id, "rows": rec.rows, "task": task,
            "cause": cause, "failing": failing, "report": rec.report, "alert": (rec.alert or {}).get("webhook"),
            "error_kind": kind, "log": failure.log_url if failure is not None else None}


def _observed(check) -> str:
    """What a failing check found, in words when known, with its failing cells."""
    found = check.finding or (f"observed {check.observed}" if check.observed is not None else "see the report")
    return found + (f"; failing cells: {check.cells}" if check.cells else "")


@app.command()
def status(dataset_id: Annotated[str | None, typer.Argument(help="One dataset; all when omitted.")] = None,
           history: Annotated[bool, typer.Option("--history", help="Every run of the dataset kept in the run-state store, newest first.")] = False,
           as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False):
    """Each dataset's latest run, and every day whose latest run did not publish: outcome, data or
    infrastructure error and its cause, failing expectations, report and log. --history: every run of one dataset."""
    import json

    from pubdata.orchestration.records import RunRecords

    if history and not dataset_id:
        err.print("[red]--history lists the runs of one dataset: pubdata status DATASET --history[/red]")
        raise typer.Exit(2)
    cfg, catalog, decls = _select([dataset_id] if dataset_id else None)
    records = RunRecords.open(cfg)  # the run-state store every worker writes to
    rows = []
    for d in decls:
        judged = verdict(d.spec)
        if history:
            rows += [_status_row(d, r, judged) for r in records.history(d.id)] or [_status_row(d, None, judged)]
            continue
        latest = records.latest(d.id)
        rows.append(_status_row(d, latest, judged))
        # a day whose latest run failed stays listed until a run of that day publishes
        rows += [_status_row(d, r, judged) for r in reversed(records.all(d.id))
                 if r.state != "published" and (latest is None or r.partition != latest.partition)]
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return
    scope = f" {dataset_id} --history" if history and dataset_id else ""
    title = f"pubdata status{scope} (run state: {cfg.state_url})"
    table = Table(title=title)
    columns = ["dataset", "partition", "outcome", "kind", "cause / failing expectations", "when", "rows"]
    for col in columns + (["run"] if history else []) + ["report / log"]:
        table.add_column(col, overflow="fold", ratio=3 if col.startswith("cause") else None)
    for r in rows:
        links = [_link(r["report"])] if r["report"] else []
        links += [f"[link={r['log']}]{r['log']}[/link]"] if r["log"] else []
        why = ([r["cause"]] if r["cause"] else []) + r["failing"]
        cells = [r["dataset"], r["partition"] or "-", r["outcome"], r["error_kind"] or "-", "\n".join(why) or "-",
                 (r["when"] or "-")[:19], "-" if r["rows"] is None else f"{r['rows']:,}"]
        table.add_row(*cells, *([r["run_id"] or "-"] if history else []), "\n".join(links) or "-")
    console.print(table)


def _link(url: str) -> str:
    """A report's link for the terminal: a local file as a path relative to here, others as they are."""
    if url.startswith("file://"):
        from urllib.parse import unquote, urlsplit

        return f"[link={url}]{_rel(Path(unquote(urlsplit(url).path)))}[/link]"
    return f"[link={url}]{url}[/link]"


@app.command()
def quarantine(purge: Annotated[bool, typer.Option("--purge", help="Drop staged tables whose quarantine has expired.")] = False):
    """Staged tables kept from runs that failed validation (internal; never exported)."""
    from pubdata.errors import ConfigurationError
    from pubdata.orchestration import quarantine as quarantining

    cfg = settings()
    try:
        purged = quarantining.purge(cfg) if purge else []
    except ConfigurationError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    for mark in purged:
        console.print(f"purged {mark.dataset} {mark.partition or 'full'} (expired {mark.info.expires})")
    from pubdata.orchestration.records import RunRecords

    records = RunRecords.open(cfg)
    table = Table(title=f"pubdata quarantine (retention {quarantining.retention_days()} days)")
    for col in ("dataset", "partition", "since", "expires", "staged table", "failing expectations"):
        table.add_column(col, overflow="fold")
    for mark in quarantining.held(cfg):
        q = mark.info
        rec = records.get(mark.dataset, mark.partition)
        fails = "; ".join(f.description for f in rec.validation.failures) if rec and rec.validation else ""
        table.add_row(mark.dataset, mark.partition or "full", q.since, q.expires,
                      f"{q.staged.get('location')} {q.staged.get('table')}", fails)
    console.print(table)


@app.command()
def serve(port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8000,
          host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1"):
    """Serve the local public bucket over HTTP at PUBDATA_PUBLIC_BASE_URL (read-only)."""
    import time

    from pubdata.stores import open_store
    from pubdata.stores import serve as serving
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


@app.command()
def new(dataset_id: Annotated[str, typer.Argument(help="<dataset>.<table>[_v<N>], e.g. telemetry_public.active_hours_by_country_v1 (v1 when no version).")],
        owner: Annotated[str, typer.Option(help="E-mail of the owning team; the DAG's owner and on-call alerts.")],
        bug: Annotated[str, typer.Option(help="URL of the review bug, where the data steward reviews the dataset.")],
        data_review: Annotated[str | None, typer.Option(help="URL of the data-collection review of the source fields; without one the dataset needs a steward's sign-off.")] = None,
        start_date: Annotated[str | None, typer.Option(help="First day the DAG publishes (YYYY-MM-DD); when omitted, the last day the local warehouse has data for (today when it has none).")] = None,
        friendly_name: Annotated[str | None, typer.Option(help="Title shown to the public; derived from the table name when omitted.")] = None):
    """Scaffold a dataset that runs as it is: declaration (every policy field commented), query, expectations, SQL test case."""
    from pubdata.declarations import scaffold

    cfg = settings()
    first_day = _parse_day(start_date, "--start-date") if start_date else _local_data_day(cfg)
    try:
        dataset_id = scaffold.parse_id(dataset_id)
        made = scaffold.scaffold(cfg.project, dataset_id, owner=owner, bug=bug, data_review=data_review,
                                 start_date=first_day, friendly_name=friendly_name)
    except scaffold.ScaffoldError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    f = made.files
    console.print(f"Created {dataset_id}, a working level-2 dataset (active clients and hours by country and OS) to adapt:")
    for path, what in ((f["declaration"], "the declaration; every policy field is commented"),
                       (f["query"], "the reviewed query (BigQuery SQL, production table names)"),
                       (f["expectations"], "the dataset's own checks"),
                       (made.test_case, "a SQL test case: input rows, query parameters, expected rows")):
        console.print(f"  {_rel(path)}{'/' if path.is_dir() else ''}  [dim]{what}[/dim]")
    stem = dataset_id.split(".", 1)[1]
    console.print("Next: change the query into your dataset (the declaration lists its output columns, the test case "
                  "its expected rows), then")
    for step in (f"pubdata check {dataset_id}", f"python -m pytest tests/sql/test_cases.py -k {stem}",
                 f"pubdata run {dataset_id} --date YYYY-MM-DD", f"pubdata review {dataset_id}"):
        console.print(f"  {step}", highlight=False)
    if not start_date and cfg.warehouse_url.startswith("duckdb://"):
        if first_day is not None:
            console.print(f"start_date: {first_day}, the last day of {scaffold.SOURCE_TABLE} in the local warehouse "
                          f"(publish it with `pubdata run {dataset_id} --date {first_day}`)", highlight=False)
        else:
            console.print(f"[yellow]The warehouse ({cfg.warehouse_url}) has no local data of {scaffold.SOURCE_TABLE}: "
                          f"start_date is today. Run `pubdata synth` for local data, or give --start-date.[/yellow]")
    if not data_review:
        console.print("[yellow]No --data-review: review question 4 is answered yes, so `pubdata check` will ask for a steward's "
                      "sign-off until review.data_reviews lists the data-collection reviews.[/yellow]")


def _local_data_day(cfg) -> dt.date | None:
    """The last day the configured warehouse has local rows of the scaffold's source table."""
    from pubdata.declarations import scaffold
    from pubdata.errors import PubdataError
    from pubdata.warehouses import open_warehouse

    if not cfg.warehouse_url.startswith("duckdb://"):
        return None  # production data: no local copy to look at, and no reason to scan it
    try:
        return open_warehouse(cfg.warehouse_url, home=cfg.home).latest_source_day(scaffold.SOURCE_TABLE)
    except (PubdataError, OSError):
        return None


@app.command("catalog")
def catalog_command(
    serve_: Annotated[bool, typer.Option("--serve", help="Then serve the local bucket over HTTP, as `pubdata serve` does.")] = False,
    port: Annotated[int, typer.Option(help="Port for --serve.")] = 8000,
    host: Annotated[str, typer.Option(help="Interface for --serve.")] = "127.0.0.1",
):
    """Rebuild the public catalog (index.html and the Atom feed feed.xml at the bucket root) from what is published."""
    from pubdata.errors import StoreError
    from pubdata.publishing import catalog
    from pubdata.stores import open_store

    cfg = settings()
    try:
        entries = catalog.refresh(open_store(cfg.bucket_url), cfg.public_base_url)
    except StoreError as exc:
        err.print(f"[red]cannot rebuild the catalog in {cfg.bucket_url}: {exc}[/red]")
        raise typer.Exit(1) from None
    console.print(f"catalog of {len(entries)} dataset(s) written to {cfg.bucket_url}/{catalog.HTML_KEY} and {catalog.FEED_KEY} "
                  f"(public: {cfg.public_base_url}{catalog.HTML_KEY}, {cfg.public_base_url}{catalog.FEED_KEY})")
    if not entries:
        console.print("[yellow]nothing is published yet[/yellow]: publish first, e.g. `pubdata run --date 2026-11-01`")
    if serve_:
        serve(port=port, host=host)


@app.command()
def airflow(port: Annotated[int, typer.Option(help="Port of the Airflow UI on 127.0.0.1.")] = 8080):
    """Start Airflow's scheduler, dag-processor, triggerer and UI on the embedded stack, on loopback, to watch
    and trigger the DAGs in the Airflow UI; Ctrl-C or SIGTERM stops all of it."""
    from pubdata.orchestration import local_airflow, runner

    cfg = settings()
    runner.ensure_airflow_db(cfg)  # the metadata DB, and the pool the warehouse tasks wait for
    binary = runner.airflow_bin()
    env = runner.airflow_env(cfg, {
        "PATH": os.pathsep.join([str(Path(binary).parent), os.environ.get("PATH", "")]),
        # No login: the UI listens on loopback only, for the user of this machine.
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
    })
    console.print(f"Starting Airflow (home {cfg.airflow_home}, DAGs from {cfg.dags_dir}); the UI will be at "
                  f"http://127.0.0.1:{port}/ in a minute. New DAGs start paused: unpause one, or trigger it and "
                  "pick its submission_date in the trigger form. Ctrl-C stops.")
    sys.stdout.flush()
    code = local_airflow.serve(binary, port, env, say=lambda text: console.print(text))
    if code:
        raise typer.Exit(code)


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
