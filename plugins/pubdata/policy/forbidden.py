"""Forbidden public columns: the one list of what must never reach the bucket, as a column or
derived from one; a deployment extends it with PUBDATA_EXTRA_FORBIDDEN_COLUMNS."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

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
    identifies: bool = False
    """True for columns whose value names one person: a query may not even compare them with a value."""

    def matches(self, column: str) -> bool:
        name = column.lower()
        return name in self.names or any(p.search(name) for p in self.patterns)


def _rx(*patterns: str) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(p) for p in patterns)


FORBIDDEN_COLUMNS: tuple[ForbiddenRule, ...] = (
    ForbiddenRule(
        name="client_identifier",
        identifies=True,
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
        identifies=True,
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
        identifies=True,
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
