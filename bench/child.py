"""Run one measurement in a fresh interpreter and read its result back.

A fresh process per measurement gives each row cold imports (what the dag processor and every
Airflow task pay), its own peak RSS, and no state left over from the previous row.
`python -m bench.child module:function '{"kwarg": ...}'` prints one JSON line, marked.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MARK = "@@bench-result@@ "


class ChildFailed(RuntimeError):
    """A measurement process exited non-zero or printed no result."""


def peak_rss_mb() -> float:
    """This process's peak resident set size (VmHWM), in MiB."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("/proc/self/status has no VmHWM line: peak RSS needs Linux")


def run(target: str, env: dict[str, str] | None = None, timeout: float = 3600, **kwargs: Any) -> dict[str, Any]:
    """Call `module:function(**kwargs)` in a new interpreter; return its dict plus wall seconds."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "bench.child", target, json.dumps(kwargs, default=str)],
        cwd=REPO, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout,
    )
    wall = time.perf_counter() - started
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        raise ChildFailed(f"{target} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}{proc.stdout[-2000:]}")
    result = json.loads(lines[-1][len(MARK):])
    result["process_wall_s"] = round(wall, 3)
    return result


def main(argv: list[str]) -> None:
    target, raw = argv[0], argv[1] if len(argv) > 1 else "{}"
    module, _, name = target.partition(":")
    result = getattr(importlib.import_module(module), name)(**json.loads(raw))
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    sys.stdout.write(MARK + json.dumps(result, default=str) + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: duckdb's bindings print spurious "leaked" lines there.
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
