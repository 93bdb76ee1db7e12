"""docs/deploy.md's rule files are what GCS accepts (built here with the client's own typed helpers)
and say what the guide says: leftovers of staging expire, run state does not, browsers may only read."""

from __future__ import annotations

import json

from tests.support.project import REPO

DEPLOY = REPO / "docs" / "deploy"


def test_the_lifecycle_rule_expires_staging_and_old_reports_but_never_run_state():
    from google.cloud.storage.bucket import LifecycleRuleDelete

    rules = json.loads((DEPLOY / "lifecycle.json").read_text())["rule"]
    assert rules == [dict(LifecycleRuleDelete(age=7, matches_prefix=["staging/"])),
                     dict(LifecycleRuleDelete(age=400, matches_prefix=["state/reports/"]))]
    prefixes = [p for r in rules for p in r["condition"]["matchesPrefix"]]
    assert not any(p.startswith(("state/runs", "state/quarantine")) or p == "state/" for p in prefixes)
    guide = (REPO / "docs" / "deploy.md").read_text()
    assert "gs://<private-bucket>/staging" in guide and "gs://<private-bucket>/state" in guide


def test_cors_lets_browsers_read_and_nothing_else():
    [rule] = json.loads((DEPLOY / "cors.json").read_text())
    assert rule["origin"] == ["*"] and sorted(rule["method"]) == ["GET", "HEAD"]
    assert {"Content-Type", "Content-Encoding"} <= set(rule["responseHeader"])
