"""`make demo-distributed`: the example datasets on a real multi-worker Airflow, on this machine.

CeleryExecutor with a PostgreSQL metadata DB and a Redis broker (Debian's packages, installed
when missing, started here on loopback ports and stopped again whatever happens), an api-server,
a scheduler, a dag-processor, a triggerer and two Celery workers. Each worker has a PUBDATA_HOME
of its own; they share only what a deployment's workers share: the warehouse (its staging tables
included), the public and private staging buckets and the run-state store, all under
var/distributed/. Each dataset's DAG is triggered once for the demo day; publishes emit Asset
events and the scheduler runs the catalog DAG on them. It ends with the same summary as `pubdata
run`, plus which worker ran each task (Airflow records the worker's name as the task's hostname).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WORKER_NAME_ENV = "PUBDATA_WORKER_NAME"
WORKERS = ("worker-a", "worker-b")
DB = "airflow"


def worker_hostname() -> str:
    """[core] hostname_callable: the worker's name, so the task instances say which worker ran them."""
    return os.environ.get(WORKER_NAME_ENV) or socket.getfqdn()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _say(text: str) -> None:
    print(text, flush=True)


def _apt_install(*packages: str) -> None:
    """Install Debian packages, through sudo when not root (as .ci/run does)."""
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _say(f"installing {', '.join(packages)} (Debian packages) ...")
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", *packages], check=True, env=env)


def _postgres_bin() -> Path | None:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return versions[-1].parent if versions else None


def ensure_packages() -> tuple[Path, str]:
    """The PostgreSQL binaries' directory and redis-server, installed if missing."""
    missing = [p for p, ok in (("postgresql", _postgres_bin() is not None),
                               ("redis-server", shutil.which("redis-server") is not None)) if not ok]
    if missing:
        _apt_install(*missing)
    pg, redis = _postgres_bin(), shutil.which("redis-server")
    if pg is None or redis is None:
        raise SystemExit("PostgreSQL or redis-server is still missing after installing them")
    return pg, redis


@dataclass
class Layout:
    """Everything the demo keeps, under var/distributed/."""

    root: Path

    def __getattr__(self, name: str) -> Path:
        return self.root / name.replace("_", "-")


