"""Parsing a reviewed query (BigQuery SQL) for the static checks, and the Finding they report."""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

DIALECT = "bigquery"
RULE_PARSE = "parse"


@dataclass(frozen=True)
class Finding:
    """One way the query departs from its declaration or the policy, and what to change."""

    rule: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.message} Fix: {self.fix}"


_TOKEN_RE = re.compile(r"<Token token_type: TokenType\.\w+, text: (.*?), line: \d+, col: \d+.*?>")


def _token_words(match: re.Match[str]) -> str:
    text = match.group(1)
    return "the end of the query" if text == "SENTINEL" else repr(text)


def parse(sql: str) -> tuple[exp.Query | None, list[Finding]]:
    fix = "correct the SQL at that position; check it parses as BigQuery Standard SQL"
    try:
        statements = [s for s in sqlglot.parse(sql, read=DIALECT) if s is not None]
    except ParseError as exc:
        err = exc.errors[0] if exc.errors else {}
        where = f"line {err.get('line')}, column {err.get('col')}" if err.get("line") else "somewhere"
        what = _TOKEN_RE.sub(_token_words, err.get("description") or str(exc).split("\n")[0])
        near = (err.get("highlight") or "").strip()
        near = f" near {near!r}" if near else ""
        return None, [Finding(RULE_PARSE, f"the query does not parse at {where}{near}: {what}.", fix)]
    except TokenError as exc:
        start = getattr(exc, "start", None)
        where = f"line {sql[:start].count(chr(10)) + 1}" if isinstance(start, int) else "somewhere"
        return None, [Finding(RULE_PARSE, f"the query does not parse at {where}: {exc}.", fix + " (an unclosed quote?)")]
    if not statements:
        return None, [Finding(RULE_PARSE, "the query is empty.", "write the SELECT that produces the published rows")]
    if len(statements) > 1 or not isinstance(statements[0], exp.Query):
        kinds = ", ".join(type(s).__name__.upper() for s in statements)
        return None, [Finding(
            RULE_PARSE,
            f"the query must be a single SELECT statement; found {kinds}.",
            "keep only the SELECT that produces the published rows; the pipeline does the writing",
        )]
    return statements[0], []
