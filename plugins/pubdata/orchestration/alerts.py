"""On-call alerts: one message per failed run (and per run that published with warnings).

Slack-compatible JSON to PUBDATA_ALERT_WEBHOOK_URL, and e-mail to the owners through Airflow's
[smtp] settings. Each alert says whether the data or the infrastructure failed (errors.classify,
the same answer the DAG factory used to decide on retries), and links to what on-call can open:
the Airflow task log and the validation report in the private run-state store. Delivery never
raises: an alert that cannot be sent is logged and recorded in the run record, and never turns a
published run into a failed one.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass, field
from html import escape
from typing import Any

from pubdata.config import Settings, settings
from pubdata.declarations import Declaration, load
from pubdata.errors import PubdataError, ValidationFailed, classify, find
from pubdata.ids import DatasetId
from pubdata.orchestration.records import FailureInfo, RunRecord, RunRecords
from pubdata.validation.redaction import redact_text, shown

log = logging.getLogger(__name__)
EMAIL_ENV = "PUBDATA_ALERT_EMAIL"
MAX_LISTED = 15
HEADINGS = {"failed": "Failing expectations", "error": "Expectations that could not be evaluated",
            "refused": "Failing expectations", "warning": "Warnings", "late": "Warnings"}  # the report has all

HEADLINES = {
    "failed": "data failed validation: not published, staged table quarantined",
    "refused": "data error: not published (not retried): fix the query, declaration or settings",
    "error": "infrastructure error: not published (retries exhausted; not a data failure)",
    "warning": "published with validation warnings",
    "late": "the run has not finished by its deadline (infrastructure or late source data): see the log",
}
KIND_OF_ERROR = {"failed": "data", "refused": "data", "error": "infrastructure", "late": "infrastructure"}
FAILURE_LINES = {
    "failed": "data error (not retried): the data broke a rule",
    "refused": "data error (not retried): fix the query, declaration or settings",
    "error": "infrastructure error (retried, then given up): not a data failure",
    "late": "infrastructure error or late source data: the run is still going or failed",
}


@dataclass
class Alert:
    kind: str  # failed | refused | error | warning | late
    dataset_id: str
    date: str
    run_id: str
    task_id: str | None = None
    owners: list[str] = field(default_factory=list)
    review_bugs: list[str] = field(default_factory=list)
    problems: list[dict[str, Any]] = field(default_factory=list)  # description, severity, observed, expected, error
    error: str | None = None
    report: str | None = None
    quarantine: str | None = None
    log_url: str | None = None

    @property
    def title(self) -> str:
        return f"pubdata {self.dataset_id} {self.date}: {HEADLINES[self.kind]}"

    @property
    def reproduce(self) -> str:
        return f"pubdata run {self.dataset_id} --date {self.date}"

    def lines(self) -> list[tuple[str, str]]:
        """(label, value) pairs every channel shows, in order."""
        out = [("Dataset", self.dataset_id), ("Date", self.date), ("Run", self.run_id)]
        if self.task_id:
            out.append(("Task", self.task_id))
        if self.kind in FAILURE_LINES:
            out.append(("Failure", FAILURE_LINES[self.kind]))
        if self.error:
            out.append(("Error", self.error))
        out += [("Owners", ", ".join(self.owners) or "-"), ("Review bug", ", ".join(self.review_bugs) or "-")]
        if self.quarantine:
            out.append(("Quarantine", self.quarantine))
        if self.report:
            out.append(("Report", self.report))
        if self.log_url:
            out.append(("Log", self.log_url))
        out.append(("Reproduce", self.reproduce))
        return out

    def problem_lines(self) -> list[str]:
        shown = [f"[{p['severity']}] {p['description']}: could not be evaluated: {p['error']}" if p.get("error") else
                 f"[{p['severity']}] {p['description']}: "
                 + (p["finding"] if p.get("finding") else f"observed {p['observed']}, expected {p['expected']}")
                 + (f"; failing cells: {p['cells']}" if p.get("cells") else "")
                 for p in self.problems[:MAX_LISTED]]
        if len(self.problems) > MAX_LISTED:
            shown.append(f"... and {len(self.problems) - MAX_LISTED} more (see the report)")
        return shown

    def text(self) -> str:
        body = [self.title, ""] + [f"{k}: {v}" for k, v in self.lines()]
        if self.problems:
            heading = HEADINGS[self.kind]
            body += ["", f"{heading}:"] + [f"  - {p}" for p in self.problem_lines()]
        return "\n".join(body)

    def slack_payload(self) -> dict[str, Any]:
        def md(s: str) -> str:  # Slack mrkdwn needs only these three escaped
            return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

        facts = "\n".join(f"*{k}:* {'`' + md(v) + '`' if k == 'Reproduce' else md(v)}" for k, v in self.lines())
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": self.title[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": facts[:3000]}},
        ]
        if self.problems:
            heading = HEADINGS[self.kind]
            listing = "\n".join(f"• {md(p)}" for p in self.problem_lines())
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*{heading}*\n{listing}"[:3000]}})
        return {"text": self.title, "blocks": blocks}

    def email_html(self) -> str:
        rows = "".join(f"<tr><th align=left>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in self.lines())
        items = "".join(f"<li>{escape(p)}</li>" for p in self.problem_lines())
        return f"<h3>{escape(self.title)}</h3><table>{rows}</table>" + (f"<ul>{items}</ul>" if items else "")


# -- building ----------------------------------------------------------------------------------


def from_record(decl: Declaration, record: RunRecord | None, *, kind: str, date: str, run_id: str,
                task_id: str | None = None, error: str | None = None, log_url: str | None = None) -> Alert:
    """An alert for one run of a declared dataset, from its run record."""
    report = (record.validation_report if record is not None else None) or {}
    statuses = ("warning",) if kind == "warning" else ("failed", "warning") if kind == "failed" else ("error",)
    problems = []
    for c in report.get("checks") or []:
        if c.get("status") in statuses:
            s = shown(c)
            problems.append({"description": c.get("description", c.get("expectation", "")),
                             "severity": c.get("severity", "fail"), "observed": s["observed"], "expected": s["expected"],
                             "finding": s["finding"], "cells": s["cells"],
                             "error": _first_line(redact_text(c["error"])) if c.get("error") else None})
    quarantine = None
    if kind == "failed" and record is not None and record.quarantine is not None:
        q = record.quarantine
        quarantine = f"{q.staged.get('location')} table {q.staged.get('table')} (kept until {q.expires})"
    return Alert(
        kind=kind, dataset_id=decl.id, date=date, run_id=run_id, task_id=task_id,
        owners=list(decl.spec.owners), review_bugs=[str(b) for b in decl.spec.review.bugs],
        problems=problems, error=_first_line(redact_text(error)) if error else None,
        report=record.report if record is not None else None, quarantine=quarantine, log_url=log_url,
    )


def _first_line(text: str, limit: int = 300) -> str:
    line = text.strip().splitlines()[0] if text.strip() else text
    return line if len(line) <= limit else line[: limit - 1] + "…"


# -- delivery ----------------------------------------------------------------------------------


def post_webhook(url: str, payload: dict[str, Any], *, timeout: float = 10.0, attempts: int = 3,
                 backoff: float = 1.0) -> None:
    """POST the JSON payload; retry connection errors, 429 and 5xx with exponential backoff."""
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    retry = Retry(total=attempts - 1, connect=attempts - 1, read=attempts - 1, status=attempts - 1,
                  backoff_factor=backoff, status_forcelist=(429, 500, 502, 503, 504),
                  allowed_methods=frozenset({"POST"}), raise_on_status=False)
    with requests.Session() as session:
        session.mount("http://", HTTPAdapter(max_retries=retry))
        session.mount("https://", HTTPAdapter(max_retries=retry))
        response = session.post(url, json=payload, timeout=timeout)
    if response.status_code >= 300:
        raise RuntimeError(f"webhook answered HTTP {response.status_code}: {response.text[:200]}")


def smtp_configured() -> bool:
    """Whether Airflow's [smtp] smtp_host is set (airflow.cfg or AIRFLOW__SMTP__SMTP_HOST), not just defaulted."""
    if os.environ.get("AIRFLOW__SMTP__SMTP_HOST"):
        return True
    try:
        from airflow.configuration import conf

        value = conf.as_dict(display_source=True, display_sensitive=False, include_env=True,
                             include_cmds=True, include_secret=False).get("smtp", {}).get("smtp_host")
    except Exception:  # no usable Airflow configuration: no e-mail
        return False
    return isinstance(value, tuple) and value[1] != "default"


