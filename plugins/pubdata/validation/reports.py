"""The validation report of each run: one self-contained HTML page, kept internal.

Never written to the public bucket: it shows what failed and why, on data that did not pass.
Rendered from templates/report.html.j2 (autoescaped) rather than GX Data Docs, which need a
file-backed GX context; the page needs nothing but a browser. Values go through redaction.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

from pubdata.config import Settings
from pubdata.declarations import Declaration
from pubdata.rendering import html_templates
from pubdata.validation.redaction import redact_text, shown


def report_path(internal_dir: Path, dataset_id: str, partition: str | None, run_id: str) -> Path:
    safe_run = re.sub(r"[^A-Za-z0-9_.-]", "_", run_id)
    return Path(internal_dir) / "reports" / dataset_id / (partition or "full") / f"{safe_run}.html"



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


def _local_bucket_root(bucket_url: str) -> Path | None:
    return Path(bucket_url[len("file://"):]).resolve() if bucket_url.startswith("file://") else None


def write(cfg: Settings, decl: Declaration, report: dict[str, Any], run_id: str, quarantine: str | None = None) -> Path:
    """Render and store the report internally; refuse a location inside a local public bucket."""
    path = report_path(cfg.internal_dir, decl.id, report.get("partition"), run_id)
    bucket = _local_bucket_root(cfg.bucket_url)
    if bucket is not None and (bucket == path.resolve() or bucket in path.resolve().parents):
        raise ValueError(f"validation reports would land in the public bucket {bucket}: point PUBDATA_BUCKET "
                         f"outside {cfg.internal_dir}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(render(decl, report, run_id, quarantine), encoding="utf-8")
    tmp.replace(path)
    return path
