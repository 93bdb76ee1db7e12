"""A real `pubdata airflow`, started and stopped as a user does: everything it starts listens on
loopback only, and after Ctrl-C (SIGINT) or SIGTERM no process it started is left running."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests

pytestmark = pytest.mark.airflow
COMPONENTS = ("scheduler", "dag_processor", "triggerer")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory) -> Path:
    """Its own metadata DB: the scheduler must not act on the runs other tests left in theirs."""
    return tmp_path_factory.mktemp("airflow-ui")


def _ready(port: int) -> bool:
    try:
        health = requests.get(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=2)
    except requests.RequestException:
        return False
    if health.status_code != 200:
        return False
    body = health.json()
    return all((body.get(c) or {}).get("status") == "healthy" for c in COMPONENTS)


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _of_this_home(home: Path) -> list[psutil.Process]:
    """Every live process whose environment names this Airflow home (the ones `pubdata airflow` started)."""
    found = []
    for p in psutil.process_iter():
        try:
            if p.pid != os.getpid() and p.environ().get("AIRFLOW_HOME") == str(home) and _alive(p):
                found.append(p)
        except psutil.Error:
            continue
    return found


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_pubdata_airflow_listens_on_loopback_and_stops_everything_it_started(project, airflow_home, tmp_path, signum):
    port = _free_port()
    env = {**os.environ, "PUBDATA_AIRFLOW_HOME": str(airflow_home), "COLUMNS": "200"}
    out = (tmp_path / "airflow.out").open("wb")
    proc = subprocess.Popen([str(Path(sys.executable).with_name("pubdata")), "airflow", "--port", str(port)],
                            env=env, stdout=out, stderr=subprocess.STDOUT)
    started: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 300
        while not _ready(port):
            assert proc.poll() is None, (tmp_path / "airflow.out").read_text()[-3000:]
            assert time.monotonic() < deadline, "Airflow did not become healthy in 5 minutes"
            time.sleep(2)
        components = psutil.Process(proc.pid).children()  # api-server, scheduler, dag-processor, triggerer
        assert len(components) == 4 and all(_alive(p) for p in components), components
        started = psutil.Process(proc.pid).children(recursive=True)  # and what they started
        assert len(started) > 4, started
        pids = {p.pid for p in started}
        listening = [c for c in psutil.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN and c.pid in pids]
        assert any(c.laddr.port == port for c in listening), listening
        assert {c.laddr.ip for c in listening} <= {"127.0.0.1", "::1"}, listening

        proc.send_signal(signum)
        assert proc.wait(timeout=120) == 0, (tmp_path / "airflow.out").read_text()[-3000:]
        left = [p for p in started if _alive(p)] + _of_this_home(airflow_home)
        assert not left, [(p.pid, p.cmdline()) for p in left if _alive(p)]
    finally:
        for p in [*started, *_of_this_home(airflow_home)]:
            if _alive(p):
                p.kill()
        if proc.poll() is None:
            proc.kill()
        out.close()
