"""One Airflow DAG per approved declaration: wait for sources -> stage -> validate -> export -> publish.

This is the only module (with dags/publish_datasets.py) that knows Airflow. It imports nothing
heavy at parse time: the declarations (YAML + pydantic) and the policy verdict only. Great
Expectations, DuckDB and the google clients are imported inside the tasks when they run.

Every DAG is ready for a multi-worker deployment: a reschedule-mode sensor per declared source
table (so a late source never publishes a partial day), the warehouse tasks in one pool,
execution and run timeouts, and a deadline alert derived from the schedule. Each publish emits
an Asset event; one catalog DAG (`pubdata_catalog`), scheduled on every dataset's asset,
rebuilds the catalog pages once per batch of publishes instead of once per publish.

Declarations that fail to load, datasets the policy refuses or that lack the steward's sign-off,
and queries the static checks refuse get no DAG, exactly as `pubdata check` judges them; they are
listed by a `pubdata_declaration_errors` DAG (doc and failing task) so on-call sees them in the
Airflow UI instead of a dataset silently missing. The static checks (sqlglot) run only for
declarations that changed since the last parse (gate.GateCache).
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import time
from pathlib import Path
from typing import Any

from pubdata.declarations import Declaration, load_all
from pubdata.policy.verdict import Verdict, verdict

log = logging.getLogger(__name__)
ERRORS_DAG_ID = "pubdata_declaration_errors"
GATE_BUDGET_ENV = "PUBDATA_GATE_BUDGET_SECONDS"
DEFAULT_GATE_BUDGET = 10.0
"""Airflow gives a DAG file 30 s (dagbag_import_timeout); the static checks take about 20-50 ms a
query (bench/RESULTS.md), so a parse checks a few hundred changed declarations and leaves room."""
CATALOG_DAG_ID = "pubdata_catalog"
WAREHOUSE_POOL = "pubdata_warehouse"
"""The pool of every task that works in the warehouse; `pubdata run` creates it, a deployment
creates it once (`airflow pools set pubdata_warehouse <slots> ...`): without it tasks never run."""
POOL_SLOTS_ENV = "PUBDATA_WAREHOUSE_POOL_SLOTS"
DEFAULT_POOL_SLOTS = 4

# How long each step may take before Airflow stops it (and retries it, as an infrastructure error).
TASK_TIMEOUTS = {
    "stage": dt.timedelta(hours=2),
    "validate": dt.timedelta(hours=1),
    "export": dt.timedelta(hours=2),
    "publish": dt.timedelta(hours=1),
    "catalog": dt.timedelta(minutes=30),
    "wait_poke": dt.timedelta(minutes=5),  # one look at a source's partition
}
DEADLINES_ENV = "PUBDATA_DEADLINE_ALERTS"
"""`off` builds the DAGs without deadline alerts. `airflow dags test` sets nothing to evaluate them
(no scheduler), and Airflow 3.3.2's `dags test` fails a run that succeeded when its DAG has one
(it looks the alerts up by database id, which its in-memory copy of the DAG never got); so the
runner turns them off for the runs it makes with `dags test`."""
SOURCE_WAIT_ENV = "PUBDATA_SOURCE_WAIT_HOURS"          # how long a run waits for its sources (default 12)
SOURCE_POKE_ENV = "PUBDATA_SOURCE_POKE_SECONDS"        # how often it looks again (default 600)
MAX_RUN = dt.timedelta(hours=24)


def warehouse_pool_slots() -> int:
    raw = os.environ.get(POOL_SLOTS_ENV, str(DEFAULT_POOL_SLOTS))
    return max(int(raw), 1) if raw.isdigit() else DEFAULT_POOL_SLOTS


def _source_wait() -> tuple[dt.timedelta, dt.timedelta]:
    """(timeout, poke interval) of the source-readiness sensors."""
    hours = float(os.environ.get(SOURCE_WAIT_ENV) or 12)
    seconds = float(os.environ.get(SOURCE_POKE_ENV) or 600)
    return dt.timedelta(hours=hours), dt.timedelta(seconds=seconds)


def _partition(context: dict[str, Any]) -> dt.date:
    """The day a run publishes: `submission_date` from the run's config (the trigger form's date
    field, SUBMISSION_DATE) if given, else the logical date."""
    conf = getattr(context.get("dag_run"), "conf", None) or {}
    override = conf.get("submission_date") or (context.get("params") or {}).get("submission_date")
    if override:
        try:
            return dt.date.fromisoformat(str(override))
        except ValueError:
            raise ValueError(f"submission_date {override!r} in the run's config is not a date: use YYYY-MM-DD") from None
    logical = context.get("logical_date") or context.get("data_interval_start")
    if logical is None:
        raise ValueError('this run has no logical date: trigger it with a logical date or with the config '
                         '{"submission_date": "YYYY-MM-DD"}')
    return logical.date()


def submission_date_param():
    """The trigger form's date field: empty publishes the logical date's day.

    Set on the DAG once its tasks exist, so it is the DAG's Param only. Given to the DAG's
    constructor, Airflow copies it into every task, and serialization validates each copy with
    jsonschema several times: about 2 ms per DAG at every parse, against nothing measurable this
    way (bench/RESULTS.md). Runs read it from their config (_partition), where the form puts it.
    """
    from airflow.sdk import Param

    return Param(None, type=["null", "string"], format="date", title="submission_date",
                 description="The day to publish (YYYY-MM-DD); empty publishes the day of the logical date")


def _run_id(context: dict[str, Any]) -> str:
    return str(context.get("run_id") or "manual")


def _doc(decl: Declaration, judged: Verdict) -> str:
    spec = decl.spec
    bugs = "\n".join(f"- <{u}>" for u in spec.review.bugs)
    return (
        f"# {spec.friendly_name}\n\n{spec.description}\n\n"
        f"**Dataset** `{decl.id}` · **aggregation level** {spec.policy.aggregation_level} · "
        f"**policy verdict** {judged.status}\n\n"
        f"**Owners** {', '.join(spec.owners)}\n\n**Review bugs**\n{bugs}\n\n"
        f"**Query** `sql/{decl.dataset}/{decl.dataset_id.stem}.sql` (sha256 `{decl.query_sha256[:12]}`)\n\n"
        f"Reproduce locally: `pubdata run {decl.id} --date YYYY-MM-DD`; publish another day from the UI: "
        "trigger it and pick the day in the form's `submission_date` field"
    )


# The task callables live at module level and run as plain PythonOperators: a TaskFlow @task
# defined inside build_dag costs about five times as much to construct (decorator and signature
# work per task), and the dag processor rebuilds every DAG on every parse (bench/RESULTS.md).


def _permanent_fails_at_once(step: str, dataset_id: str, *args: Any, **kwargs: Any) -> Any:
    """Run one step; a data error (errors.classify) fails the task without its retries."""
    from airflow.sdk.exceptions import AirflowFailException

    from pubdata.errors import classify
    from pubdata.orchestration import tasks

    try:
        return getattr(tasks, step)(dataset_id, *args, **kwargs)
    except Exception as exc:
        if classify(exc) == "data":
            # Retrying cannot help; after a validation failure the staged table stays as quarantine.
            raise AirflowFailException(str(exc)) from exc
        raise


def _wait_for_source(dataset_id: str, table: str, **context) -> bool:
    return bool(_permanent_fails_at_once("wait_for_source", dataset_id, table, _partition(context)))


def _stage(dataset_id: str, **context):
    return _permanent_fails_at_once("stage", dataset_id, _partition(context), _run_id(context))


def _pulled(context: dict[str, Any], *task_ids: str) -> list[Any]:
    """The results of earlier steps of this run, read from XCom here rather than passed as XComArgs:
    an XComArg is also an edge, and the graph would show stage->export and stage->publish."""
    ti = context["ti"]
    values = [ti.xcom_pull(task_ids=t) for t in task_ids]
    missing = [t for t, v in zip(task_ids, values) if v is None]
    if missing:
        raise RuntimeError(f"no result of {', '.join(missing)} in this run: run the steps before it first")
    return values


def _validate(dataset_id: str, **context):
    return _permanent_fails_at_once("validate", dataset_id, *_pulled(context, "stage"), _run_id(context))


def _export(dataset_id: str, **context):
    return _permanent_fails_at_once("export", dataset_id, *_pulled(context, "stage", "validate"), _run_id(context))


def _publish(dataset_id: str, **context):
    staged, validation, exported = _pulled(context, "stage", "validate", "export")
    result = _permanent_fails_at_once("publish", dataset_id, staged, validation, exported, _run_id(context))
    events = context.get("outlet_events")
    if events is not None:  # what the catalog DAG (and any other consumer) learns of this publish
        events[dataset_asset(dataset_id)].extra.update(
            {"partition": staged.get("partition"), "version": result.get("version"), "rows": result.get("rows")})
    return result


def _catalog(**context):
    from pubdata.orchestration import tasks

    return tasks.catalog()


def _alert_on_failure(dataset_id: str, context):
    """A task failed for good (retries exhausted, or a data failure): alert on-call once."""
    from pubdata.orchestration import alerts

    try:
        day = _partition(context).isoformat()
    except ValueError:
        day = "unknown date"
    alerts.on_task_failure(dataset_id, day, context)


@functools.cache
def _timetable(expression: str):
    """One timetable per cron expression: building one parses and describes the cron each time."""
    from airflow.timetables.interval import CronDataIntervalTimetable

    return CronDataIntervalTimetable(expression, timezone="UTC")


@functools.cache
def schedule_period(expression: str | None) -> dt.timedelta:
    """The shortest gap between two runs of a cron expression (a day for `0 5 * * *`); a day when manual."""
    if not expression:
        return dt.timedelta(days=1)
    from croniter import croniter

    fires = croniter(getattr(_timetable(expression), "_expression", expression), dt.datetime(2026, 1, 5))
    times = [fires.get_next(dt.datetime) for _ in range(8)]
    return min(b - a for a, b in zip(times, times[1:]))


def run_limits(expression: str | None) -> tuple[dt.timedelta, dt.timedelta]:
    """(dagrun_timeout, deadline) from the schedule: a run must end before the next one is due
    (at most a day), and on-call hears of it when half of that has passed (at most 12 hours)."""
    period = schedule_period(expression)
    return min(period, MAX_RUN), min(period / 2, MAX_RUN / 2)


@functools.cache
def dataset_asset(dataset_id: str):
    """The Asset a dataset's publish updates: `pubdata://<ds>/<table>/v<N>`, named after the dataset."""
    from airflow.sdk import Asset

    from pubdata.ids import DatasetId

    ident = DatasetId.parse(dataset_id)
    return Asset(name=f"pubdata.{ident}", uri=f"pubdata://{ident.table_path}", group="pubdata")


