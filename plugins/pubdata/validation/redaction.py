"""What of a check's values may leave the warehouse: the one place that withholds identifiers.

Checks that can expose identifiers (forbidden columns, the identifier scan) show counts and
column names only; any other value that looks like an identifier (by the identifier scan's own
patterns) is replaced by [redacted]. Reports, alerts, run records and the public metadata.json
all go through here.
"""

from __future__ import annotations

import json
from typing import Any

from pubdata.validation.expectations import finite_metrics, unique_dimensions
from pubdata.validation.expectations.identifier_scan import IDENTIFIER_SPANS, looks_like_identifier

WITHHELD = "[redacted]"  # what stands in for a value that may be an identifier
ROW_COUNTS = ("UnexpectedRowsExpectation", finite_metrics.NAME, unique_dimensions.NAME)
"""Checks whose observed value is a number of offending rows."""


def redact_text(text: str) -> str:
    """Free text (an error message) with every identifier in it replaced by [redacted].

    Searched with the scan's own patterns over the whole text, so an identifier that spans
    spaces or brackets (alice (at) example (dot) com) is withheld as the scan would flag it.
    """
    spans = sorted(m.span() for pattern in IDENTIFIER_SPANS for m in pattern.finditer(text) if m.end() > m.start())
    merged: list[list[int]] = []
    for start, end in spans:  # overlapping matches (a JWT, and the base64 run inside it) are withheld as one
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    for start, end in reversed(merged):
        text = text[:start] + WITHHELD + text[end:]
    return text


def redacted(value: Any) -> Any:
    """value (nested dicts and lists included) with every identifier-looking value withheld.

    Uses the identifier scan's own patterns, so what the warehouse flags is what is hidden here.
    """
    if isinstance(value, dict):
        return {k: redacted(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redacted(v) for v in value]
    return WITHHELD if looks_like_identifier(value) else value


def _text(value: Any, limit: int = 300) -> str:
    if value is None:
        return "-"
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shown(check: dict[str, Any]) -> dict[str, str]:
    """observed / expected / sample of a check, as text fit to leave the warehouse."""
    observed, sample = check.get("observed"), check.get("unexpected_sample") or []
    if check.get("sensitive"):
        if isinstance(observed, dict):  # forbidden columns: {column: reason}; names are not values
            observed = "columns: " + ", ".join(str(k) for k in observed)
        elif not isinstance(observed, int) or isinstance(observed, bool):
            observed = WITHHELD
        sample_text = f"{WITHHELD} (values withheld)" if sample or not check.get("success", True) else "-"
    else:
        observed = redacted(observed)
        sample_text = _text(redacted(sample)) if sample else "-"
    expected = check.get("expected")
    if isinstance(expected, dict) and set(expected) == {"unexpected_rows_query"}:
        expected = "no rows"  # an SQL expectation: the query lists the violations
    if isinstance(observed, int) and not isinstance(observed, bool) and check.get("expectation") in ROW_COUNTS:
        observed = f"{observed} row(s)"
    finding = check.get("finding") if not check.get("sensitive") else None
    cells = [] if check.get("sensitive") else check.get("cells") or []
    return {"observed": _text(observed), "expected": _text(expected), "sample": sample_text,
            "finding": redact_text(str(finding)) if finding else "",
            "cells": _cells(redacted(cells)) if cells else ""}


def _cells(cells: list[Any]) -> str:
    """The failing cells, each as its dimension values: `country=US os=Linux; ...`."""
    return _text("; ".join(" ".join(f"{k}={v}" for k, v in c.items()) if isinstance(c, dict) else str(c) for c in cells),
                 600)
