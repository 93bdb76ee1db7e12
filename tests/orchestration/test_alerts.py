"""On-call alerts: the payload says what failed and why without leaking identifiers; delivery goes
to a real HTTP server (and a real SMTP server) on loopback; a data failure, an infrastructure
error and a warning are told apart; and a real Airflow run that fails posts exactly one message."""

from __future__ import annotations

import json
import socket
import socketserver
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from pubdata.config import settings
from pubdata.declarations import load_all
from pubdata.errors import ValidationError, ValidationFailed
from pubdata.orchestration import alerts, records, tasks
from tests.support.project import EXAMPLE, GOOD_ROWS, add_miscounted_example, copy_project, local_path, pubdata_cli

UUID = "123e4567-e89b-12d3-a456-426614174000"
EMAIL = "leaked.person@example.net"
DAY = "2026-11-01"
EXPECTATIONS = "expectations/telemetry_public/page_loads_by_country_v1.yaml"
REAL_SMTP_CONFIGURED = alerts.smtp_configured


class Webhook:
    """A Slack-like receiver on 127.0.0.1 that records every POST and answers queued statuses."""

    def __init__(self):
        self.requests: list[dict] = []
        self.statuses: list[int] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook.requests.append({"path": self.path, "content_type": self.headers.get("Content-Type"),
                                      "json": json.loads(body)})
                status = hook.statuses.pop(0) if hook.statuses else 200
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/oncall"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def webhook(monkeypatch):
    hook = Webhook()
    monkeypatch.setenv("PUBDATA_ALERT_WEBHOOK_URL", hook.url)
    yield hook
    hook.close()


@pytest.fixture(autouse=True)
def _no_smtp(monkeypatch, airflow_home):
    monkeypatch.setenv("AIRFLOW_HOME", str(airflow_home))
    monkeypatch.setattr(alerts, "smtp_configured", lambda: False)


def _run_validate(stage_sql, sql: str, run_id: str = "manual__2026-11-01"):
    """Stage rows as the example's 2026-11-01 partition and run the validate task on them."""
    cfg = settings()
    wh, staged = stage_sql(sql)
    records.RunRecords.open(cfg).start(EXAMPLE, DAY, run_id)
    records.RunRecords.open(cfg).update(EXAMPLE, DAY, state="staged", staged=staged.to_dict(), rows=3)
    return staged


def _context(exc: BaseException, run_id: str = "manual__2026-11-01") -> dict:
    return {"exception": exc, "run_id": run_id, "params": {"submission_date": DAY},
            "ti": SimpleNamespace(task_id="validate", log_url="http://airflow.local/log")}


def _fail_validate(staged) -> BaseException:
    """What the Airflow task raises: AirflowFailException from ValidationFailed."""
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(ValidationFailed) as info:
        tasks.validate(EXAMPLE, staged.to_dict())
    try:
        raise AirflowFailException(str(info.value)) from info.value
    except AirflowFailException as exc:
        return exc


# -- payload -----------------------------------------------------------------------------------


def test_data_failure_payload_says_what_failed_and_redacts_identifiers(project, decl, stage_sql, webhook):
    from pubdata.orchestration.dag_factory import _alert_on_failure

    bad = (f"SELECT *, '{UUID}' AS client_id FROM ({GOOD_ROWS.replace('90000, 5000', '90000, 4999')}) "
           f"UNION ALL SELECT DATE '2026-11-01', 'FR', 'Linux', '{EMAIL}', 'beta', 70000, 9000, '{UUID}'")
    staged = _run_validate(stage_sql, bad)
    _alert_on_failure(EXAMPLE, _context(_fail_validate(staged)))

    assert len(webhook.requests) == 1
    req = webhook.requests[0]
    assert req["path"] == "/hooks/oncall" and req["content_type"] == "application/json"
    payload = req["json"]
    assert set(payload) == {"text", "blocks"} and payload["blocks"][0]["type"] == "header"
    body = json.dumps(payload)
    assert UUID not in body and EMAIL not in body and "leaked.person" not in body
    text = "\n".join(b["text"]["text"] for b in payload["blocks"])
    assert "data failed validation" in payload["text"] and EXAMPLE in payload["text"] and DAY in payload["text"]
    for fact in ("manual__2026-11-01", "data-eng@example.org", "https://bugzilla.mozilla.org/show_bug.cgi?id=1414839",
                 f"`pubdata run {EXAMPLE} --date {DAY}`", "*Task:* validate", "http://airflow.local/log"):
        assert fact in text, fact
    # in words, with the failing cell by its dimension values (an aggregate, not an identifier)
    assert ("every row, Other rows included, has client_count &gt;= 5000: 1 row below 5,000; failing cells: "
            "submission_date=2026-11-01 country=DE os=Windows_NT locale=de normalized_channel=release client_count=4999") in text
    assert "no forbidden column (identifiers, IP addresses, raw URLs, ...): observed columns: client_id" in text
    assert "no value of locale looks like an identifier" in text and "observed 1 row(s), expected no rows" in text
    rec = records.RunRecords.open(settings()).get(EXAMPLE, DAY)
    assert f"Report:* {rec.report}" in text and "Quarantine:*" in text
    assert rec.alert["webhook"] == "sent" and rec.alert["kind"] == "failed"


