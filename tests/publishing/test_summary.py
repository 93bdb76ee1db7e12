"""What publish records for the public pages: the preview (the first rows of the published files),
the main metric's total per day, when the content last really changed (an identical republish
is not a change), and the public contacts (a configured team alias, never the owners unless
configured)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from pubdata.config import DEFAULT_PUBLIC_CONTACT, settings
from pubdata.errors import ConfigurationError
from pubdata.publishing import catalog
from pubdata.stores.local import LocalStore
from tests.support.harness import DAY, Harness, expected_rows


@pytest.fixture
def harness(tmp_path, monkeypatch):
    monkeypatch.delenv("PUBDATA_PUBLIC_CONTACTS", raising=False)
    return Harness(tmp_path, LocalStore(tmp_path / "public"))


def _meta(harness, decl):
    return harness.read_json(f"{decl.dataset_id.public_prefix}/metadata.json")


def test_preview_and_daily_totals_are_what_the_files_hold(harness):
    decl = harness.declare("ds.summed_v1", max_file_bytes=1024)  # several parts a day
    other_day = DAY.replace(day=2)
    harness.publish(decl, marker=3, n=40)
    harness.publish(decl, marker=5, n=12, day=other_day)
    meta = _meta(harness, decl)
    assert len(meta["partitions"][DAY.isoformat()]["files"]) > 1

    # The preview: the first rows of the latest publish's files, as a reader downloads them.
    latest = meta["partitions"][other_day.isoformat()]["files"]
    assert meta["preview"] == {"partition": other_day.isoformat(),
                               "rows": harness.read_json(harness.key(latest[0]["url"]))[:10]}
    assert meta["preview"]["rows"] == expected_rows(5, 12, other_day)[:10]

    # The chart: the first count that is not the client count (marker), summed over every file of each day.
    def total(day):
        return sum(row["marker"] for f in meta["partitions"][day]["files"] for row in harness.read_json(harness.key(f["url"])))
    assert meta["daily_totals"] == {"metric": "marker", "date_column": "submission_date",
                                    "days": {DAY.isoformat(): total(DAY.isoformat()),
                                             other_day.isoformat(): total(other_day.isoformat())}}
    assert meta["daily_totals"]["days"] == {DAY.isoformat(): 3 * 40, other_day.isoformat(): 5 * 12}

    # A day published again replaces its own total only.
    harness.publish(decl, marker=7, n=40)
    assert _meta(harness, decl)["daily_totals"]["days"] == {DAY.isoformat(): 7 * 40, other_day.isoformat(): 5 * 12}


def test_whole_table_totals_group_by_the_date_column(harness):
    decl = harness.declare("ds.whole_v1", incremental=False)
    harness.publish(decl, marker=2, n=6)
    meta = _meta(harness, decl)
    assert meta["daily_totals"]["days"] == {DAY.isoformat(): 12}
    assert meta["preview"]["partition"] is None and len(meta["preview"]["rows"]) == 6


def test_an_identical_republish_is_not_a_change(harness):
    decl = harness.declare("ds.republished_v1")
    harness.publish(decl, marker=1, n=5)
    first = _meta(harness, decl)
    harness.publish(decl, marker=1, n=5, run_key="again")
    again = _meta(harness, decl)
    assert again["generated_at"] > first["generated_at"], "it was published again"
    assert again["changed_at"] == first["changed_at"] and again["content_sha256"] == first["content_sha256"]
    [entry] = catalog.refresh(harness.store, harness.base_url)
    assert entry.is_new and entry.updated_iso == catalog._rfc3339(first["changed_at"])

    # A new earlier day is a change; publishing it again as it was is not, and the preview stays
    # on the newest day.
    older = DAY - dt.timedelta(days=1)
    harness.publish(decl, marker=1, n=5, day=older)
    with_older = _meta(harness, decl)
    assert with_older["changed_at"] > again["changed_at"]
    harness.publish(decl, marker=1, n=5, day=older, run_key="older-again")
    older_again = _meta(harness, decl)
    assert older_again["latest_partition"] == older.isoformat()
    assert older_again["changed_at"] == with_older["changed_at"]
    assert older_again["preview"] == with_older["preview"] and older_again["preview"]["partition"] == DAY.isoformat()
    again = older_again

    # Different rows are a change, and the feed says "Updated".
    harness.publish(decl, marker=2, n=5)
    changed = _meta(harness, decl)
    assert changed["changed_at"] == changed["generated_at"] > again["changed_at"]
    assert changed["content_sha256"] != again["content_sha256"]
    [entry] = catalog.refresh(harness.store, harness.base_url)
    assert not entry.is_new and "<title>Updated: Synthetic dataset ds.republished_v1</title>" in \
        harness.store.read(catalog.FEED_KEY).data.decode()


def _public_text(harness) -> str:
    catalog.refresh(harness.store, harness.base_url)
    return "\n".join(harness.store.read(k).data.decode("utf-8", "replace") for k in harness.store.list("")
                     if not k.startswith("assets/"))


def test_public_documents_name_the_team_alias_not_the_owners(harness):
    decl = harness.declare("ds.contact_v1")
    harness.publish(decl, marker=1, n=5)
    meta = _meta(harness, decl)
    assert meta["contacts"] == meta["owners"] == [DEFAULT_PUBLIC_CONTACT]
    index = json.loads(harness.store.read("all-datasets.json").data)
    assert index["ds"]["contact"]["v1"]["owners"] == [DEFAULT_PUBLIC_CONTACT]
    text = _public_text(harness)
    assert decl.spec.owners == ["data-eng@example.org"] and "data-eng@example.org" not in text
    assert DEFAULT_PUBLIC_CONTACT in text


def test_contacts_come_from_configuration(harness, monkeypatch):
    decl = harness.declare("ds.configured_v1")
    monkeypatch.setenv("PUBDATA_PUBLIC_CONTACTS", "telemetry-team@example.org, opendata@example.org")
    harness.publish(decl, marker=1, n=5)
    assert _meta(harness, decl)["contacts"] == ["telemetry-team@example.org", "opendata@example.org"]
    text = _public_text(harness)
    assert "telemetry-team@example.org" in text and "data-eng@example.org" not in text

    monkeypatch.setenv("PUBDATA_PUBLIC_CONTACTS", "owners")  # a deployment that chooses to publish the owners
    harness.publish(decl, marker=2, n=5)
    assert _meta(harness, decl)["contacts"] == ["data-eng@example.org"]


@pytest.mark.parametrize("value", ["Jane Doe", "a@example.org, owners", "a@example.org;b@example.org", ","])
def test_a_contact_that_is_not_an_address_is_refused_with_the_fix(monkeypatch, value):
    monkeypatch.setenv("PUBDATA_PUBLIC_CONTACTS", value)
    with pytest.raises(ConfigurationError, match="PUBDATA_PUBLIC_CONTACTS=.*comma-separated addresses"):
        settings()
    monkeypatch.setenv("PUBDATA_PUBLIC_CONTACTS", "team@example.org")
    assert settings().public_contacts(["someone@example.org"]) == ["team@example.org"]