def _deadline(dataset_id: str, interval: dt.timedelta):
    from airflow.sdk.definitions.callback import AsyncCallback
    from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

    return DeadlineAlert(reference=DeadlineReference.DAGRUN_QUEUED_AT, interval=interval,
                         callback=AsyncCallback("pubdata.orchestration.deadlines.on_deadline",
                                                kwargs={"dataset_id": dataset_id}))


def source_task_id(table: str) -> str:
    """`moz-fx-data-shared-prod.telemetry.clients_daily` -> `wait_for_telemetry__clients_daily`."""
    parts = table.replace("`", "").split(".")
    return "wait_for_" + "__".join(p.replace("-", "_") for p in parts[-2:])


def build_dag(decl: Declaration, judged: Verdict | None = None):
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.providers.standard.sensors.python import PythonSensor
    from airflow.sdk import DAG
    from airflow.sdk.definitions.param import ParamsDict

    spec = decl.spec
    judged = judged or verdict(spec)
    dataset_id = decl.id
    retries = int(os.environ.get("PUBDATA_TASK_RETRIES", "2"))
    default_args = {
        "owner": ",".join(spec.owners),
        "retries": retries,
        "retry_delay": dt.timedelta(minutes=2),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": dt.timedelta(minutes=30),
        "on_failure_callback": functools.partial(_alert_on_failure, dataset_id),
    }
    schedule = _timetable(spec.schedule) if spec.schedule else None
    start = dt.datetime.combine(spec.start_date, dt.time(), tzinfo=dt.UTC)
    run_timeout, deadline = run_limits(spec.schedule)
    wait_timeout, poke = _source_wait()

    with DAG(
        dag_id=decl.dag_id,
        schedule=schedule,
        start_date=start,
        catchup=False,
        max_active_runs=1,
        dagrun_timeout=run_timeout,
        deadline=None if os.environ.get(DEADLINES_ENV) == "off" else _deadline(dataset_id, deadline),
        default_args=default_args,
        doc_md=_doc(decl, judged),
        description=spec.friendly_name[:200],
        tags=["pubdata", decl.dataset, f"level-{spec.policy.aggregation_level}"],
        owner_links={o: f"mailto:{o}" for o in spec.owners},
    ) as dag:
        waits = [
            PythonSensor(task_id=source_task_id(table), python_callable=_wait_for_source, op_args=[dataset_id, table],
                         mode="reschedule", poke_interval=poke, timeout=wait_timeout,
                         execution_timeout=TASK_TIMEOUTS["wait_poke"], pool=WAREHOUSE_POOL)
            for table in dict.fromkeys(spec.source_tables)
        ]
        # Each step reads the results it needs from XCom (_pulled): only the real chain is an edge.
        stage = PythonOperator(task_id="stage", python_callable=_stage, op_args=[dataset_id], pool=WAREHOUSE_POOL,
                               execution_timeout=TASK_TIMEOUTS["stage"])
        validate = PythonOperator(task_id="validate", python_callable=_validate, op_args=[dataset_id],
                                  pool=WAREHOUSE_POOL, execution_timeout=TASK_TIMEOUTS["validate"])
        export = PythonOperator(task_id="export", python_callable=_export, op_args=[dataset_id], pool=WAREHOUSE_POOL,
                                execution_timeout=TASK_TIMEOUTS["export"])
        publish = PythonOperator(task_id="publish", python_callable=_publish, outlets=[dataset_asset(dataset_id)],
                                 op_args=[dataset_id], execution_timeout=TASK_TIMEOUTS["publish"])
        stage >> validate >> export >> publish
        if waits:
            waits >> stage
    dag.params = ParamsDict({"submission_date": submission_date_param()})  # after the tasks: see submission_date_param
    return dag


