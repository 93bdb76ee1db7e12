"""The validation report of each run: one self-contained HTML page, kept internal.

Never written to the public bucket: it shows what failed and why, on data that did not pass. It
goes to the run-state store (reports/<dataset>/<partition>/<run>.html), which every worker and
on-call reach; alerts and `pubdata status` link to it.
Rendered from templates/report.html.j2 (autoescaped) rather than GX Data Docs, which need a
file-backed GX context; the page needs nothing but a browser. Values go through redaction.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from pubdata.declarations import Declaration
from pubdata.rendering import html_templates
from pubdata.stores.base import Store
from pubdata.validation.redaction import redact_text, shown


def report_key(dataset_id: str, partition: str | None, run_id: str) -> str:
    safe_run = re.sub(r"[^A-Za-z0-9_.-]", "_", run_id)
    return f"reports/{dataset_id}/{partition or 'full'}/{safe_run}.html"


_ORDER = {"error": 0, "failed": 1, "warning": 2, "passed": 3}


def render(decl: Declaration, report: dict[str, Any], run_id: str, quarantine: str | None = None) -> str:
    """The page for one ValidationReport (as its to_dict()); problems first."""
    checks = []
    for c in sorted(report["checks"], key=lambda c: _ORDER.get(c.get("status", "passed"), 4)):
        checks.append({**c, **shown(c), "error": redact_text(c["error"]) if c.get("error") else None})
    counts = {k: sum(1 for c in checks if c.get("status") == k) for k in _ORDER}
    date = report.get("partition") or (report.get("started_at") or "")[:10]
    return html_templates().get_template("report.html.j2").render(
        dataset=decl.id, partition=report.get("partition") or "full table", outcome=report["outcome"],
        run_id=run_id, started_at=report.get("started_at"), seconds=report.get("seconds"),
        rows=report.get("row_count") if report.get("row_count") is not None else "-", counts=counts,
        owners=decl.spec.owners, bugs=[str(b) for b in decl.spec.review.bugs],
        reproduce=f"pubdata run {decl.id} --date {date}", quarantine=quarantine, checks=checks,
        generated_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )


def write(store: Store, decl: Declaration, report: dict[str, Any], run_id: str, quarantine: str | None = None) -> str:
    """Render the report into the (private) run-state store; return the link on-call opens."""
    key = report_key(decl.id, report.get("partition"), run_id)
    store.write(key, render(decl, report, run_id, quarantine).encode("utf-8"), content_type="text/html; charset=utf-8")
    return store.link(key)
