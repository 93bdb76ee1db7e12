"""Backfill: publish a range of days of one incremental dataset through Airflow, resumably.

Each day runs the dataset's DAG with `airflow dags test` (the code path the scheduler runs), one
day after the other, oldest first. A day whose run record says it was published by the current
reviewed query (same sha256) is skipped, so running the same command again after a failure
resumes where it stopped; --force republishes every day. Days are independent partitions:
re-running one replaces exactly that day, with identical files for identical input.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from pubdata.config import Settings
from pubdata.declarations import Declaration
from pubdata.errors import UsageError
from pubdata.orchestration import runner
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
    record = RunRecords(cfg.internal_dir).get(decl.id, day.isoformat())
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
    outcomes = []
    for day in dates:
        on_start(day)
        outcome = runner.run_dag(cfg, decl.id, decl.dag_id, day.isoformat(), day.isoformat(), on_task=on_task)
        outcomes.append(outcome)
        on_done(outcome)
        if not outcome.ok:
            break
    return outcomes
