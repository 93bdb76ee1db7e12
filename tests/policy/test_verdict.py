"""The publishing policy: forbidden columns, review questions, safety matrix, verdict, geo rules."""

from __future__ import annotations

import itertools

import pytest

from pubdata.declarations import DeclarationFile
from pubdata.policy.forbidden import FORBIDDEN_COLUMNS, forbidden_columns, forbidden_reason, forbidden_rule
from pubdata.policy.verdict import QUESTIONS, Answer, Verdict, review_questions, steward_checklist, verdict

BUG = "https://bugzilla.mozilla.org/show_bug.cgi?id=1414839"
STEWARD = {"name": "Jane Steward", "approved_on": "2026-11-01", "link": BUG + "#c4"}


def make_spec(
    level: int = 2,
    dimensions: list[dict] | None = None,
    metrics: list[dict] | None = None,
    data_reviews: list[str] | None = None,
    steward: dict | None = None,
    **policy: object,
) -> DeclarationFile:
    review: dict = {"bugs": [BUG], "data_reviews": ["https://example.org/data-review/123"] if data_reviews is None else data_reviews}
    if steward is not None:
        review["steward"] = steward
    return DeclarationFile.model_validate({
        "friendly_name": "Page loads by country and OS",
        "description": "Daily page loads and active clients.",
        "owners": ["data-eng@example.org"],
        "review": review,
        "policy": {
            "aggregation_level": level,
            "bucket_column": "client_count",
            "dimensions": dimensions or [
                {"name": "submission_date", "category": 1, "kind": "date"},
                {"name": "country", "category": 1, "kind": "geo_country"},
                {"name": "os", "category": 1},
            ],
            "metrics": metrics or [
                {"name": "page_loads", "sensitive": False},
                {"name": "client_count", "sensitive": False},
            ],
            **policy,
        },
        "start_date": "2026-11-01",
    })


# ---------------------------------------------------------------------------------------------
# The full matrix against an independent oracle
# ---------------------------------------------------------------------------------------------

LEVELS = range(1, 8)
CATEGORIES = range(1, 5)
REVIEW_STATES = ("complete", "no_data_reviews", "field_without_review")


def expected_status(level: int, max_category: int, sensitive: bool, review_complete: bool, steward: bool) -> str:
    """The policy in DESIGN.md, written out plainly."""
    if level >= 4:
        return "refused"  # levels 4-7 are outside the safety matrix
    if max_category >= 3 and level == 3:
        return "refused"  # categories 3 and 4 only at levels 1 and 2
    q1 = level >= 3
    q2 = max_category >= 3
    q3 = sensitive or max_category == 4
    q4 = not review_complete
    if not (q1 or q2 or q3 or q4):
        return "publishable"
    return "signed_off" if steward else "needs_signoff"


def matrix_spec(level: int, max_category: int, sensitive: bool, review: str, steward: bool) -> DeclarationFile:
    dimensions = [
        {"name": "submission_date", "category": 1, "kind": "date"},
        {"name": "feature", "category": max_category, "data_review": review != "field_without_review"},
    ]
    metrics = [
        {"name": "search_count", "sensitive": sensitive},
        {"name": "client_count", "sensitive": False},
    ]
    return make_spec(
        level,
        dimensions,
        metrics,
        data_reviews=[] if review == "no_data_reviews" else None,
        steward=STEWARD if steward else None,
    )


@pytest.mark.parametrize(
    ("level", "max_category", "sensitive", "review", "steward"),
    list(itertools.product(LEVELS, CATEGORIES, (False, True), REVIEW_STATES, (False, True))),
)
def test_verdict_matrix(level: int, max_category: int, sensitive: bool, review: str, steward: bool) -> None:
    spec = matrix_spec(level, max_category, sensitive, review, steward)
    result = verdict(spec)
    want = expected_status(level, max_category, sensitive, review == "complete", steward)

    assert result.status == want, result.reasons
    assert result.allows_publish == (want in ("publishable", "signed_off"))
    assert [a.answer for a in result.answers] == [
        level >= 3,
        max_category >= 3,
        sensitive or max_category == 4,
        review != "complete",
    ]
    assert result.signoff_required == any(a.answer for a in result.answers)
    assert result.reasons and all(r for r in result.reasons)
    if want in ("refused", "needs_signoff"):
        assert result.fix
    else:
        assert result.fix is None


def test_matrix_covers_every_combination() -> None:
    assert len(list(itertools.product(LEVELS, CATEGORIES, (False, True), REVIEW_STATES, (False, True)))) == 7 * 4 * 2 * 3 * 2


