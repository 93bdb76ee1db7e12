"""README's "Add a dataset in ten minutes", word for word: its shell blocks run, in order, in a copy
of the project (with the session's synthetic warehouse standing in for `make demo`'s), and the new
dataset ends up published and in the public catalog."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

from tests.support.project import REPO

pytestmark = pytest.mark.airflow
SECTION = "Add a dataset in ten minutes"
NOT_COPIED = shutil.ignore_patterns(".git", ".venv", "var", "__pycache__", ".pytest_cache", "*.egg-info")


def walkthrough_commands(readme: str) -> list[str]:
    """The fenced sh blocks of the section, in order."""
    start = readme.index(f"## {SECTION}\n")
    end = readme.find("\n## ", start + 1)
    section = readme[start:end if end != -1 else None]
    return re.findall(r"```sh\n(.*?)```", section, flags=re.S)


def test_readme_section_has_the_steps():
    blocks = walkthrough_commands((REPO / "README.md").read_text(encoding="utf-8"))
    script = "\n".join(blocks)
    for step in ("pubdata new", "pubdata check", "tests/sql/test_cases.py", "pubdata run", "pubdata catalog"):
        assert step in script, f"the walkthrough lost its `{step}` step"


def test_walkthrough_runs_word_for_word(tmp_path, source_warehouse, airflow_home):
    project = tmp_path / "project"
    shutil.copytree(REPO, project, ignore=NOT_COPIED)
    (project / ".venv").symlink_to(REPO / ".venv")
    script = "\n".join(walkthrough_commands((project / "README.md").read_text(encoding="utf-8")))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PUBDATA_", "AIRFLOW", "VIRTUAL_ENV"))}
    env.update({
        "PUBDATA_PROJECT": str(project),  # an editable install would otherwise point at the original checkout
        "PUBDATA_WAREHOUSE": f"duckdb://{source_warehouse}",
        "PUBDATA_AIRFLOW_HOME": str(airflow_home),
        "COLUMNS": "200",
    })
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=project, env=env,
                          capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]

    new = "telemetry_public.active_hours_by_country_v1"
    assert f"Created {new}" in out
    assert "all 1 declaration(s) pass" in out
    assert re.search(r"\b1 passed\b", out), "the new dataset's SQL test case did not run"
    for task in ("stage", "validate", "export", "publish"):
        assert f"✓ {task} success" in out
    assert f"{new}: published" in out

    public = project / "var" / "public"
    meta = json.loads((public / "api/v1/tables/telemetry_public/active_hours_by_country/v1/metadata.json").read_text())
    assert meta["row_count"] > 0 and meta["validation"]["outcome"] == "passed"
    assert all(p["rows"] > 0 for p in meta["partitions"].values())
    catalog_page = (public / "index.html").read_text()
    assert 'id="telemetry_public.active_hours_by_country_v1"' in catalog_page
    assert "Active hours by country" in (public / "feed.xml").read_text()
    review = (project / "review.md").read_text()
    assert "active_hours_by_country_v1" in review and "https://bugzilla.mozilla.org/show_bug.cgi?id=1234567" in review
