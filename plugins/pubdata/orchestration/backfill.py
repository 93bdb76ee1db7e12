"""Backfill: publish a range of days of one incremental dataset through Airflow, resumably.

With a deployment configured (PUBDATA_AIRFLOW_API_URL), the range is submitted to it as an
Airflow backfill (REST API, `POST /api/v2/backfills`): the deployment's scheduler runs the days
on its workers, within its pools and limits, one at a time; days that already have a successful
run are skipped (--force reprocesses them too). Without one (the embedded stack), each day runs
the dataset's DAG here with `airflow dags test` (the code path the scheduler runs), one day after
the other, oldest first; a day whose run record says it was published by the current reviewed
query (same sha256) is skipped, so running the same command again after a failure resumes where
it stopped; --force republishes every day. Days are independent partitions: re-running one
replaces exactly that day, with identical files for identical input.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from pubdata.config import Settings
from pubdata.declarations import Declaration
from pubdata.errors import UsageError
from pubdata.orchestration import runner
from pubdata.orchestration.airflow_api import AirflowAPI
from pubdata.orchestration.records import RunRecords

MAX_DAYS = 3660  # ten years: a typo in --start should not queue a century of runs


class BackfillError(UsageError):
    """The requested backfill cannot run as asked; the message says what to change."""


@dataclass
class Plan:
    to_run: list[dt.date]
    skipped: list[dt.date] = field(default_factory=list)  # already published by this query


def days(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def check(decl: Declaration, start: dt.date, end: dt.date) -> None:
    where = decl.metadata_path.name
    if not decl.spec.incremental:
        raise BackfillError(
            f"{decl.id} is not incremental ({where}: incremental: false): every run replaces the whole table, "
            f"so there is nothing to backfill; publish it with `pubdata run {decl.id} --date DAY`"
        )
    if end < start:
        raise BackfillError(f"--end {end} is before --start {start}: swap them")
    if start < decl.spec.start_date:
        raise BackfillError(
            f"--start {start} is before the dataset's start_date {decl.spec.start_date} ({where}): "
            f"backfill from {decl.spec.start_date}, or move start_date back if the data really begins earlier"
        )
    if len(days(start, end)) > MAX_DAYS:
        raise BackfillError(f"{start}..{end} is {len(days(start, end))} days, more than {MAX_DAYS}: split the range")


def published_by_current_query(cfg: Settings, decl: Declaration, day: dt.date) -> bool:
    record = RunRecords.open(cfg).get(decl.id, day.isoformat())
    return record is not None and record.state == "published" and record.query_sha256 == decl.query_sha256


def plan(cfg: Settings, decl: Declaration, start: dt.date, end: dt.date, *, force: bool = False) -> Plan:
    check(decl, start, end)
    result = Plan([])
    for day in days(start, end):
        if not force and published_by_current_query(cfg, decl, day):
            result.skipped.append(day)
        else:
            result.to_run.append(day)
    return result


def run(cfg: Settings, decl: Declaration, dates: list[dt.date], *,
        on_start: Callable[[dt.date], None] = lambda day: None,
        on_done: Callable[[runner.RunOutcome], None] = lambda outcome: None,
        on_task: Callable[[runner.TaskEvent], None] | None = None) -> list[runner.RunOutcome]:
    """Run the days in order; stop at the first failure (the rest would likely fail the same way)."""
    runner.ensure_airflow_db(cfg)
    runner.prime_gate(cfg, [decl])
    outcomes = []
    for day in dates:
        on_start(day)
        outcome = runner.run_dag(cfg, decl.id, decl.dag_id, day.isoformat(), day.isoformat(), on_task=on_task)
        outcomes.append(outcome)
        on_done(outcome)
        if not outcome.ok:
            break
    return outcomes


@dataclass
class Submitted:
    """A backfill the deployment accepted."""

    backfill: dict[str, object]
    dates: list[str]
    paused: bool
    url: str


def submit(cfg: Settings, decl: Declaration, start: dt.date, end: dt.date, *, force: bool = False,
           api: AirflowAPI | None = None) -> Submitted:
    """Submit the range to the deployment's Airflow as one backfill (checked like a local one first)."""
    check(decl, start, end)
    if api is None:
        if not cfg.airflow_api_url:
            raise BackfillError("no Airflow deployment configured: set PUBDATA_AIRFLOW_API_URL")
        api = AirflowAPI.from_env(cfg.airflow_api_url)
    reprocess = "completed" if force else "failed"
    paused = bool(api.dag(decl.dag_id).get("is_paused"))
    dates = api.backfill_dry_run(decl.dag_id, start, end, reprocess=reprocess)
    if not dates:
        return Submitted({}, [], paused, api.ui_url(decl.dag_id))
    created = api.create_backfill(decl.dag_id, start, end, reprocess=reprocess)
    return Submitted(created, dates, paused, api.ui_url(decl.dag_id))