# ---------------------------------------------------------------------------------------------
# Review questions: answers and the fields named in their reasons
# ---------------------------------------------------------------------------------------------


def test_all_no_answers_name_the_fields() -> None:
    answers = review_questions(make_spec())
    assert [a.number for a in answers] == [1, 2, 3, 4]
    assert [a.question for a in answers] == list(QUESTIONS)
    assert not any(a.answer for a in answers)
    assert "aggregation_level is 2" in answers[0].reason and "5,000" in answers[0].reason
    assert "country (1)" in answers[1].reason
    assert "no metric is marked sensitive" in answers[2].reason
    assert "review.data_reviews lists 1 review" in answers[3].reason


def test_yes_answers_name_the_fields() -> None:
    spec = make_spec(
        2,
        [
            {"name": "submission_date", "category": 1, "kind": "date"},
            {"name": "site_category", "category": 3},
            {"name": "health_flag", "category": 4, "data_review": False},
        ],
        [{"name": "ad_clicks", "sensitive": True}, {"name": "client_count", "sensitive": False, "data_review": False}],
        data_reviews=[],
    )
    a1, a2, a3, a4 = review_questions(spec)
    assert isinstance(a1, Answer) and not a1.answer
    assert a2.answer and "site_category (category 3" in a2.reason and "health_flag (category 4" in a2.reason
    assert a3.answer and "metric ad_clicks" in a3.reason and "dimension health_flag" in a3.reason
    assert a4.answer
    assert "review.data_reviews is empty" in a4.reason
    assert "dimension health_flag" in a4.reason and "metric client_count" in a4.reason


def test_level_2_with_a_small_bucket_is_judged_as_level_3() -> None:
    spec = make_spec(2, min_bucket_size=100)
    a1 = review_questions(spec)[0]
    assert a1.answer
    assert "min_bucket_size 100" in a1.reason and "level 3" in a1.reason
    assert verdict(spec).status == "needs_signoff"


def test_level_2_with_a_small_bucket_refuses_category_3() -> None:
    spec = make_spec(
        2,
        [{"name": "submission_date", "category": 1, "kind": "date"}, {"name": "site_category", "category": 3}],
        min_bucket_size=100,
        steward=STEWARD,
    )
    result = verdict(spec)
    assert result.status == "refused"
    assert "min_bucket_size" in result.fix and "site_category (category 3)" in result.fix


# ---------------------------------------------------------------------------------------------
# Verdicts: reasons and fixes a data engineer can act on
# ---------------------------------------------------------------------------------------------


def test_refused_level_3_with_category_3_names_the_fix() -> None:
    spec = make_spec(
        3,
        [{"name": "submission_date", "category": 1, "kind": "date"}, {"name": "site_category", "category": 3}],
        steward=STEWARD,
    )
    result = verdict(spec)
    assert result.status == "refused" and not result.allows_publish
    assert any("site_category (category 3)" in r for r in result.reasons)
    assert "level 2" in result.fix and "drop dimension site_category (category 3)" in result.fix


@pytest.mark.parametrize("level", [4, 5, 6, 7])
def test_refused_levels_outside_the_matrix(level: int) -> None:
    result = verdict(make_spec(level, steward=STEWARD))
    assert result.status == "refused"
    assert f"aggregation level {level}" in result.reasons[0] and "outside the safety matrix" in result.reasons[0]
    assert "level 2" in result.fix and "'Other'" in result.fix


def test_needs_signoff_fix_asks_for_the_steward() -> None:
    result = verdict(make_spec(3))
    assert result.status == "needs_signoff"
    assert "review.steward" in result.fix and "approved_on" in result.fix and BUG in result.fix
    assert any("review question 1" in r for r in result.reasons)
    assert any("review.steward is missing" in r for r in result.reasons)


def test_needs_signoff_only_for_missing_review_suggests_linking_it() -> None:
    result = verdict(make_spec(2, data_reviews=[]))
    assert result.status == "needs_signoff"
    assert "review.data_reviews" in result.fix


def test_signed_off_names_the_steward() -> None:
    result = verdict(make_spec(3, steward=STEWARD))
    assert result.status == "signed_off" and result.allows_publish and result.fix is None
    assert any("Jane Steward" in r and "2026-11-01" in r for r in result.reasons)


def test_publishable_needs_no_steward_even_when_one_is_named() -> None:
    result = verdict(make_spec(2, steward=STEWARD))
    assert result.status == "publishable" and result.allows_publish and not result.signoff_required


