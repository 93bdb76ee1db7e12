"""Run dataset DAGs through real Airflow on the configured engines (`pubdata run`).

Airflow keeps its metadata DB (SQLite on the embedded stack) under PUBDATA_HOME/airflow. Each
dataset's DAG runs as `airflow dags test` runs it, the same code path the scheduler runs, in a
worker process that runs several in turn (dag_test_worker; RUN_MODE_ENV), and its log is kept
under PUBDATA_HOME/internal/logs/; then the catalog DAG rebuilds the public catalog once,
as the scheduler would after that batch of publishes. The pool the DAGs' warehouse tasks use is
created with the metadata DB.

Each run is a run of its own in Airflow's history, as a manual trigger from the UI is: its
logical date is the moment it was asked for and the day it publishes is its config
(`{"submission_date": day}`). `dags test` replaces the run that has the same logical date, so
runs keyed by the day would erase the earlier run of that day, and the alerts that link to it.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pubdata.config import Settings
from pubdata.errors import ErrorKind
from pubdata.orchestration.dag_factory import CATALOG_DAG_ID, DEADLINES_ENV, WAREHOUSE_POOL, warehouse_pool_slots
from pubdata.orchestration.records import FailureInfo, RunRecord, RunRecords, now

_DAG_RUN_CREATED = "Created dag run."
"""What `airflow dags test` logs once it has written the DAG folder to the metadata DB and made its run."""
SQLITE_BUSY_TIMEOUT = 120
"""Seconds a process waits for the metadata DB's write lock (runs of independent DAGs share it)."""

TERMINAL = ("published", "quarantined", "failed")
"""Run states that say how a run ended; any other, once its DAG run is over, means it ended unrecorded."""


def airflow_env(cfg: Settings, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    home = cfg.airflow_home
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(cfg.dags_dir),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(cfg.project / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # `pubdata run` runs several `dags test` processes on this one file: a writer waits for
        # another's write (SQLite's busy timeout) instead of failing at once after sqlite3's 5 s.
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}?timeout={SQLITE_BUSY_TIMEOUT}",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "60",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "PUBDATA_PROJECT": str(cfg.project),
        "PUBDATA_HOME": str(cfg.home),
        "PYTHONWARNINGS": "ignore",
        "GX_ANALYTICS_ENABLED": "False",
    })
    if extra:
        env.update(extra)
    return env


def airflow_bin() -> str:
    """The `airflow` executable of this environment."""
    candidate = Path(sys.executable).with_name("airflow")
    return str(candidate) if candidate.exists() else (shutil.which("airflow") or "airflow")


def ensure_airflow_db(cfg: Settings) -> None:
    """Migrate the metadata DB once per Airflow version (`airflow dags test` needs it), and create
    the warehouse pool (a task in a pool that does not exist is never scheduled)."""
    from importlib.metadata import version

    home = cfg.airflow_home
    home.mkdir(parents=True, exist_ok=True)
    stamp = home / f".migrated-{version('apache-airflow-core')}"
    if not (stamp.exists() and (home / "airflow.db").exists()):
        _airflow(cfg, "db", "migrate")
        stamp.touch()
    slots = warehouse_pool_slots()
    pool_stamp = home / f".pool-{WAREHOUSE_POOL}-{slots}"
    if not pool_stamp.exists():
        ensure_pool(cfg, slots)
        pool_stamp.touch()


def prime_gate(cfg: Settings, decls: list[Any]) -> None:
    """Run the static checks of these declarations here, filling the cache the DAG file reads.

    The DAG file checks changed declarations within a time budget and leaves the others without a
    DAG until a later parse (gate.GateCache); `airflow dags test` parses once, so a first run on a
    busy machine could find its DAG missing. Checked here first, its parse finds every answer.
    """
    from pubdata import gate

    cache = gate.GateCache(cfg.internal_dir / "cache" / gate.GATE_FILE)
    for decl in decls:
        cache.static_problems(decl, cfg.project)
    cache.save()


