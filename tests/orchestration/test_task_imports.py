"""What a task process imports before it needs it: on the embedded engine, the DAG factory and
the steps before validate (wait for sources, stage) import neither Great Expectations (about 3 s)
nor the google clients, pandas or scipy; they come in only with validate (bench/RESULTS.md,
"demo"). Each check runs in a fresh interpreter, as Airflow runs a task."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.support.project import EXAMPLE

HEAVY = ("great_expectations", "google.cloud", "google.api_core", "pandas", "scipy", "altair")
STEPS = """
import datetime as dt, json, os, sys
from pubdata.orchestration import dag_factory, tasks
from pubdata.config import settings
from pubdata.declarations import load
day = dt.date(2026, 11, 1)
decl = load({dataset!r}, settings().project)
assert all(tasks.wait_for_source(decl.id, t, day) for t in decl.spec.source_tables)
staged = tasks.stage(decl.id, day, "imports")
top = lambda m: ".".join(m.split(".")[:2 if m.startswith("google.") else 1])
loaded = lambda: sorted({{top(m) for m in sys.modules if m.startswith({heavy!r})}})
before = loaded()
{after}
print(json.dumps({{"before_validate": before, "after": loaded()}}))
sys.stdout.flush()
os._exit(0)
"""


def _heavy_modules(after: str = "") -> dict[str, list[str]]:
    code = STEPS.format(dataset=EXAMPLE, heavy=HEAVY, after=after)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "GX_ANALYTICS_ENABLED": "False"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_stage_on_the_embedded_engine_imports_no_heavy_module(project):
    found = _heavy_modules()
    assert found["before_validate"] == [], f"imported before validate needs them: {found['before_validate']}"


def test_validate_is_where_great_expectations_comes_in(project):
    """The same look sees Great Expectations once validate has run, so the check above can fail."""
    found = _heavy_modules("tasks.validate(decl.id, staged)")
    assert found["before_validate"] == []
    assert "great_expectations" in found["after"]