def build_catalog_dag(dataset_ids: list[str]):
    """The catalog DAG: rebuilds index.html and feed.xml once per batch of publishes.

    Scheduled on every dataset's asset (any of them): the scheduler makes one run for all the
    events queued since the last one, so datasets published at the same minute cost one rebuild.
    It starts unpaused, since a paused consumer never hears of an event.
    """
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG, AssetAny

    assets = [dataset_asset(i) for i in dataset_ids]
    with DAG(
        dag_id=CATALOG_DAG_ID,
        schedule=AssetAny(*assets) if assets else None,
        start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        catchup=False,
        max_active_runs=1,
        is_paused_upon_creation=False,
        dagrun_timeout=dt.timedelta(hours=1),
        default_args={"owner": "pubdata", "retries": int(os.environ.get("PUBDATA_TASK_RETRIES", "2")),
                      "retry_delay": dt.timedelta(minutes=1), "retry_exponential_backoff": 2.0},
        doc_md="# The public catalog\n\nRebuilds index.html and feed.xml at the bucket root from all-datasets.json "
               "after publishes (one run per batch of dataset publishes). By hand: `pubdata catalog`.",
        tags=["pubdata", "catalog"],
    ) as dag:
        PythonOperator(task_id="rebuild", python_callable=_catalog, execution_timeout=TASK_TIMEOUTS["catalog"])
    return dag


