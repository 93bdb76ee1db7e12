"""The validation report of each run: one self-contained HTML page, kept internal.

PUBDATA_HOME/internal/reports/<dataset>/<partition>/<run>.html, never the public bucket: it shows
what failed and why, on data that did not pass. Rendered from templates/report.html.j2 (autoescaped,
so a value in the data cannot inject markup) rather than GX Data Docs, which need a file-backed GX
context; the page needs nothing but a browser.

`shown(check)` is the one place that decides what of a check's observed values may leave the
warehouse; alerts use it too. Checks that can expose identifiers (forbidden columns, the
identifier scan) show counts and column names only; any other value that looks like an
identifier is redacted.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

from pubdata.config import Settings
from pubdata.declaration import Declaration
from pubdata.validation_checks import WITHHELD, looks_like_identifier



def report_path(internal_dir: Path, dataset_id: str, partition: str | None, run_id: str) -> Path:
    safe_run = re.sub(r"[^A-Za-z0-9_.-]", "_", run_id)
    return Path(internal_dir) / "reports" / dataset_id / (partition or "full") / f"{safe_run}.html"


def redacted(value: Any) -> Any:
    """value (nested dicts and lists included) with every identifier-looking value withheld.

    Uses the identifier scan's own patterns, so what the warehouse flags is what is hidden here.
    """
    if isinstance(value, dict):
        return {k: redacted(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redacted(v) for v in value]
    return WITHHELD if looks_like_identifier(value) else value


def _text(value: Any, limit: int = 300) -> str:
    if value is None:
        return "-"
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shown(check: dict[str, Any]) -> dict[str, str]:
    """observed / expected / sample of a check, as text fit to leave the warehouse."""
    observed, sample = check.get("observed"), check.get("unexpected_sample") or []
    if check.get("sensitive"):
        if isinstance(observed, dict):  # forbidden columns: {column: reason}; names are not values
            observed = "columns: " + ", ".join(str(k) for k in observed)
        elif not isinstance(observed, int) or isinstance(observed, bool):
            observed = WITHHELD
        sample_text = f"{WITHHELD} (values withheld)" if sample or not check.get("success", True) else "-"
    else:
        observed = redacted(observed)
        sample_text = _text(redacted(sample)) if sample else "-"
    expected = check.get("expected")
    if isinstance(expected, dict) and set(expected) == {"unexpected_rows_query"}:
        expected = "no rows"  # an SQL expectation: the query lists the violations
    if isinstance(observed, int) and not isinstance(observed, bool) and check.get("expectation") == "UnexpectedRowsExpectation":
        observed = f"{observed} row(s)"
    return {"observed": _text(observed), "expected": _text(expected), "sample": sample_text}


_ORDER = {"error": 0, "failed": 1, "warning": 2, "passed": 3}


def render(decl: Declaration, report: dict[str, Any], run_id: str, quarantine: str | None = None) -> str:
    """The page for one ValidationReport (as its to_dict()); problems first."""
    from pubdata.rendering import html_templates
    from pubdata.validation_checks import redact_text

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
        generated_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
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