def test_non_sensitive_samples_are_redacted_when_they_look_like_identifiers(project, stage_sql):
    from pubdata.validation.redaction import shown

    check = {"expectation": "ExpectColumnValuesToBeInSet", "observed": 2, "expected": {"value_set": ["a"]},
             "unexpected_sample": [EMAIL, "de"], "sensitive": False, "success": False}
    assert shown(check)["sample"] == '["[redacted]", "de"]'
    forbidden = {"expectation": "ExpectTableColumnsToExcludeForbidden", "observed": {"client_id": "a client id"},
                 "unexpected_sample": [UUID], "sensitive": True, "success": False}
    assert shown(forbidden) == {"observed": "columns: client_id", "expected": "-", "sample": "[redacted] (values withheld)",
                                "finding": "", "cells": ""}
    # failing cells: dimension values are shown, any that looks like an identifier is still withheld
    cells = {**check, "finding": "2 rows with no os", "cells": [{"country": "DE", "locale": EMAIL}, {"country": "US", "locale": "en"}]}
    assert shown(cells)["cells"] == "country=DE locale=[redacted]; country=US locale=en"
    assert shown({**cells, "sensitive": True})["cells"] == "" and shown({**cells, "sensitive": True})["finding"] == ""


def test_alert_lists_at_most_a_screenful(decl):
    problems = [{"description": f"check {i}", "severity": "fail", "observed": "1", "expected": "0"} for i in range(40)]
    alert = alerts.Alert("failed", EXAMPLE, DAY, "r", problems=problems, owners=["a@example.org"])
    listing = alert.slack_payload()["blocks"][-1]["text"]["text"]
    assert "check 14" in listing and "check 15" not in listing and "and 25 more" in listing
    assert all(len(b["text"]["text"]) <= 3000 for b in alert.slack_payload()["blocks"])


# -- delivery ----------------------------------------------------------------------------------


def test_webhook_is_retried_on_server_errors(webhook):
    webhook.statuses = [503, 200]
    alerts.post_webhook(webhook.url, {"text": "hello"}, backoff=0.1)
    assert [r["json"] for r in webhook.requests] == [{"text": "hello"}, {"text": "hello"}]