def recipients(alert: Alert) -> list[str]:
    extra = [a.strip() for a in os.environ.get(EMAIL_ENV, "").split(",") if a.strip()]
    return list(dict.fromkeys(alert.owners + extra))


def send_email(alert: Alert) -> None:
    from airflow.utils.email import send_email as airflow_send_email

    airflow_send_email(recipients(alert), alert.title, alert.email_html())


def deliver(alert: Alert, cfg: Settings | None = None) -> dict[str, str]:
    """Send the alert on every configured channel; return what happened on each (never raises)."""
    cfg = cfg or settings()
    outcome = {"kind": alert.kind, "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    if cfg.alert_webhook_url:
        try:
            post_webhook(cfg.alert_webhook_url, alert.slack_payload())
            outcome["webhook"] = "sent"
        except Exception as exc:
            log.error("pubdata: could not post the alert for %s to the webhook: %s", alert.dataset_id, exc)
            outcome["webhook"] = f"failed: {type(exc).__name__}: {exc}"[:300]
    else:
        outcome["webhook"] = "not configured (PUBDATA_ALERT_WEBHOOK_URL)"
    if smtp_configured():
        try:
            send_email(alert)
            outcome["email"] = "sent to " + ", ".join(recipients(alert))
        except Exception as exc:
            log.error("pubdata: could not e-mail the alert for %s: %s", alert.dataset_id, exc)
            outcome["email"] = f"failed: {type(exc).__name__}: {exc}"[:300]
    else:
        outcome["email"] = "not configured ([smtp] smtp_host)"
    log.warning("pubdata alert: %s (%s)", alert.title, outcome)
    return outcome


def alert_run(cfg: Settings, decl: Declaration, partition: str | None, date: str, *, kind: str,
              task_id: str | None = None, error: str | None = None, log_url: str | None = None) -> dict[str, str]:
    """Build the alert of one run from its record, deliver it, and note the delivery in the record.

    An alert of this kind already delivered for this run (a retried task) is not sent again.
    """
    records = RunRecords.open(cfg)
    record = records.get(decl.id, partition)
    run_id = record.run_id if record else "manual"
    if record is not None and record.alert and record.alert.get("kind") == kind and record.alert.get("run_id") == run_id:
        return record.alert
    alert = from_record(decl, record, kind=kind, date=date, run_id=run_id,
                        task_id=task_id, error=error, log_url=log_url)
    outcome = {**deliver(alert, cfg), "run_id": run_id}
    records.update(decl.id, partition, alert=outcome)
    return outcome


# -- the Airflow callback ----------------------------------------------------------------------


def on_task_failure(dataset_id: str, date: str, context: dict[str, Any]) -> None:
    """Called by Airflow when a task of a dataset's DAG has failed for good (retries exhausted).

    The DAG is a chain, so the first task to fail is the only one: one alert per failed run.
    """
    cfg = settings()
    exc = context.get("exception")
    ti = context.get("ti") or context.get("task_instance")
    task_id = getattr(ti, "task_id", None)
    run_id = str(context.get("run_id") or "manual")
    try:
        decl = load(dataset_id, cfg.project)
    except Exception as load_exc:  # the declaration itself broke: alert with what we have
        alert = Alert("refused", dataset_id, date, run_id, task_id, error=f"{type(load_exc).__name__}: {load_exc}")
        deliver(alert, cfg)
        return
    partition = date if decl.spec.incremental else None
    records = RunRecords.open(cfg)
    record = records.get(decl.id, partition)
    if record is not None and record.run_id != run_id:
        record = None  # the record of another run: do not report its checks as this run's
    validation_failed = find(exc, ValidationFailed) is not None or (record is not None and record.state == "quarantined")
    if validation_failed:
        kind = "failed"
    else:
        kind = "refused" if classify(exc) == "data" else "error"
    has_report = record is not None and record.validation_report is not None
    error = None if validation_failed and has_report else own_words(exc)
    log_url = task_log_url(ti)
    alert = from_record(decl, record, kind=kind, date=date, run_id=run_id,
                        task_id=task_id, error=error, log_url=log_url)
    outcome = {**deliver(alert, cfg), "run_id": run_id}
    cause = error or own_words(exc)
    failure = FailureInfo(kind=KIND_OF_ERROR[kind], task=task_id, log_url=log_url, at=outcome["at"],
                          error=_first_line(redact_text(cause)) if cause else None)
    fields: dict[str, Any] = {"alert": outcome, "failure": failure, "finished_at": outcome["at"]}
    if not validation_failed:
        fields["state"] = "failed"
    if record is not None:
        records.update(decl.id, partition, **fields)
    else:  # failed before stage started this run's record (a source never arrived, a broken declaration)
        records.start(decl.id, partition, run_id)
        records.update(decl.id, partition, **fields)


def own_words(exc: BaseException | None) -> str | None:
    """The error as its own text: a pubdata error's message (it says what happened and what to do),
    not the exception Airflow wrapped it in; any other error with its class name."""
    if exc is None:
        return None
    own = find(exc, PubdataError)
    if own is not None and str(own).strip():
        return str(own)
    return f"{type(exc).__name__}: {exc}"


def task_log_url(ti: Any) -> str | None:
    """The Airflow UI's page of this task instance's log, when Airflow knows its base URL."""
    url = getattr(ti, "log_url", None)
    if url:
        return str(url)
    try:
        from airflow.configuration import conf

        base = conf.get("api", "base_url", fallback=None)
    except Exception:
        return None
    dag_id, run_id, task_id = (getattr(ti, k, None) for k in ("dag_id", "run_id", "task_id"))
    if not (base and dag_id and run_id and task_id):
        return None
    from urllib.parse import quote

    try_number = getattr(ti, "try_number", None)
    url = f"{base.rstrip('/')}/dags/{quote(dag_id)}/runs/{quote(run_id)}/tasks/{quote(task_id)}"
    return url + (f"?try_number={try_number}" if try_number else "")


def deadline_missed(context: dict[str, Any], *, dataset_id: str, deadline: str = "") -> None:
    """A run is not done by its deadline (called through orchestration.deadlines.on_deadline)."""
    cfg = settings()
    run = context.get("dag_run") or {}
    run_id = str(run.get("dag_run_id") or run.get("run_id") or "unknown run")
    conf = run.get("conf") or {}
    date = str(conf.get("submission_date") or (run.get("logical_date") or "")[:10] or "unknown date")
    try:
        decl = load(dataset_id, cfg.project)
        owners, bugs = list(decl.spec.owners), [str(b) for b in decl.spec.review.bugs]
    except Exception:
        owners, bugs = [], []
    when = (context.get("deadline") or {}).get("deadline_time") or deadline
    base = None
    try:
        from airflow.configuration import conf as airflow_conf

        base = airflow_conf.get("api", "base_url", fallback=None)
    except Exception:
        pass
    log_url = f"{base.rstrip('/')}/dags/{DatasetId.parse(dataset_id).dag_id}/runs/{run_id}" if base else None
    deliver(Alert("late", dataset_id, date, run_id, owners=owners, review_bugs=bugs, log_url=log_url,
                  error=f"not finished by its deadline {when}".strip()), cfg)