class Processes:
    """Started processes, each in a session of its own, all stopped on exit (TERM, then KILL)."""

    def __init__(self, logs: Path):
        self.logs = logs
        self.started: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.stops: list[Any] = []  # other clean-ups (the database server)

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = open(self.logs / f"{name}.log", "wb")  # kept open for the life of the process
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        self.started.append((name, proc))
        return proc

    def check(self) -> None:
        for name, proc in self.started:
            if proc.poll() is not None:
                tail = (self.logs / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited with {proc.returncode}; its log ends:\n{tail}")

    def stop_all(self) -> None:
        for _name, proc in reversed(self.started):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for _name, proc in reversed(self.started):
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for stop in reversed(self.stops):
            with contextlib.suppress(Exception):
                stop()


def _as_postgres(argv: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the postgres user then."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def start_postgres(pg: Path, layout: Layout, procs: Processes) -> int:
    data, run = layout.postgres / "data", layout.postgres / "run"
    layout.postgres.mkdir(parents=True, exist_ok=True)
    run.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(layout.postgres, "postgres", "postgres")
        shutil.chown(run, "postgres", "postgres")
    if not (data / "PG_VERSION").exists():
        subprocess.run(_as_postgres([str(pg / "initdb"), "-D", str(data), "-A", "trust", "-U", "airflow", "-E", "UTF8"]),
                       check=True, stdout=subprocess.DEVNULL)
    port = _free_port()
    subprocess.run(_as_postgres([str(pg / "pg_ctl"), "-D", str(data), "-l", str(layout.postgres / "server.log"), "-w",
                                 "-o", f"-k {run} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off", "start"]),
                   check=True, stdout=subprocess.DEVNULL)
    procs.stops.append(lambda: subprocess.run(
        _as_postgres([str(pg / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
        check=False, stdout=subprocess.DEVNULL))
    psql = [str(pg / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "airflow", "-d", "postgres", "-q", "-c"]
    quiet = {**os.environ, "PGOPTIONS": "-c client_min_messages=warning"}
    # A fresh metadata DB each time: the runs of an earlier demo must not stand in for this one's.
    subprocess.run([*psql, f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)"], check=True, env=quiet)
    subprocess.run([*psql, f"CREATE DATABASE {DB}"], check=True, env=quiet)
    return port


def start_redis(redis: str, layout: Layout, procs: Processes) -> int:
    layout.redis.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    procs.start("redis", [redis, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                          "--dir", str(layout.redis), "--protected-mode", "yes"], dict(os.environ))
    for _ in range(100):
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            if s.recv(16).startswith(b"+PONG"):
                return port
        procs.check()
        time.sleep(0.1)
    raise RuntimeError("redis-server did not answer PING")


class API:
    """The api-server's REST API (auth is off: it listens on loopback only)."""

    def __init__(self, base: str):
        self.base = base
        self._token: str | None = None

    def _headers(self) -> dict[str, str]:
        import requests

        if self._token is None:
            self._token = requests.get(f"{self.base}/auth/token", timeout=30).json()["access_token"]
        return {"Authorization": f"Bearer {self._token}"}

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        import requests

        response = requests.request(method, f"{self.base}{path}", headers=self._headers(), timeout=60, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:500]}")
        return response.json() if response.content else None

    def up(self) -> bool:
        import requests

        with contextlib.suppress(requests.RequestException):
            return requests.get(f"{self.base}/api/v2/monitor/health", timeout=2).status_code == 200
        return False


def _wait(what: str, ready: Any, procs: Processes, timeout: float = 300, every: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = ready()
        if value:
            return value
        procs.check()
        time.sleep(every)
    raise RuntimeError(f"timed out waiting for {what}")


def run(project: Path, day: str) -> int:
    from pubdata.config import settings
    from pubdata.declarations import load_all
    from pubdata.orchestration import runner
    from pubdata.orchestration.dag_factory import CATALOG_DAG_ID, WAREHOUSE_POOL, warehouse_pool_slots
    from pubdata.policy.verdict import verdict

    layout = Layout(project / "var" / "distributed")
    layout.root.mkdir(parents=True, exist_ok=True)
    pg, redis = ensure_packages()
    procs = Processes(layout.logs)

    def stop(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    try:
        pg_port = start_postgres(pg, layout, procs)
        redis_port = start_redis(redis, layout, procs)
        api_port = _free_port()
        shared = {
            "PUBDATA_PROJECT": str(project),
            "PUBDATA_WAREHOUSE": f"duckdb://{layout.root / 'warehouse.duckdb'}?staging_dir={layout.shared / 'staging-tables'}",
            "PUBDATA_BUCKET": f"file://{layout.public}",
            "PUBDATA_STAGING_BUCKET": f"file://{layout.private / 'staging'}",
            "PUBDATA_STATE_URL": f"file://{layout.private / 'state'}",
        }
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PUBDATA_"))}
        airflow = {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__DAGS_FOLDER": str(project / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(project / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",  # unpaused once the demo's runs exist
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "pubdata.orchestration.distributed.worker_hostname",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",  # loopback only
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://airflow@127.0.0.1:{pg_port}/{DB}",
            "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql+psycopg2://airflow@127.0.0.1:{pg_port}/{DB}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api_port}",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(32),
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            "PUBDATA_SOURCE_POKE_SECONDS": "10",
            "GX_ANALYTICS_ENABLED": "False",
            "PYTHONWARNINGS": "ignore",
        }

        def env_for(name: str, home: Path, airflow_home: Path) -> dict[str, str]:
            return {**base, **airflow, **shared, "AIRFLOW_HOME": str(airflow_home), "PUBDATA_HOME": str(home),
                    WORKER_NAME_ENV: name, "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(airflow_home / "logs")}

        control = env_for("control", layout.control, layout.control / "airflow")
        binary = runner.airflow_bin()
        pubdata = str(Path(binary).with_name("pubdata"))
        _say(f"synthetic warehouse (shared): {layout.root / 'warehouse.duckdb'}")
        subprocess.run([pubdata, "synth"], env=control, check=True)
        cfg = settings()
        catalog = load_all(project)
        decls = [d for d in sorted(catalog.declarations.values(), key=lambda d: d.id) if verdict(d.spec).allows_publish]
        refused = [(d, verdict(d.spec)) for d in catalog.declarations.values() if not verdict(d.spec).allows_publish]
        runner.prime_gate(cfg, decls)  # the dag-processor's first parse then builds every DAG at once
        _say(f"PostgreSQL on 127.0.0.1:{pg_port}, Redis on 127.0.0.1:{redis_port}: migrating the metadata DB ...")
        subprocess.run([binary, "db", "migrate"], env=control, check=True, stdout=subprocess.DEVNULL)
        procs.start("api-server", [binary, "api-server", "-H", "127.0.0.1", "-p", str(api_port)], control)
        procs.start("scheduler", [binary, "scheduler"], control)
        procs.start("dag-processor", [binary, "dag-processor"], control)
        procs.start("triggerer", [binary, "triggerer"], control)
        for name in WORKERS:
            home = layout.workers / name
            procs.start(name, [binary, "celery", "worker", "-H", f"{name}@localhost", "-q", "default", "-c", "2", "-s"],
                        env_for(name, home, home / "airflow"))
        api = API(f"http://127.0.0.1:{api_port}")
        _wait("the api-server", api.up, procs)
        _wait("both Celery workers", lambda: all(
            b"ready." in (layout.logs / f"{n}.log").read_bytes() for n in WORKERS), procs)
        api.call("POST", "/api/v2/pools", json={"name": WAREHOUSE_POOL, "slots": warehouse_pool_slots(),
                                                "description": "pubdata: warehouse work", "include_deferred": False})


        def parsed() -> dict[str, Any] | None:
            dags = {d["dag_id"]: d for d in api.call("GET", "/api/v2/dags", params={"limit": 1000})["dags"]}
            wanted = [d.dag_id for d in decls] + [CATALOG_DAG_ID]
            return dags if all(w in dags for w in wanted) else None

        dags = _wait("the dag-processor to parse the DAGs", parsed, procs, every=2)
        _say(f"{len(decls)} dataset DAGs parsed; triggering each for {day} on CeleryExecutor ({', '.join(WORKERS)})")
        runs: dict[str, str] = {}
        started = time.monotonic()
        for d in decls:
            # At the logical date the scheduler would run next: it then skips it instead of adding a
            # scheduled run (for a day the synthetic warehouse has no data) beside the demo's.
            logical = dags[d.dag_id].get("next_dagrun_logical_date")
            body = {"logical_date": logical, "conf": {"submission_date": day},
                    "dag_run_id": f"demo__{day}__{secrets.token_hex(3)}"}
            runs[d.id] = api.call("POST", f"/api/v2/dags/{d.dag_id}/dagRuns", json=body)["dag_run_id"]
            api.call("PATCH", f"/api/v2/dags/{d.dag_id}", json={"is_paused": False})

        def finished() -> dict[str, str] | None:
            states = {i: api.call("GET", f"/api/v2/dags/{d.dag_id}/dagRuns/{runs[d.id]}")["state"]
                      for i, d in ((d.id, d) for d in decls)}
            return states if all(s in ("success", "failed") for s in states.values()) else None

        states = _wait("the dataset runs", finished, procs, timeout=1800, every=3)
        last_publish = dt.datetime.now(dt.UTC)

        def catalog_done() -> Any:
            listed = api.call("GET", f"/api/v2/dags/{CATALOG_DAG_ID}/dagRuns",
                              params={"order_by": "-run_after", "limit": 5})["dag_runs"]
            busy = [r for r in listed if r["state"] in ("queued", "running")]
            done = [r for r in listed if r["state"] == "success"]
            return done[0] if done and not busy else None

        catalog_run = None
        if any(s == "success" for s in states.values()):
            time.sleep(5)  # let the scheduler turn the last publishes' events into a catalog run
            catalog_run = _wait("the catalog DAG (scheduled on the publishes' assets)", catalog_done, procs,
                                timeout=600, every=3)
        seconds = round(time.monotonic() - started, 1)

        # Which worker ran each task.
        outcomes, workers, spread = [], {}, dict.fromkeys(WORKERS, 0)
        from pubdata.orchestration.records import RunRecords

        records = RunRecords.open(cfg)
        for d in decls:
            tis = api.call("GET", f"/api/v2/dags/{d.dag_id}/dagRuns/{runs[d.id]}/taskInstances")["task_instances"]
            by_worker: dict[str, list[str]] = {}
            for ti in sorted(tis, key=lambda t: t.get("start_date") or ""):
                host = ti.get("hostname") or "-"
                by_worker.setdefault(host, []).append(ti["task_id"].replace("wait_for_", "wait:"))
                if host in spread:
                    spread[host] += 1
            workers[d.id] = "; ".join(f"{h}: {', '.join(t)}" for h, t in sorted(by_worker.items()))
            partition = day if d.spec.incremental else None
            log = layout.logs / "scheduler.log"
            outcomes.append((d, runner.RunOutcome(d.id, d.dag_id, day, 0 if states[d.id] == "success" else 1, seconds,
                                                  log, records.get(d.id, partition))))
        from pubdata.cli.app import _summary

        for d, out in outcomes:
            mark = "published" if out.ok else "FAILED"
            _say(f"{d.id}: {mark} (run {runs[d.id]})")
        if catalog_run is not None:
            _say(f"catalog: rebuilt by {CATALOG_DAG_ID} run {catalog_run['dag_run_id']} "
                 f"({catalog_run.get('run_type')}, after the publishes of {last_publish:%H:%M:%S})")
        _summary(cfg, outcomes, refused, dt.date.fromisoformat(day), workers)
        _say("tasks per worker: " + ", ".join(f"{n}: {c}" for n, c in spread.items())
             + f" (worker homes: {layout.workers}; logs: {layout.logs})")
        ok = all(o.ok for _, o in outcomes) and catalog_run is not None
        if not all(spread.values()):
            _say("warning: one worker ran no task")
        return 0 if ok else 1
    finally:
        _say("stopping Airflow, Redis and PostgreSQL ...")
        procs.stop_all()


@contextlib.contextmanager
def _environment(project: Path) -> Iterator[None]:
    old = dict(os.environ)
    os.environ.update({
        "PUBDATA_PROJECT": str(project),
        "PUBDATA_HOME": str(project / "var" / "distributed" / "control"),
        "PUBDATA_BUCKET": f"file://{project / 'var' / 'distributed' / 'public'}",
        "PUBDATA_STAGING_BUCKET": f"file://{project / 'var' / 'distributed' / 'private' / 'staging'}",
        "PUBDATA_STATE_URL": f"file://{project / 'var' / 'distributed' / 'private' / 'state'}",
    })
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(old)


def main() -> None:
    from pubdata.config import project_root

    project = project_root()
    day = sys.argv[1] if len(sys.argv) > 1 else "2026-11-01"
    with _environment(project):
        try:
            code = run(project, day)
        except KeyboardInterrupt:
            code = 130
    sys.stdout.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
