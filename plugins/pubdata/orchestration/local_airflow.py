"""`pubdata airflow`: Airflow's components on this machine, on loopback, stopped as a whole.

Not `airflow standalone`: it starts the scheduler's and the triggerer's log servers, which in
Airflow 3.3 listen on every interface with no setting to change it, and on Ctrl-C it terminates
only its direct children, leaving their executors and task processes running. Here the log
servers are not started (the api-server reads the task logs from the local log folder, where the
local executor writes them), the api-server listens on 127.0.0.1, and every component runs in
one process group of its own: a stop signals the group, waits, then kills what is left of it
and of the components' descendants.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

GRACE_SECONDS = 20.0
"""How long the components get to stop after SIGTERM before what is left is killed."""


def components(binary: str, port: int) -> dict[str, list[str]]:
    """The command of each component: no log server (see the module docstring), UI on loopback."""
    return {
        "api-server": [binary, "api-server", "-H", "127.0.0.1", "-p", str(port)],
        "scheduler": [binary, "scheduler", "--skip-serve-logs"],
        "dag-processor": [binary, "dag-processor"],
        "triggerer": [binary, "triggerer", "--skip-serve-logs"],
    }


def component_env(env: dict[str, str], port: int) -> dict[str, str]:
    """The local executor's task processes report to this api-server, on loopback."""
    return {
        **env,
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
    }


class ProcessTree:
    """Child processes in one new process group, stopped together (signal, wait, kill the rest)."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.pgid: int | None = None

    def start(self, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        # The first child leads a new group; the others join it, so one killpg reaches them all.
        proc = subprocess.Popen(argv, env=env, process_group=0 if self.pgid is None else self.pgid)
        if self.pgid is None:
            self.pgid = proc.pid
        self.procs.append(proc)
        return proc

    def _descendants(self) -> list[Any]:
        import psutil

        found: dict[int, Any] = {}
        for proc in self.procs:
            with contextlib.suppress(psutil.Error):
                parent = psutil.Process(proc.pid)
                found[parent.pid] = parent
                found.update((c.pid, c) for c in parent.children(recursive=True))
        return list(found.values())

    def alive(self) -> bool:
        return any(p.poll() is None for p in self.procs)

    def stop(self, grace: float = GRACE_SECONDS) -> None:
        """SIGTERM to the group, wait up to `grace` seconds, then SIGKILL the group and every descendant left."""
        import psutil

        tree = self._descendants()  # before they exit: a child that left the group is still known
        if self.pgid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and (self.alive() or any(_running(p) for p in tree)):
            time.sleep(0.2)
        tree += self._descendants()
        if self.pgid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pgid, signal.SIGKILL)
        for p in tree:
            with contextlib.suppress(psutil.Error):
                p.kill()
        for proc in self.procs:
            proc.wait()
        psutil.wait_procs(tree, timeout=5)


def _running(p: Any) -> bool:
    import psutil

    try:
        return bool(p.is_running() and p.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def serve(binary: str, port: int, env: dict[str, str], say: Callable[[str], None] = print) -> int:
    """Run the components until Ctrl-C or SIGTERM (or one of them exits); then stop them all."""
    tree = ProcessTree()
    stopping: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        stopping.append(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    code = 0
    try:
        run_env = component_env(env, port)
        started = {name: tree.start(argv, run_env) for name, argv in components(binary, port).items()}
        while not stopping:
            ended = [(name, p.returncode) for name, p in started.items() if p.poll() is not None]
            if ended:
                say(f"Airflow's {ended[0][0]} exited with code {ended[0][1]}: stopping the rest")
                code = 1
                break
            time.sleep(0.5)
    finally:
        say("stopping Airflow (its scheduler, dag-processor, triggerer, api-server and their task processes)")
        tree.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
    return code