def ensure_pool(cfg: Settings, slots: int, env: dict[str, str] | None = None) -> None:
    _airflow(cfg, "pools", "set", WAREHOUSE_POOL, str(slots),
             "pubdata: warehouse work (source waits, stage, validate, export) running at once", env=env)


def _airflow(cfg: Settings, *args: str, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run([airflow_bin(), *args], env=env or airflow_env(cfg), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"`airflow {' '.join(args)}` failed (AIRFLOW_HOME={cfg.airflow_home}):\n{proc.stderr[-4000:]}")


@dataclass
class RunOutcome:
    dataset_id: str
    dag_id: str
    date: str
    returncode: int
    seconds: float
    log: Path
    record: RunRecord | None
    failed_tasks: list[TaskEvent] = field(default_factory=list)  # each with the error's own text, when logged
    run_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.record is not None and self.record.state == "published"

    @property
    def causes(self) -> list[str]:
        """One line per failed task: which task, and why in the error's own words."""
        out = [f"{t.task_id}: {t.error or 'failed without an error message; see the log'}" for t in self.failed_tasks]
        if not out and not self.ok:
            failure = self.record.failure if self.record is not None else None
            if failure is not None and failure.error:
                out.append(f"{failure.task or 'a task'}: {failure.error}")
            elif self.returncode != 0:
                out.append("the DAG did not run (see the log: it may not have parsed)")
        return out


def run_catalog(cfg: Settings, date: str, on_task: Callable[[TaskEvent], None] | None = None) -> RunOutcome:
    """Run the catalog DAG once (the scheduler runs it after each batch of publishes)."""
    return run_dag(cfg, CATALOG_DAG_ID, CATALOG_DAG_ID, date, None, on_task=on_task, record=False)


def run_dag(cfg: Settings, dataset_id: str, dag_id: str, date: str, partition: str | None,
            on_task: Callable[[TaskEvent], None] | None = None, *, record: bool = True,
            synced: threading.Event | None = None) -> RunOutcome:
    """Run one DAG with `airflow dags test`, keeping its log; on_task hears each task start and end,
    and `synced` is set once the process has written the DAGs to the metadata DB (or ended)."""
    log_path = _log_path(cfg, dataset_id, date)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    follower = TaskLogFollower()
    failed: list[TaskEvent] = []
    env = airflow_env(cfg, {"PUBDATA_TASK_RETRIES": os.environ.get("PUBDATA_TASK_RETRIES", "0"),
                            DEADLINES_ENV: "off",  # dags test evaluates none, and cannot finish with one
                            "PYTHONUNBUFFERED": "1"})  # lines must reach us as they are logged
    logical = dt.datetime.now(dt.UTC).isoformat()  # a run of its own (module docstring)
    conf = json.dumps({"submission_date": date})
    with open(log_path, "w") as log, subprocess.Popen(
        [airflow_bin(), "dags", "test", dag_id, logical, "--conf", conf], env=env, cwd=cfg.project,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            _follow(line, follower, failed, synced, on_task)
    if synced is not None:
        synced.set()
    found = None
    if record:
        found = settle(cfg, dataset_id, partition, follower.run_id, failed, proc.returncode)
    return RunOutcome(dataset_id, dag_id, date, proc.returncode, round(time.monotonic() - t0, 1), log_path, found,
                      failed, follower.run_id)


def _follow(line: str, follower: TaskLogFollower, failed: list[TaskEvent], synced: threading.Event | None,
            on_task: Callable[[TaskEvent], None] | None) -> None:
    """One line of a run's output: the DAGs written to the metadata DB, a task started or ended."""
    if synced is not None and not synced.is_set() and _DAG_RUN_CREATED in line:
        synced.set()
    event = follower.feed(line)
    if event is None:
        return
    if event.ended and event.state == "failed":
        failed.append(event)
    if on_task is not None:
        on_task(event)


def settle(cfg: Settings, dataset_id: str, partition: str | None, run_id: str | None, failed: list[TaskEvent],
           returncode: int) -> RunRecord | None:
    """The run's record once its DAG run is over: a run that ended without recording how (its
    failure callback never ran, or the process died) is marked failed here, with the cause the log
    shows, so that `pubdata status` never calls a finished run running."""
    records = RunRecords.open(cfg)
    found = records.get(dataset_id, partition)
    if found is None or run_id is None or found.run_id != run_id:
        return found
    if found.state in TERMINAL or returncode == 0 and found.state == "published":
        return found
    task = failed[0] if failed else None
    error = task.error if task is not None else "the DAG run ended before its tasks recorded an outcome (see the log)"
    failure = FailureInfo(kind=task.kind if task is not None else "infrastructure", task=task.task_id if task is not None else found.worker.task
                          if found.worker is not None else None, error=error, at=now())
    return records.update(dataset_id, partition, state="failed", failure=failure, finished_at=now())


@dataclass(frozen=True)
class DagJob:
    """One DAG run `run_dags` is asked for: which dataset, its DAG, and the partition it records."""

    dataset_id: str
    dag_id: str
    partition: str | None


def default_parallel() -> int:
    """Runs at once when not told: one per core this process may use (each `dags test` process
    is mostly CPU: Airflow's start-up, the query, Great Expectations' import)."""
    return max(len(os.sched_getaffinity(0)), 1)


RUN_MODE_ENV = "PUBDATA_RUN_MODE"
"""`workers` (the default): datasets run in worker processes (dag_test_worker), each paying
Airflow's start once for all the runs it is given; `per-dataset`: one `airflow dags test`
process per dataset, as `pubdata run` ran before (bench/ measures one against the other)."""
RUN_MODES = ("workers", "per-dataset")
WORKER_LINE = "pubdata: this run's Airflow process is worker process"
"""A line at the top of each run's log in the `workers` mode, then the worker's process id and the
run's number in it (in a worker's first run, after the worker's start-up lines)."""


def run_mode() -> str:
    mode = os.environ.get(RUN_MODE_ENV, "workers").strip() or "workers"
    if mode not in RUN_MODES:
        raise ValueError(f"{RUN_MODE_ENV}={mode!r} is not a run mode: set it to one of {', '.join(RUN_MODES)}, "
                         "or unset it")
    return mode


def run_dags(cfg: Settings, jobs: Sequence[DagJob], date: str, parallel: int,
             on_task: Callable[[str, TaskEvent], None] | None = None,
             on_done: Callable[[RunOutcome], None] | None = None, *, mode: str | None = None) -> list[RunOutcome]:
    """Run independent DAGs, at most `parallel` at once.

    Outcomes come back in the order of `jobs`, whatever order they finished in; on_done hears each
    as it finishes. With parallel 1 they run one after another, in that order. A run that fails
    (or whose process dies) is one failed outcome: the others go on. What they share is safe to
    share: each dataset stages into its own DuckDB file and reads the source read-only, the
    stores change shared keys by compare-and-swap (the index, run records), Airflow's SQLite DB
    takes one writer at a time (SQLITE_BUSY_TIMEOUT), and each run keeps its own log.

    In the `workers` mode (RUN_MODE_ENV) min(parallel, jobs) worker processes each take the next
    job until none is left; in `per-dataset` each job is an `airflow dags test` process.

    The first run starts alone, and the others once it has written the DAGs to the metadata DB:
    every `dags test` writes the whole DAG folder there, and two processes inserting the same new
    rows at once (a DAG's asset references, on a fresh DB or after an edit) fail one of the runs
    on a unique constraint. Once the rows exist, the others' writes change nothing.
    """
    if (mode or run_mode()) == "workers":
        return _run_in_workers(cfg, jobs, date, parallel, on_task, on_done)

    def one(job: DagJob, synced: threading.Event | None = None) -> RunOutcome:
        heard = functools.partial(on_task, job.dataset_id) if on_task is not None else None
        try:
            out = run_dag(cfg, job.dataset_id, job.dag_id, date, job.partition, on_task=heard, synced=synced)
        except Exception as exc:  # the runner itself failed (a log that cannot be written, ...)
            if synced is not None:
                synced.set()
            out = _runner_failed(cfg, job, date, exc)
        if on_done is not None:
            on_done(out)
        return out

    if parallel <= 1 or len(jobs) <= 1:
        return [one(job) for job in jobs]
    first_synced = threading.Event()
    with ThreadPoolExecutor(max_workers=min(parallel, len(jobs)), thread_name_prefix="pubdata-run") as pool:
        futures = [pool.submit(one, jobs[0], first_synced)]
        first_synced.wait()
        futures += [pool.submit(one, job) for job in jobs[1:]]
        return [f.result() for f in futures]


def _log_path(cfg: Settings, dataset_id: str, date: str) -> Path:
    return cfg.internal_dir / "logs" / dataset_id / f"{date}.log"


def _runner_failed(cfg: Settings, job: DagJob, date: str, exc: BaseException) -> RunOutcome:
    """The outcome of a run the runner itself failed (a log that cannot be written, ...)."""
    return RunOutcome(job.dataset_id, job.dag_id, date, -1, 0.0, _log_path(cfg, job.dataset_id, date), None,
                      [TaskEvent("run", "failed", None, own_words(type(exc).__name__, str(exc)))])


def _run_in_workers(cfg: Settings, jobs: Sequence[DagJob], date: str, parallel: int,
                    on_task: Callable[[str, TaskEvent], None] | None,
                    on_done: Callable[[RunOutcome], None] | None) -> list[RunOutcome]:
    """run_dags in worker processes: each slot keeps a worker busy with the next job left, and
    starts another if its worker dies (the job it was running failed; the rest go on)."""
    results: dict[int, RunOutcome] = {}
    left = list(enumerate(jobs))
    lock = threading.Lock()

    def take() -> tuple[int, DagJob] | None:
        with lock:
            return left.pop(0) if left else None

    def done(index: int, out: RunOutcome) -> None:
        results[index] = out
        if on_done is not None:
            on_done(out)

    def slot(synced: threading.Event | None = None) -> None:
        while True:
            with lock:
                if not left:
                    break
            _drive_worker(cfg, date, take, on_task, done, synced)
            synced = None
        if synced is not None:
            synced.set()

    at_once = max(min(parallel, len(jobs)), 1)
    first_synced = threading.Event()
    with ThreadPoolExecutor(max_workers=at_once, thread_name_prefix="pubdata-worker") as pool:
        futures = [pool.submit(slot, first_synced)]
        if at_once > 1:
            first_synced.wait()
            futures += [pool.submit(slot) for _ in range(at_once - 1)]
        for f in futures:
            f.result()
    return [results[i] for i in range(len(jobs))]


def _drive_worker(cfg: Settings, date: str, take: Callable[[], tuple[int, DagJob] | None],
                  on_task: Callable[[str, TaskEvent], None] | None,
                  done: Callable[[int, RunOutcome], None], synced: threading.Event | None) -> None:
    """One dag_test_worker process: give it a job, split its output into that job's log, progress
    and outcome, give it the next when it ends one, until none is left or it dies."""
    from pubdata.orchestration import dag_test_worker as worker

    env = airflow_env(cfg, {"PUBDATA_TASK_RETRIES": os.environ.get("PUBDATA_TASK_RETRIES", "0"),
                            DEADLINES_ENV: "off",  # dags test evaluates none, and cannot finish with one
                            "PYTHONUNBUFFERED": "1"})  # lines must reach us as they are logged
    conf = json.dumps({"submission_date": date})
    current: tuple[int, DagJob] | None = take()
    if current is None:
        return
    log = None
    follower = TaskLogFollower()
    failed: list[TaskEvent] = []
    t0 = time.monotonic()
    before: list[str] = []  # the worker's start-up lines, kept in the log of its first run

    def finish(returncode: int) -> None:
        nonlocal log
        assert current is not None
        index, job = current
        if log is not None:
            log.close()
            log = None
        found = settle(cfg, job.dataset_id, job.partition, follower.run_id, failed, returncode)
        done(index, RunOutcome(job.dataset_id, job.dag_id, date, returncode, round(time.monotonic() - t0, 1),
                               _log_path(cfg, job.dataset_id, date), found, list(failed), follower.run_id))

    def ask(proc: subprocess.Popen[str]) -> None:
        assert proc.stdin is not None
        if current is None:
            proc.stdin.close()
        else:
            proc.stdin.write(current[1].dag_id + "\n")
            proc.stdin.flush()

    began, running = False, ""
    with subprocess.Popen(
        [sys.executable, "-m", worker.__name__, "--conf", conf], env=env, cwd=cfg.project,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
    ) as proc:
        assert proc.stdout is not None
        try:
            ask(proc)
            for line in proc.stdout:
                if current is not None and line.startswith(worker.BEGIN):
                    path = _log_path(cfg, current[1].dataset_id, date)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    log = open(path, "w")
                    log.writelines(before)
                    before = []
                    _, pid, nth = (line[len(worker.BEGIN):].split() + ["?", "?"])[:3]
                    log.write(f"{WORKER_LINE} {pid}, its run {nth}\n")
                    follower, failed, t0, began = TaskLogFollower(), [], time.monotonic(), True
                    running = current[1].dataset_id
                    continue
                if current is not None and began and line.startswith(worker.END):
                    code = line[len(worker.END):].split()[-1]
                    finish(int(code) if code.lstrip("-").isdigit() else 1)
                    if synced is not None:
                        synced.set()
                    current, began = take(), False
                    ask(proc)
                    continue
                if log is None:
                    before.append(line)
                    continue
                log.write(line)
                _follow(line, follower, failed, synced,
                        functools.partial(on_task, running) if on_task is not None else None)
        except Exception as exc:  # the runner itself failed: this run fails, the worker stops
            proc.kill()
            if log is not None:
                log.close()
                log = None
            if current is not None:
                done(current[0], _runner_failed(cfg, current[1], date, exc))
                current = None
        finally:
            if synced is not None:
                synced.set()
    if current is not None:  # the worker died (or never started) during this run
        if log is None:
            path = _log_path(cfg, current[1].dataset_id, date)
            path.parent.mkdir(parents=True, exist_ok=True)
            log = open(path, "w")
            log.writelines(before)
        log.write(f"pubdata: the worker process running this DAG ended with exit code {proc.returncode}\n")
        finish(proc.returncode or -1)


@dataclass(frozen=True)
class TaskEvent:
    """A task of a running DAG started (state "running") or ended (its final Airflow state)."""

    task_id: str
    state: str
    seconds: float | None = None  # how long it ran, on its end
    error: str | None = None  # on a failed end: the first exception the task logged, in its own words
    kind: ErrorKind = "infrastructure"  # that exception's family (errors.classify); unknown ones are infrastructure

    @property
    def ended(self) -> bool:
        return self.state != "running"


class TaskLogFollower:
    """Reads `airflow dags test` output line by line and says when each task starts and ends.

    Airflow logs "[DAG TEST] starting task_id=X", then the task instance (with its ti_id), the
    state the task reported ("Task instance state updated ... new_state=failed ... ti_id=..."),
    and "[DAG TEST] end task task_id=X" whatever happened. A task that ends without reporting a
    state ended in error before it could, so it counts as failed.
    """

    _START = re.compile(r"\[DAG TEST\] starting task_id=(?P<task>\S+)")
    _INSTANCE = re.compile(r"\[DAG TEST\] running task <TaskInstance: [^ .]+\.(?P<task>\S+) (?P<run>\S+) .*?ti_id=(?P<ti>[0-9a-f-]+)")
    # The last line of a traceback: `package.module.SomeError: message` at the start of a line. The
    # first one after a task started is the original error (what follows is what it was wrapped in).
    _EXCEPTION = re.compile(r"^(?:[A-Za-z_][\w]*\.)*(?P<cls>[A-Z]\w*(?:Error|Exception|Failed|Refused|Invalid|Changed|"
                            r"NotValidated|Timeout|Interrupt))(?:: (?P<msg>.*))?$")
    _STATE = re.compile(r"Task instance state updated.*?new_state=(?P<state>\w+).*?ti_id=(?P<ti>[0-9a-f-]+)")
    _END = re.compile(r"\[DAG TEST\] end task task_id=(?P<task>\S+)")
    _LOGGED = re.compile(r"^\d{4}-\d\d-\d\dT")  # a log record, not a line of a message

    def __init__(self) -> None:
        self._task_of: dict[str, str] = {}
        self._state: dict[str, str] = {}
        self._started: dict[str, float] = {}
        self._error: dict[str, tuple[str, ErrorKind]] = {}
        self._current: str | None = None
        self._more: tuple[str, int] | None = None
        self.run_id: str | None = None

    def feed(self, line: str) -> TaskEvent | None:
        if m := self._START.search(line):
            task = m["task"]
            self._started[task] = time.monotonic()
            self._state.pop(task, None)
            self._error.pop(task, None)
            self._current = task
            return TaskEvent(task, "running")
        if m := self._INSTANCE.search(line):
            self._task_of[m["ti"]] = m["task"]
            self.run_id = self.run_id or m["run"]
        elif (m := self._STATE.search(line)) and m["ti"] in self._task_of:
            self._state[self._task_of[m["ti"]]] = m["state"]
        elif m := self._END.search(line):
            task = m["task"]
            self._current = None
            started = self._started.pop(task, None)
            seconds = round(time.monotonic() - started, 1) if started is not None else None
            state = self._state.pop(task, "failed")
            found = self._error.pop(task, None)
            if found is None or state != "failed":
                return TaskEvent(task, state, seconds)
            return TaskEvent(task, state, seconds, found[0], found[1])
        elif self._current is not None and self._current not in self._error and (m := self._EXCEPTION.match(line.rstrip())):
            self._error[self._current] = (own_words(m["cls"], m["msg"] or ""), kind_of(m["cls"]))
            self._more = self._current, 2
            return None
        elif self._more is not None and line.strip() and not self._LOGGED.match(line):
            # the message's next lines (DuckDB's "Candidate bindings: ..." names the column meant)
            task, left = self._more
            text, kind = self._error[task]
            self._error[task] = (own_words("", f"{text} {' '.join(line.split())}"), kind)
            self._more = (task, left - 1) if left > 1 else None
            return None
        self._more = None
        return None


def kind_of(cls: str) -> ErrorKind:
    """The family of an exception named in a log (errors.classify for a class we only know by name)."""
    from pubdata import errors

    found = getattr(errors, cls, None)
    return "data" if isinstance(found, type) and issubclass(found, errors.DataError) else "infrastructure"


def own_words(cls: str, message: str, limit: int = 300) -> str:
    """An error as one line: a pubdata error's message says what happened and what to do, so it
    stands alone; any other keeps its class name, which is often the only clue (KeyError: 'x')."""
    from pubdata import errors

    own = not cls or isinstance(getattr(errors, cls, None), type)
    text = message.strip() if own and message.strip() else f"{cls}: {message.strip()}" if message.strip() else cls
    return text if len(text) <= limit else text[: limit - 1] + "…"
