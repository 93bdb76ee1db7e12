"""One Airflow DAG per approved declaration: stage -> validate -> export -> publish.

This is the only module (with dags/publish_datasets.py) that knows Airflow. It imports nothing
heavy at parse time: the declarations (YAML + pydantic) and the policy verdict only. Great
Expectations, DuckDB and the google clients are imported inside the tasks when they run.

Declarations that fail to load, and datasets the policy refuses or that lack the steward's
sign-off, get no DAG; they are listed by a `pubdata_declaration_errors` DAG (doc and failing
task) so on-call sees them in the Airflow UI instead of a dataset silently missing.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path
from typing import Any

from pubdata import policy
from pubdata.declaration import Declaration, load_all

log = logging.getLogger(__name__)
ERRORS_DAG_ID = "pubdata_declaration_errors"


def _partition(context: dict[str, Any]) -> dt.date:
    """The day a run publishes: the `submission_date` param if given, else the logical date."""
    override = (context.get("params") or {}).get("submission_date")
    if override:
        return dt.date.fromisoformat(str(override))
    logical = context.get("logical_date") or context.get("data_interval_start")
    if logical is None:
        raise ValueError("this run has no logical date: trigger it with a logical date or the submission_date param")
    return logical.date()


def _run_id(context: dict[str, Any]) -> str:
    return str(context.get("run_id") or "manual")


def _doc(decl: Declaration, verdict) -> str:
    spec = decl.spec
    bugs = "\n".join(f"- <{u}>" for u in spec.review.bugs)
    return (
        f"# {spec.friendly_name}\n\n{spec.description}\n\n"
        f"**Dataset** `{decl.id}` · **aggregation level** {spec.policy.aggregation_level} · "
        f"**policy verdict** {verdict.status}\n\n"
        f"**Owners** {', '.join(spec.owners)}\n\n**Review bugs**\n{bugs}\n\n"
        f"**Query** `sql/{decl.dataset}/{decl.table}_v{decl.version}.sql` (sha256 `{decl.query_sha256[:12]}`)\n\n"
        f"Reproduce locally: `pubdata run {decl.id} --date YYYY-MM-DD`"
    )


def build_dag(decl: Declaration):
    from airflow.sdk import DAG, Param, task
    from airflow.timetables.interval import CronDataIntervalTimetable

    spec = decl.spec
    verdict = policy.verdict(spec)
    dataset_id = decl.id
    retries = int(os.environ.get("PUBDATA_TASK_RETRIES", "2"))
    default_args = {
        "owner": ",".join(spec.owners),
        "retries": retries,
        "retry_delay": dt.timedelta(minutes=2),
        "retry_exponential_backoff": True,
        "max_retry_delay": dt.timedelta(minutes=30),
    }
    schedule = CronDataIntervalTimetable(spec.schedule, timezone="UTC") if spec.schedule else None
    start = dt.datetime.combine(spec.start_date, dt.time(), tzinfo=dt.timezone.utc)

    with DAG(
        dag_id=decl.dag_id,
        schedule=schedule,
        start_date=start,
        catchup=False,
        max_active_runs=1,
        default_args=default_args,
        doc_md=_doc(decl, verdict),
        description=spec.friendly_name[:200],
        tags=["pubdata", decl.dataset, f"level-{spec.policy.aggregation_level}"],
        owner_links={o: f"mailto:{o}" for o in spec.owners},
        params={"submission_date": Param(None, type=["null", "string"], format="date",
                                         description="Publish this day instead of the logical date")},
    ) as dag:

        @task(task_id="stage")
        def stage(**context):
            from pubdata import tasks
            return tasks.stage(dataset_id, _partition(context), _run_id(context))

        @task(task_id="validate")
        def validate(staged, **context):
            from airflow.sdk.exceptions import AirflowFailException

            from pubdata import tasks
            from pubdata.validation import DataValidationFailed

            try:
                return tasks.validate(dataset_id, staged)
            except (DataValidationFailed, tasks.PolicyRefused) as exc:
                # The data broke a rule: retrying cannot help; the staged table stays as quarantine.
                raise AirflowFailException(str(exc)) from exc

        @task(task_id="export")
        def export(staged, validation, **context):
            from pubdata import tasks
            return tasks.export(dataset_id, staged, _run_id(context))

        @task(task_id="publish")
        def publish(staged, exported, **context):
            from pubdata import tasks
            return tasks.publish(dataset_id, staged, exported)

        staged = stage()
        validated = validate(staged)
        exported = export(staged, validated)
        publish(staged, exported)
    return dag


def _errors_dag(problems: list[str]):
    from airflow.sdk import DAG, task

    text = "\n".join(f"- {p}" for p in problems)
    with DAG(
        dag_id=ERRORS_DAG_ID,
        schedule=None,
        start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
        catchup=False,
        doc_md=f"# Declarations that have no DAG\n\nFix these files; `pubdata check` shows the same.\n\n{text}\n",
        tags=["pubdata", "errors"],
    ) as dag:

        @task(task_id="report")
        def report():
            raise ValueError("declarations without a DAG:\n" + text)

        report()
    return dag


def build_dags(project: Path | None = None) -> dict[str, Any]:
    """All DAGs for the project's declarations, keyed by dag_id, plus the errors DAG if needed."""
    from pubdata.config import settings

    project = project or settings().project
    catalog = load_all(project)
    dags: dict[str, Any] = {}
    problems = [str(e) for e in catalog.errors]
    for decl in catalog.declarations.values():
        verdict = policy.verdict(decl.spec)
        if not verdict.allows_publish:
            problems.append(f"{decl.metadata_path.relative_to(project)}: policy verdict {verdict.status}: "
                            f"{'; '.join(verdict.reasons)}. Fix: {verdict.fix}")
            continue
        dags[decl.dag_id] = build_dag(decl)
    for p in problems:
        log.warning("pubdata: %s", p)
    if problems:
        dags[ERRORS_DAG_ID] = _errors_dag(problems)
    return dags