def _errors_dag(problems: list[str]):
    from airflow.sdk import DAG, task

    text = "\n".join(f"- {p}" for p in problems)
    with DAG(
        dag_id=ERRORS_DAG_ID,
        schedule=None,
        start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        catchup=False,
        doc_md=f"# Declarations that have no DAG\n\nFix these files; `pubdata check` shows the same.\n\n{text}\n",
        tags=["pubdata", "errors"],
    ) as dag:

        @task(task_id="report")
        def report():
            raise ValueError("declarations without a DAG:\n" + text)

        report()
    return dag


def gate_budget() -> float:
    """Seconds one parse may spend on static checks of changed declarations (GATE_BUDGET_ENV)."""
    raw = os.environ.get(GATE_BUDGET_ENV) or str(DEFAULT_GATE_BUDGET)
    try:
        return max(0.0, float(raw))
    except ValueError:
        log.warning("pubdata: %s=%r is not a number of seconds; using %s", GATE_BUDGET_ENV, raw, DEFAULT_GATE_BUDGET)
        return DEFAULT_GATE_BUDGET


def build_dags(project: Path | None = None) -> dict[str, Any]:
    """All DAGs for the project's declarations, keyed by dag_id, plus the errors DAG if needed.

    A declaration gets a DAG only when `pubdata check` would pass it: it loads, the policy allows
    it, and the static checks of its query and expectations file find nothing (gate). Static checks
    come from the gate cache; what changed is checked within the parse's budget, and what the
    budget did not reach is listed as not checked yet (fail closed) until a later parse checks it.

    Never raises: the DAG file fails whole when it raises, and every dataset would lose its DAG.
    A declaration whose DAG cannot be built is listed by the errors DAG like any other problem.
    """
    from pubdata.config import settings
    from pubdata.declarations.cache import FILE_NAME, SpecCache
    from pubdata.declarations.untrusted import clip
    from pubdata.gate import GATE_FILE, GateCache, policy_problems, static_problems

    try:
        cfg = settings()
        project = project or cfg.project
        # Every parse loads every declaration; unchanged files come from the cache (spec_cache).
        catalog = load_all(project, SpecCache(cfg.internal_dir / "cache" / FILE_NAME))
        gate = GateCache(cfg.internal_dir / "cache" / GATE_FILE)
    except Exception as exc:
        log.exception("pubdata: the declarations could not be loaded")
        return {ERRORS_DAG_ID: _errors_dag([f"the declarations could not be loaded: {type(exc).__name__}: "
                                            f"{clip(str(exc), 300)}. Fix: run `pubdata check`"])}
    budget = gate_budget()
    deadline = time.monotonic() + budget
    dags: dict[str, Any] = {}
    problems = [str(e) for e in catalog.problems]
    for decl in catalog.declarations.values():
        try:
            judged = verdict(decl.spec)
            if not judged.allows_publish:
                problems.extend(str(p) for p in policy_problems(decl, project))
                continue
            found = gate.get(decl, project)
            if found is None:
                if time.monotonic() >= deadline:
                    problems.append(f"{decl.metadata_path.relative_to(project)}: not checked yet: this parse spent its "
                                    f"{budget:g} s of static checks ({GATE_BUDGET_ENV}) on other changed declarations. "
                                    "Fix: nothing; a later parse checks it (`pubdata check` on this machine checks all now)")
                    continue
                try:
                    found = static_problems(decl, project)
                except Exception as exc:  # an unchecked query must not get a DAG, nor take the others down
                    log.exception("pubdata: static checks of %s failed", decl.id)
                    problems.append(f"{decl.query_path.relative_to(project)}: the static checks failed: "
                                    f"{clip(repr(exc), 300)}. Fix: run `pubdata check` for the whole error and report it")
                    continue
                gate.put(decl, project, found)
            if found:
                problems.extend(str(p) for p in found)
                continue
            dags[decl.dag_id] = build_dag(decl, judged)
        except Exception as exc:  # Airflow refused the DAG: that dataset has none, the others do
            problems.append(f"{decl.metadata_path.relative_to(project)}: Airflow refused its DAG "
                            f"({type(exc).__name__}: {clip(str(exc), 300)}); run `pubdata check`")
    gate.save()
    for p in problems:
        log.warning("pubdata: %s", p)
    if problems:
        dags[ERRORS_DAG_ID] = _errors_dag(problems)
    published = [d.id for d in catalog.declarations.values() if d.dag_id in dags]
    if published:
        dags[CATALOG_DAG_ID] = build_catalog_dag(published)
    return dags
