"""The SQL of an expectation: exactly one read-only SELECT whose only table is `{batch}`.

Great Expectations splices `{batch}` into an expectation's query text and runs whatever results,
so SQL from an expectations file that closed a parenthesis and added statements ran them (a COPY
of the raw staged rows into the public bucket, an UPDATE of the staged table after validation).
Here the text is parsed (sqlglot), held to one SELECT that writes nothing, reads no table but
`{batch}` (and its own CTEs) and nothing outside the warehouse (sql.sources), and the query GX
runs is rendered from that tree in the warehouse's dialect: no character of the original text
reaches the warehouse except through the tree (literals re-quoted, identifiers re-escaped). The
generated expectations (identifier scan, totals, finite metrics, unique dimensions) go through
the same gate. On the embedded engine the query then runs read-only in the sandbox.
"""

from __future__ import annotations

import re

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from pubdata.sql.sources import check_sources

BATCH = "{batch}"
PLACEHOLDER = "pubdata_batch__"
"""The table name `{batch}` stands as while the text is parsed; reserved, so it cannot be written."""
SOURCE_DIALECT = "bigquery"
"""Expectations files are written in BigQuery SQL, like the reviewed queries, and transpiled."""

WRITES: tuple[type[exp.Expr], ...] = (
    exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Create, exp.Drop, exp.Alter, exp.TruncateTable,
    exp.Copy, exp.Export, exp.LoadData, exp.Into, exp.Lock, exp.Command, exp.Set, exp.Pragma, exp.Attach,
    exp.Detach, exp.Install, exp.Use, exp.Transaction, exp.Commit, exp.Rollback, exp.Grant, exp.Revoke,
    exp.Analyze, exp.Cache, exp.Uncache, exp.Refresh, exp.Kill, exp.Describe, exp.Show, exp.Summarize,
)
"""Anything but reading: statements, and the clauses that write from inside a SELECT (INTO, FOR UPDATE)."""


class BatchSqlError(ValueError):
    """The text is not one read-only SELECT over {batch}; the message says what to change."""


def parse_batch_sql(text: object, dialect: str = SOURCE_DIALECT) -> exp.Query:
    """The parsed SELECT, or BatchSqlError saying why the text is not one read-only SELECT over {batch}."""
    if not isinstance(text, str) or not text.strip():
        raise BatchSqlError("expected the text of one SELECT over {batch}")
    if PLACEHOLDER in text.lower():
        raise BatchSqlError(f"{PLACEHOLDER} is a reserved name; write {BATCH} for the staged rows")
    try:
        prepared = text.format(batch=PLACEHOLDER)
    except (KeyError, IndexError, ValueError) as exc:
        raise BatchSqlError(f"braces other than {BATCH} must be doubled ({{{{ }}}}), as in a regex x{{{{3}}}}: "
                            f"{str(exc)[:80]}") from None
    try:
        statements = [s for s in sqlglot.parse(prepared, read=dialect) if s is not None]
    except ParseError as exc:
        err = exc.errors[0] if exc.errors else {}
        where = f" at line {err['line']} of the query" if err.get("line") else ""
        raise BatchSqlError(f"does not parse as {dialect} SQL{where}: "
                            f"{str(err.get('description') or exc).splitlines()[0][:120]}") from None
    except TokenError as exc:
        raise BatchSqlError(f"does not parse as {dialect} SQL: {str(exc)[:120]} (an unclosed quote?)") from None
    if len(statements) != 1:
        kinds = ", ".join(type(s).__name__.upper() for s in statements[:5])
        raise BatchSqlError(f"must be exactly one SELECT; found {len(statements)} statements ({kinds})")
    tree = statements[0]
    if not isinstance(tree, exp.Query):
        raise BatchSqlError(f"must be a SELECT; found {type(tree).__name__.upper()}")
    writes = sorted({type(n).__name__.upper() for n in tree.find_all(*WRITES)})
    if writes:
        raise BatchSqlError(f"must only read; found {', '.join(writes)}")
    _check_tables(tree)
    return tree


def _check_tables(tree: exp.Query) -> None:
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    tables = [[p.name for p in t.parts] for t in tree.find_all(exp.Table) if not isinstance(t.this, exp.Func)]
    if [PLACEHOLDER] not in tables:
        raise BatchSqlError(f"must read {BATCH} (the staged rows of this run), not a table by name")
    for parts in tables:
        if parts != [PLACEHOLDER] and not (len(parts) == 1 and parts[0] in ctes):
            raise BatchSqlError(f"reads {'.'.join(parts)}: the only table an expectation reads is {BATCH} "
                                "(the staged rows of this run)")
    for column in tree.find_all(exp.Column):
        if column.table == PLACEHOLDER:
            raise BatchSqlError(f"give {BATCH} an alias (FROM {BATCH} AS t) and qualify columns with it")
    outside = check_sources(tree, allowed_tables=frozenset({PLACEHOLDER}))
    if outside:
        raise BatchSqlError(outside[0].message.replace("the query", "it", 1))


def render_batch_sql(tree: exp.Query, dialect: str) -> str:
    """The query Great Expectations runs: the tree in `dialect`, with {batch} as its only table.

    Braces in the rendered text are doubled (GX formats the query); the placeholder can appear
    nowhere but as a table name, since the text that was parsed could not contain it.
    """
    def plain(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Table) and [p.name for p in node.parts] == [PLACEHOLDER]:
            plain_table = exp.to_table(PLACEHOLDER)
            if node.args.get("alias") is not None:
                plain_table.set("alias", node.args["alias"])
            return plain_table
        return node

    sql = tree.transform(plain).sql(dialect=dialect)
    sql = sql.replace("{", "{{").replace("}", "}}")
    return re.sub(rf"\b{PLACEHOLDER}\b", BATCH, sql)


def batch_query(text: str, *, read: str = SOURCE_DIALECT, write: str) -> str:
    """Parse, check and render in one step (BatchSqlError when the text is refused)."""
    return render_batch_sql(parse_batch_sql(text, read), write)


def unknown_columns(text: str, declared: set[str], dialect: str = SOURCE_DIALECT) -> list[str]:
    """Columns the query reads that are neither declared columns of the staged rows nor names the
    query defines itself (aliases, CTE columns), in order of appearance; [] when it does not parse."""
    try:
        tree = parse_batch_sql(text, dialect)
    except BatchSqlError:
        return []
    own = {a.alias for a in tree.find_all(exp.Alias)}
    own |= {c.name for alias in tree.find_all(exp.TableAlias) for c in alias.columns}
    own |= {alias.name for alias in tree.find_all(exp.TableAlias)}
    out: list[str] = []
    for column in tree.find_all(exp.Column):
        name = column.name
        if name and name not in declared and name not in own and name not in out:
            out.append(name)
    return out
