"""The policy and the column types as the public pages say them: from metadata.json's record, in
plain words, never in the policy's or the warehouse's vocabulary."""

from __future__ import annotations

import pytest

from pubdata.declarations import load_all
from pubdata.policy import verdict as policy
from pubdata.publishing import metadata, plain_words
from tests.support.catalog_browser import PUBLIC_JARGON
from tests.support.project import REPO

DECLARATIONS = sorted(load_all(REPO).declarations.values(), key=lambda d: d.id)


def _words(decl) -> str:
    return " ".join(plain_words.policy_sentences(metadata.policy_record(decl)))


def test_the_record_itself_is_jargon_the_pages_must_translate():
    """The check below can fail: the review answers metadata.json keeps are in the policy's terms."""
    reasons = " ".join(a["reason"] for d in DECLARATIONS for a in metadata.policy_record(d)["review_questions"])
    assert PUBLIC_JARGON.search(reasons)


@pytest.mark.parametrize("decl", DECLARATIONS, ids=lambda d: d.id)
def test_every_example_policy_in_plain_words(decl):
    text = _words(decl)
    assert not PUBLIC_JARGON.search(text), PUBLIC_JARGON.search(text)
    p = decl.spec.policy
    day = decl.spec.partition_field or "submission_date"  # mozregression_aggregates_v1 calls its day `date`
    assert text.startswith(f"Each row is one day ({day})") or p.aggregation_level == 1
    assert "No row describes a single client." in text
    if p.aggregation_level == 2 and p.bucket_column:
        assert f"at least {p.min_bucket_size:,} different clients ({p.bucket_column} says how many)" in text
        grouped = f"\u201c{p.other_label}\u201d holds every value" in text
        assert grouped == metadata.groups_into_other(decl) and grouped != ("are left out" in text)
    else:
        assert "without a minimum number of clients per row" in text and "different clients" not in text
    if decl.spec.review.steward:
        assert f"A data steward, {decl.spec.review.steward.name}, approved" in text
    sensitive = [m.name for m in p.metrics if m.sensitive]
    assert all(name in text for name in sensitive) and ("revenue" in text) == bool(sensitive)


def test_a_level_two_dataset_says_what_a_row_and_other_are():
    decl = next(d for d in DECLARATIONS if d.table == "page_loads_by_country")
    assert policy.verdict(decl.spec).allows_publish
    assert plain_words.policy_sentences(metadata.policy_record(decl))[:3] == [
        "Each row is one day (submission_date) and one combination of country, os, locale and normalized_channel. "
        "Its page_loads describes all the clients with those values on that day together. No row describes a single client.",
        "Every row stands for at least 5,000 different clients (client_count says how many). The warehouse counts "
        "them before anything is published; a row with fewer clients is never published.",
        "A value shown as \u201cOther\u201d holds every value of that column seen for too few clients to be shown on its "
        "own: their data is added up in the Other row instead of being left out, and that row, too, stands for at "
        "least 5,000 clients (or is not published).",
    ]


@pytest.mark.parametrize(("column", "expected"), [
    ({"name": "c", "type": "VARCHAR", "field_type": "string"}, ("string", "a JSON string")),
    ({"name": "n", "type": "BIGINT"}, ("integer", "a JSON number, whole")),   # written before field_type
    ({"name": "r", "type": "DOUBLE"}, ("number", "a JSON number")),
    ({"name": "d", "type": "DATE"}, ("date", "a JSON string, YYYY-MM-DD")),
    ({"name": "t", "type": "TIMESTAMP WITH TIME ZONE"}, ("datetime", "a JSON string, ISO 8601 in UTC")),
    ({"name": "x", "type": "MAP(VARCHAR, INTEGER)"}, ("any", "any JSON value")),
    ({"name": "y", "type": "BIGINT", "field_type": "not-a-type"}, ("integer", "a JSON number, whole")),
])
def test_column_types_in_public_terms(column, expected):
    [c] = plain_words.columns([column])
    assert (c.type, c.json) == expected


def test_other_is_promised_only_where_rare_values_are_grouped_into_it():
    by_table = {d.table: d for d in DECLARATIONS}
    assert metadata.groups_into_other(by_table["page_loads_by_country"])        # policy.rollup
    assert metadata.groups_into_other(by_table["active_clients_by_country"])    # the query writes 'Other'
    mozregression = by_table["mozregression_aggregates"]                         # rows under the minimum dropped
    assert not metadata.groups_into_other(mozregression)
    assert "Values seen for fewer than 5,000 clients are left out" in _words(mozregression)
    assert "holds every value" not in _words(mozregression)
