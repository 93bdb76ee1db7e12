"""The validation report of each run: an internal HTML page that shows every check, escapes what
it shows, never lands in the public bucket, and is what `pubdata status` links to."""

from __future__ import annotations

import datetime as dt
import json
import textwrap
from pathlib import Path

import pytest

from pubdata.config import settings
from pubdata.declarations import load_all
from pubdata.errors import ConfigurationError, ValidationFailed
from pubdata.orchestration import records, tasks
from tests.support.project import EXAMPLE, GOOD_ROWS, local_path, pubdata_cli

DAY = "2026-11-01"
SCRIPT = "<script>alert(1)</script>"


@pytest.fixture(autouse=True)
def _quiet_alerts(monkeypatch):
    from pubdata.orchestration import alerts

    monkeypatch.setattr(alerts, "smtp_configured", lambda: False)


def _bucket_files(cfg) -> list[Path]:
    root = Path(cfg.bucket_url[len("file://"):])
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_failed_run_report_shows_every_check_escaped_and_stays_internal(project, stage_sql):
    cfg = settings()
    path = project / "expectations/telemetry_public/page_loads_by_country_v1.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent("""\
        expectations:
          - expectation: expect_column_values_to_be_in_set
            kwargs: {column: locale, value_set: [en-US, de, Other]}
            description: locale is a known locale
    """))
    wh, staged = stage_sql(GOOD_ROWS.replace("'de', 'release', 90000, 5000", f"'{SCRIPT}', 'release', 90000, 4000"))
    records.RunRecords.open(cfg).start(EXAMPLE, DAY, "scheduled__2026-11-01T05:00:00+00:00")
    with pytest.raises(ValidationFailed):
        tasks.validate(EXAMPLE, staged.to_dict())

    rec = records.RunRecords.open(cfg).get(EXAMPLE, DAY)
    report = local_path(rec.report)  # in the private run-state store, beside the public bucket
    assert report == cfg.home / "private" / "state" / "reports" / EXAMPLE / DAY / "scheduled__2026-11-01T05_00_00_00_00.html"
    html = report.read_text()
    assert SCRIPT not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # the run, the warehouse's count, the bucket column and the locale check
    assert html.count('<span class="badge failed">failed</span>') == 4
    assert html.index("locale is a known locale") < html.index("the query returns at least one row")  # problems first
    assert len(rec.validation_report["checks"]) == html.count("<tr><td>")
    assert "Quarantine" in html and staged.location in html
    assert f"pubdata run {EXAMPLE} --date {DAY}" in html and "data-eng@example.org" in html
    assert _bucket_files(cfg) == []


def test_published_run_keeps_its_report_out_of_the_bucket(project):
    cfg = settings()
    run = "manual__2026-11-01"
    staged = tasks.stage(EXAMPLE, dt.date(2026, 11, 1), run)
    validation = tasks.validate(EXAMPLE, staged, run)
    tasks.publish(EXAMPLE, staged, validation, tasks.export(EXAMPLE, staged, validation, run), run)
    rec = records.RunRecords.open(cfg).get(EXAMPLE, DAY)
    assert rec.state == "published"
    report = local_path(rec.report)
    assert report.is_file() and '<span class="badge passed">passed</span>' in report.read_text()
    published = _bucket_files(cfg)
    assert published and not [p for p in published if "reports" in p.parts or p.name == report.name]
    assert not [p for p in published if "Validation report · internal" in p.read_text(errors="ignore")]
    # the next day's row-count band reads this publication back from the public metadata.json
    from pubdata.stores import open_store
    from pubdata.validation.expectations.row_count_band import previous_published

    d = load_all(project).declarations[EXAMPLE]
    assert previous_published(open_store(cfg.bucket_url), d, "2026-11-02") == (f"partition {DAY}", rec.rows)
    assert previous_published(open_store(cfg.bucket_url), d, DAY) is None


def test_reports_and_staging_refuse_a_location_the_public_can_read(project, monkeypatch):
    cfg = settings()
    monkeypatch.setenv("PUBDATA_BUCKET", f"file://{cfg.home / 'private'}")  # the private directories inside it
    with pytest.raises(ConfigurationError, match="PUBDATA_STATE_URL=.* is readable through the public bucket"):
        records.RunRecords.open(settings())
    with pytest.raises(ConfigurationError, match="PUBDATA_STAGING_BUCKET=.* is readable through the public bucket"):
        tasks.staging_store(settings())
    monkeypatch.setenv("PUBDATA_BUCKET", "gs://public-bucket")
    monkeypatch.setenv("PUBDATA_STATE_URL", "gs://public-bucket/state")  # any prefix of a public-read bucket is public
    with pytest.raises(ConfigurationError, match="readable through the public bucket"):
        records.RunRecords.open(settings())


def test_status_lists_outcome_rows_failures_and_report(project, stage_sql):
    cfg = settings()
    wh, staged = stage_sql(GOOD_ROWS.replace("90000, 5000", "90000, 10"))
    records.RunRecords.open(cfg).start(EXAMPLE, DAY, "manual__2026-11-01")
    records.RunRecords.open(cfg).update(EXAMPLE, DAY, state="staged", staged=staged.to_dict(), rows=3)
    with pytest.raises(ValidationFailed):
        tasks.validate(EXAMPLE, staged.to_dict())

    proc = pubdata_cli("status", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["dataset"]: r for r in json.loads(proc.stdout)}
    row = rows[EXAMPLE]
    assert row["outcome"].startswith("failed validation (quarantined until ")
    assert row["rows"] == 3 and row["partition"] == DAY and row["when"]
    cell = "submission_date=2026-11-01 country=DE os=Windows_NT locale=de normalized_channel=release"
    assert row["failing"] == [
        "every row stands for at least 5,000 distinct clients, counted by the warehouse: 1 row under 5,000 distinct "
        f"clients; failing cells: {cell} distinct clients (warehouse)=10",
        f"every row, Other rows included, has client_count >= 5000: 1 row below 5,000; failing cells: {cell} client_count=10"]
    assert local_path(row["report"]).is_file() and row["error_kind"] == "data"
    others = [r for d, r in rows.items() if d != EXAMPLE]
    assert all(r["outcome"] == ("refused on purpose" if r["dataset"].endswith("city_active_hours_v1") else "never run")
               for r in others)

    table = pubdata_cli("status")
    assert table.returncode == 0
    flat = "".join(table.stdout.split())
    assert "failedvalidation" in flat and "everyrow,Otherrowsincluded" in flat and "manual__2026-11-01.html" in flat