def test_declared_forbidden_column_is_refused() -> None:
    spec = make_spec(
        2,
        [{"name": "submission_date", "category": 1, "kind": "date"}, {"name": "client_id", "category": 1}],
        steward=STEWARD,
    )
    result = verdict(spec)
    assert result.status == "refused"
    assert any("client_id" in r for r in result.reasons)
    assert "remove column client_id" in result.fix


def test_verdict_is_a_value() -> None:
    assert isinstance(verdict(make_spec()), Verdict)
    assert verdict(make_spec()) == verdict(make_spec())


# ---------------------------------------------------------------------------------------------
# Steward checklist
# ---------------------------------------------------------------------------------------------


def test_checklist_empty_when_no_question_is_yes() -> None:
    assert steward_checklist(make_spec()) == []


def test_checklist_has_an_item_per_yes_answer() -> None:
    spec = make_spec(
        1,
        [
            {"name": "submission_date", "category": 1, "kind": "date"},
            {"name": "site_category", "category": 3},
            {"name": "city", "category": 2, "kind": "geo_city"},
        ],
        [{"name": "search_count", "sensitive": True}, {"name": "client_count", "sensitive": False, "data_review": False}],
    )
    items = steward_checklist(spec)
    text = "\n".join(items)
    assert "site_category" in text and "category 3" in text
    assert "search_count" in text and "revenue" in text
    assert "client_count has no data-collection review" in text
    assert "15,000" in text  # city dimension
    assert "review.steward" in items[-1] and BUG in items[-1]
    assert "minimum bucket" not in text  # level 1: question 1 is no


def test_checklist_level_3() -> None:
    items = steward_checklist(make_spec(3))
    assert any("no minimum bucket" in i and "submission_date, country, os" in i for i in items)


# ---------------------------------------------------------------------------------------------
# Forbidden columns
# ---------------------------------------------------------------------------------------------

FORBIDDEN = [
    "client_id", "CLIENT_ID", "legacy_client_id", "clientid", "profile_id", "profile_group_id", "device_id",
    "user_id", "uid", "fxa_uid", "ip", "client_ip", "remote_addr", "ip_address", "ipv4", "x_forwarded_for",
    "email", "user_email", "user_agent", "http_user_agent", "ua", "url", "page_url", "uri", "request_uri",
    "referrer", "search_terms", "search_term", "search_query", "query_string", "submission_timestamp",
    "submission_hour",
]
ALLOWED = [
    "client_count", "ssl_page_loads", "search_count", "submission_date", "country", "city", "os", "os_version",
    "locale", "normalized_channel", "page_loads", "ad_clicks", "active_hours", "cpu_cores", "memory_mb",
    "gpu_vendor", "ipc_messages", "zip_count", "url_count", "email_count", "users", "client_count_7d",
    "user_agent_browser", "distinct_client_ids_count", "sample_id", "app_version",
]


@pytest.mark.parametrize("name", FORBIDDEN)
def test_forbidden_names(name: str) -> None:
    reason = forbidden_reason(name)
    assert reason is not None and name in reason


@pytest.mark.parametrize("name", ALLOWED)
def test_allowed_names(name: str) -> None:
    assert forbidden_reason(name) is None


def test_forbidden_columns_returns_only_the_forbidden_with_reasons() -> None:
    got = forbidden_columns(["client_count", "client_id", "country", "user_agent"])
    assert list(got) == ["client_id", "user_agent"]
    assert "identifier" in got["client_id"] and "user agent" in got["user_agent"]


def test_every_rule_has_a_reason_and_fix() -> None:
    assert len({r.name for r in FORBIDDEN_COLUMNS}) == len(FORBIDDEN_COLUMNS)
    for rule in FORBIDDEN_COLUMNS:
        assert rule.reason and rule.fix and (rule.names or rule.patterns)
    assert forbidden_rule("submission_timestamp").allowed_at_day_resolution
    assert not forbidden_rule("client_id").allowed_at_day_resolution


def test_deployment_extends_the_list(monkeypatch: pytest.MonkeyPatch) -> None:
    assert forbidden_reason("gpu_vendor") is None
    monkeypatch.setenv("PUBDATA_EXTRA_FORBIDDEN_COLUMNS", " gpu_vendor, Serial_Number ,")
    assert "PUBDATA_EXTRA_FORBIDDEN_COLUMNS" in forbidden_reason("gpu_vendor")
    assert forbidden_reason("serial_number") is not None
    assert forbidden_reason("client_id") is not None
    assert forbidden_reason("cpu_cores") is None
    monkeypatch.delenv("PUBDATA_EXTRA_FORBIDDEN_COLUMNS")
    assert forbidden_reason("gpu_vendor") is None
