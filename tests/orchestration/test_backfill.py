"""`pubdata backfill ID --start --end`: days run oldest first through Airflow; days already published
by the current query are skipped, so the same command resumes after a failure."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from pubdata.config import Settings
from pubdata.orchestration import backfill, records
from pubdata.stores.local import LocalStore
from tests.support.harness import Harness
from tests.support.project import pubdata_cli

EXAMPLE = "telemetry_public.page_loads_by_country_v1"


def _settings(tmp_path: Path) -> Settings:
    return Settings(project=tmp_path / "project", home=tmp_path / "home", warehouse_url="duckdb:///unused",
                    bucket_url=f"file://{tmp_path / 'public'}", public_base_url="http://localhost:8000/",
                    alert_webhook_url=None)


def test_plan_skips_days_published_by_the_current_query(tmp_path):
    cfg = _settings(tmp_path)
    decl = Harness(tmp_path, LocalStore(tmp_path / "public")).declare("ds.daily_v1")
    day = dt.date(2026, 11, 1)
    records.RunRecords.open(cfg).update(decl.id, "2026-11-01", state="published", query_sha256=decl.query_sha256)
    records.RunRecords.open(cfg).update(decl.id, "2026-11-02", state="published", query_sha256="0" * 64)  # older query
    records.RunRecords.open(cfg).update(decl.id, "2026-11-03", state="quarantined", query_sha256=decl.query_sha256)

    plan = backfill.plan(cfg, decl, day, day + dt.timedelta(days=3))
    assert plan.skipped == [day]
    assert plan.to_run == [day + dt.timedelta(days=i) for i in (1, 2, 3)]
    forced = backfill.plan(cfg, decl, day, day + dt.timedelta(days=3), force=True)
    assert forced.skipped == [] and len(forced.to_run) == 4


def test_ranges_that_cannot_run_say_what_to_change(tmp_path):
    cfg = _settings(tmp_path)
    harness = Harness(tmp_path, LocalStore(tmp_path / "public"))
    daily, whole = harness.declare("ds.daily_v1"), harness.declare("ds.whole_v1", incremental=False)
    day = dt.date(2026, 11, 1)
    with pytest.raises(backfill.BackfillError, match="swap them"):
        backfill.plan(cfg, daily, day, day - dt.timedelta(days=1))
    with pytest.raises(backfill.BackfillError, match="before the dataset's start_date 2026-10-01"):
        backfill.plan(cfg, daily, dt.date(2026, 9, 30), day)
    with pytest.raises(backfill.BackfillError, match="not incremental.*pubdata run ds.whole_v1"):
        backfill.plan(cfg, whole, day, day)
    with pytest.raises(backfill.BackfillError, match="split the range"):
        backfill.plan(cfg, daily, dt.date(2026, 10, 1), dt.date(2040, 1, 1))


def test_cli_refuses_a_bad_range_before_starting_airflow(project):
    proc = pubdata_cli("backfill", EXAMPLE, "--start", "2026-10-01", "--end", "2026-10-02")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "before the dataset's start_date 2026-11-01" in proc.stderr
    proc = pubdata_cli("backfill", EXAMPLE, "--start", "2026-11-01", "--end", "tomorrow")
    assert proc.returncode == 2 and "--end 'tomorrow' is not a date" in proc.stderr


@pytest.mark.airflow
def test_backfill_two_days_through_airflow_and_resume_after_a_failure(project):
    home = Path(project.parent / "home")
    meta = project / "metadata/telemetry_public/page_loads_by_country_v1.yaml"
    meta.write_text(meta.read_text().replace("start_date: 2026-11-01", "start_date: 2026-10-31"))
    # A problem found in the second day's data: its validation fails until the check is lifted.
    hold = project / "expectations/telemetry_public/page_loads_by_country_v1.yaml"
    hold.parent.mkdir(parents=True, exist_ok=True)
    hold.write_text(
        "expectations:\n"
        "  - sql: SELECT * FROM {batch} WHERE submission_date = DATE '2026-11-01'\n"
        "    description: 2026-11-01 is held back\n"
    )
    listing_path = home / "public/api/v1/tables/telemetry_public/page_loads_by_country/v1/files/.object"

    first = pubdata_cli("backfill", EXAMPLE, "--start", "2026-10-31", "--end", "2026-11-01")

    out = first.stdout + first.stderr
    assert first.returncode == 1, out
    assert "2026-10-31: published" in out and "2026-11-01: FAILED (quarantined)" in out
    assert "2026-11-01 is held back" in out and "resumes from 2026-11-01" in out
    assert list(json.loads(listing_path.read_text())) == ["2026-10-31"]
    published_at = records.RunRecords(LocalStore(home / "private" / "state")).get(EXAMPLE, "2026-10-31").finished_at

    hold.unlink()
    second = pubdata_cli("backfill", EXAMPLE, "--start", "2026-10-31", "--end", "2026-11-01")

    out = second.stdout + second.stderr
    assert second.returncode == 0, out
    assert "skipping 1 day(s) already published by this query" in out
    assert "2026-10-31: published" not in out and "2026-11-01: published" in out
    assert records.RunRecords(LocalStore(home / "private" / "state")).get(EXAMPLE, "2026-10-31").finished_at == published_at  # not re-run
    listing = json.loads(listing_path.read_text())
    assert list(listing) == ["2026-10-31", "2026-11-01"]
    for day, urls in listing.items():
        rows = []
        for url in urls:
            key = url.split("localhost:8000/", 1)[1]
            rows += json.loads((home / "public" / key).read_text())
        assert rows and {r["submission_date"] for r in rows} == {day}

    third = pubdata_cli("backfill", EXAMPLE, "--start", "2026-10-31", "--end", "2026-11-01")
    assert third.returncode == 0 and "nothing to do" in third.stdout
