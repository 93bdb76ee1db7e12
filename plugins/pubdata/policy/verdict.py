"""The publishing policy's judgement of a declaration: aggregation levels, dimension categories,
the four review questions, the safety matrix, the verdict and the steward's checklist.

Pure functions: a declaration goes in, answers and a verdict come out. The DAG factory, the CLI
and metadata.json all read the same verdict, so a dataset is judged one way everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from pubdata.declarations.spec import DEFAULT_MIN_BUCKET_SIZE, DeclarationFile, Policy
from pubdata.policy.forbidden import forbidden_columns, forbidden_rule

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
    for name, reason in forbidden_columns(policy.columns).items():
        reasons.append(f"declared column {reason}")
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