def test_undeliverable_alert_is_recorded_not_raised(project, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    monkeypatch.setenv("PUBDATA_ALERT_WEBHOOK_URL", f"http://127.0.0.1:{closed}/x")
    d = load_all(project).declarations[EXAMPLE]
    outcome = alerts.deliver(alerts.from_record(d, None, kind="error", date=DAY, run_id="r", error="boom"))
    assert outcome["webhook"].startswith("failed: ConnectionError")
    assert outcome["email"].startswith("not configured")


class _SMTPSink(socketserver.ThreadingTCPServer):
    """Just enough SMTP on 127.0.0.1 to receive one message (no TLS, no auth)."""

    allow_reuse_address = True

    def __init__(self):
        self.messages: list[dict] = []
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                def say(line: str):
                    self.wfile.write((line + "\r\n").encode())

                say("220 localhost ESMTP sink")
                data, lines, rcpt = False, [], []
                for raw in self.rfile:
                    line = raw.decode("utf-8", "replace").rstrip("\r\n")
                    if data:
                        if line == ".":
                            sink.messages.append({"to": rcpt, "data": "\n".join(lines)})
                            data, lines = False, []
                            say("250 queued")
                        else:
                            lines.append(line[1:] if line.startswith("..") else line)
                        continue
                    verb = line[:4].upper()
                    if verb == "EHLO":
                        say("250-localhost")
                        say("250 8BITMIME")
                    elif verb == "RCPT":
                        rcpt.append(line.split(":", 1)[1].strip(" <>"))
                        say("250 ok")
                    elif verb == "DATA":
                        data = True
                        say("354 go ahead")
                    elif verb == "QUIT":
                        say("221 bye")
                        return
                    else:
                        say("250 ok")

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


def test_email_goes_through_airflows_smtp_settings(project, monkeypatch):
    sink = _SMTPSink()
    try:
        monkeypatch.setattr(alerts, "smtp_configured", REAL_SMTP_CONFIGURED)
        for key, value in {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(sink.server_address[1]),
                           "SMTP_STARTTLS": "False", "SMTP_SSL": "False", "SMTP_MAIL_FROM": "pubdata@example.org",
                           "SMTP_RETRY_LIMIT": "0"}.items():
            monkeypatch.setenv(f"AIRFLOW__SMTP__{key}", value)
        monkeypatch.setenv("PUBDATA_ALERT_EMAIL", "oncall@example.org")
        assert alerts.smtp_configured()
        d = load_all(project).declarations[EXAMPLE]
        alert = alerts.from_record(d, None, kind="error", date=DAY, run_id="r", error="warehouse unavailable")
        outcome = alerts.deliver(alert, settings())
        assert outcome["email"] == "sent to data-eng@example.org, oncall@example.org", outcome
        [msg] = sink.messages
        assert msg["to"] == ["data-eng@example.org", "oncall@example.org"]
        assert "infrastructure error" in msg["data"] and EXAMPLE in msg["data"]
    finally:
        sink.shutdown()
        sink.server_close()


# -- kinds of failure --------------------------------------------------------------------------


def test_gx_exception_alerts_as_an_error_never_as_a_data_failure(project, stage_sql, webhook):
    from pubdata.orchestration.dag_factory import _alert_on_failure

    (project / EXPECTATIONS).parent.mkdir(parents=True, exist_ok=True)
    (project / EXPECTATIONS).write_text("expectations:\n  - sql: SELECT * FROM {batch} WHERE no_such_function(page_loads) > 0\n"
                                        "    description: a check GX cannot evaluate\n")
    staged = _run_validate(stage_sql, GOOD_ROWS)
    with pytest.raises(ValidationError) as info:
        tasks.validate(EXAMPLE, staged.to_dict())
    rec = records.RunRecords.open(settings()).get(EXAMPLE, DAY)
    assert rec.state == "validation_error" and rec.validation.outcome == "error"
    assert "quarantine" not in rec
    _alert_on_failure(EXAMPLE, _context(info.value))
    [req] = webhook.requests
    assert "infrastructure error" in req["json"]["text"] and "data failed" not in req["json"]["text"]
    text = json.dumps(req["json"])
    assert "could not be evaluated" in text and "a check GX cannot evaluate" in text


def test_warn_failure_publishes_and_alerts(project, stage_sql, webhook):
    (project / EXPECTATIONS).parent.mkdir(parents=True, exist_ok=True)
    (project / EXPECTATIONS).write_text(textwrap.dedent("""\
        expectations:
          - sql: SELECT * FROM {batch} WHERE page_loads > 100000
            severity: warn
            description: page loads look high
    """))
    staged = _run_validate(stage_sql, GOOD_ROWS)
    summary = tasks.validate(EXAMPLE, staged.to_dict())
    assert summary["outcome"] == "passed" and [w["description"] for w in summary["warnings"]] == ["page loads look high"]
    [req] = webhook.requests
    assert "published with validation warnings" in req["json"]["text"]
    assert "[warn] page loads look high: the expectation's query found 2 rows breaking it" in json.dumps(req["json"])
    assert records.RunRecords.open(settings()).get(EXAMPLE, DAY).alert["kind"] == "warning"


def test_infrastructure_error_before_validation_alerts_with_the_exception(project, webhook):
    from pubdata.orchestration.dag_factory import _alert_on_failure

    records.RunRecords.open(settings()).start(EXAMPLE, DAY, "manual__2026-11-01")
    _alert_on_failure(EXAMPLE, _context(ConnectionError("warehouse unavailable from 10.2.3.4")))
    [req] = webhook.requests
    text = json.dumps(req["json"])
    assert "infrastructure error" in req["json"]["text"]
    assert "ConnectionError: warehouse unavailable from [redacted]" in text and "10.2.3.4" not in text


# -- through real Airflow ----------------------------------------------------------------------


@pytest.mark.airflow
def test_failed_airflow_run_posts_one_alert(tmp_path, source_warehouse, airflow_home, webhook):
    proj = copy_project(tmp_path / "project")
    add_miscounted_example(proj)  # client_count disagrees with the warehouse's count
    home = tmp_path / "home"
    env = {"PUBDATA_PROJECT": str(proj), "PUBDATA_HOME": str(home), "PUBDATA_WAREHOUSE": f"duckdb://{source_warehouse}",
           "PUBDATA_BUCKET": f"file://{home / 'public'}", "PUBDATA_AIRFLOW_HOME": str(airflow_home),
           "PUBDATA_ALERT_WEBHOOK_URL": webhook.url}
    dataset = "telemetry_public.page_loads_miscounted_v1"
    proc = pubdata_cli("run", dataset, "--date", DAY, env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr

    assert len(webhook.requests) == 1, [r["json"]["text"] for r in webhook.requests]
    payload = webhook.requests[0]["json"]
    assert payload["text"] == f"pubdata {dataset} {DAY}: data failed validation: not published, staged table quarantined"
    text = json.dumps(payload)
    assert "client_count equals the row" in text and "distinct clients as the warehouse counts them" in text
    assert f"pubdata run {dataset} --date {DAY}" in text and "manual__" in text

    record = json.loads((home / "private/state/runs" / dataset / f"{DAY}.json").read_text())
    assert record["alert"]["webhook"] == "sent" and record["state"] == "quarantined"
    assert record["failure"]["kind"] == "data" and record["failure"]["task"] == "validate"
    report = local_path(record["report"])
    assert report.is_file() and (home / "private/state/reports") in report.parents
    assert not (home / "public").exists() or not [p for p in (home / "public").rglob("*") if p.is_file()]

    status = pubdata_cli("status", "--json", env=env)
    assert status.returncode == 0, status.stderr
    [row] = [r for r in json.loads(status.stdout) if r["dataset"] == dataset]
    assert row["outcome"].startswith("failed validation (quarantined until ")
    assert local_path(row["report"]) == report and row["alert"] == "sent" and row["error_kind"] == "data"
    assert any(f.startswith("client_count equals the row") for f in row["failing"])


def test_the_run_summary_withholds_identifier_looking_values():
    """The summary feeds the run record and, for warnings, the public metadata.json."""
    from pubdata.orchestration import tasks
    from pubdata.validation.report import CheckResult

    warning = CheckResult("ExpectColumnValuesToBeInSet", "os in the known set", "warn", True,
                          observed={"unexpected": ["Linux", "7c9e6679-7425-40de-944b-e07fc1f90ae7"], "count": 2})
    forbidden = CheckResult("ExpectTableColumnsToExcludeForbidden", "no forbidden column", "fail", False,
                            observed={"client_id": "identifier"}, sensitive=True)

    assert tasks._check(warning).observed == {"unexpected": ["Linux", "[redacted]"], "count": 2}
    assert tasks._check(forbidden).observed == "columns: client_id"


def test_a_missed_deadline_alerts_on_call(project, webhook):
    """What Airflow's triggerer calls when a run is not done by its deadline (DeadlineAlert, AsyncCallback)."""
    import asyncio

    context = {"dag_run": {"dag_run_id": "scheduled__2026-11-01T05:00:00+00:00", "conf": {},
                           "logical_date": "2026-11-01T05:00:00+00:00"},
               "deadline": {"id": "d1", "deadline_time": "2026-11-02T17:00:00+00:00"}}
    from pubdata.orchestration import deadlines

    asyncio.run(deadlines.on_deadline(context=context, dataset_id=EXAMPLE))

    [req] = webhook.requests
    text = json.dumps(req["json"])
    assert f"pubdata {EXAMPLE} 2026-11-01: the run has not finished by its deadline" in req["json"]["text"]
    assert "not finished by its deadline 2026-11-02T17:00:00+00:00" in text
    assert "scheduled__2026-11-01T05:00:00+00:00" in text and "data-eng@example.org" in text


def test_status_says_which_kind_of_error_failed_a_run_and_links_the_log(project, webhook):
    from pubdata.errors import QueryError
    from pubdata.orchestration.dag_factory import _alert_on_failure

    records.RunRecords.open(settings()).start(EXAMPLE, DAY, "manual__2026-11-01")
    context = _context(ConnectionError("warehouse unavailable"))
    _alert_on_failure(EXAMPLE, {**context, "ti": SimpleNamespace(task_id="stage", log_url="http://airflow.local/log/1")})
    rows = {r["dataset"]: r for r in json.loads(pubdata_cli("status", "--json").stdout)}
    row = rows[EXAMPLE]
    assert row["error_kind"] == "infrastructure" and row["state"] == "failed" and row["log"] == "http://airflow.local/log/1"
    assert row["outcome"] == "failed in stage" and row["cause"] == "ConnectionError: warehouse unavailable"
    assert "*Failure:* infrastructure error (retried, then given up)" in json.dumps(webhook.requests[0]["json"])

    records.RunRecords.open(settings()).start(EXAMPLE, DAY, "manual__2026-11-01b")
    _alert_on_failure(EXAMPLE, _context(QueryError("Unrecognized name: contry"), run_id="manual__2026-11-01b"))
    row = {r["dataset"]: r for r in json.loads(pubdata_cli("status", "--json").stdout)}[EXAMPLE]
    assert row["error_kind"] == "data" and row["outcome"] == "failed in validate"
    assert row["cause"] == "Unrecognized name: contry"  # the error's own text, not the class Airflow wrapped it in
    assert "*Failure:* data error (not retried)" in json.dumps(webhook.requests[1]["json"])
