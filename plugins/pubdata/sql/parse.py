"""Parsing a reviewed query (BigQuery SQL) for the static checks, and the Finding they report.

The text is first rendered as bqetl renders it (sql.template), and a preamble of
`CREATE TEMP FUNCTION`s is inlined into the SELECT that follows (sql.temp_functions): what the
checks see, and what every warehouse runs, is that one SELECT.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from pubdata.sql.temp_functions import FunctionError, inline, is_function_definition
from pubdata.sql.template import TemplateError, render

DIALECT = "bigquery"
RULE_PARSE = "parse"
RULE_TEMPLATE = "template"
RULE_TEMP_FUNCTION = "temp_function"


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
        sql = render(sql)
    except TemplateError as exc:
        return None, [Finding(RULE_TEMPLATE, f"{exc}.", "render it with `is_init()` only, or write plain SQL")]
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
    preamble = []
    while statements and is_function_definition(statements[0]):
        preamble.append(statements.pop(0))
    if not statements:
        return None, [Finding(RULE_PARSE, "the query is empty.", "write the SELECT that produces the published rows")]
    if len(statements) > 1 or not isinstance(statements[0], exp.Query):
        kinds = ", ".join(type(s).__name__.upper() for s in statements)
        return None, [Finding(
            RULE_PARSE,
            f"the query must be a single SELECT statement; found {kinds}.",
            "keep only the SELECT that produces the published rows; the pipeline does the writing",
        )]
    if not preamble:
        return statements[0], []
    try:
        return inline(preamble, statements[0]), []
    except FunctionError as exc:
        return None, [Finding(RULE_TEMP_FUNCTION, f"the temporary function {exc}.",
                              "write the function in SQL as an expression of its parameters, or inline it by hand")]


def prepared(sql: str) -> str:
    """The SELECT a warehouse runs for a reviewed query (rendered, functions inlined); the text
    itself when it is already plain. ValueError naming the problem when it cannot be prepared."""
    if _plain(sql):
        return sql
    statement, findings = parse(sql)
    if statement is None:
        raise ValueError("; ".join(str(f) for f in findings))
    return statement.sql(DIALECT)


def _plain(sql: str) -> bool:
    return not any(m in sql for m in ("{{", "{%", "{#")) and "FUNCTION" not in sql.upper()
