"""BigQuery SQL as DuckDB runs it: where sqlglot's stock transpilation changes a result, and
Mozilla's shared functions.

sqlglot's DuckDB generator is right for DuckDB-to-DuckDB but, read from BigQuery, some constructs
come out valid yet meaning something else. `BigQueryOnDuckDB` overrides exactly those, through
the dialect's own extension points (generator methods), each with a test in
tests/warehouses/test_duckdb_dialect.py:

- STRING(json) is the JSON string's value; a CAST to text keeps its quotes.
- LIKE escapes with a backslash in BigQuery; DuckDB's LIKE has no escape unless told.
- NUMERIC is DECIMAL(38, 9); sqlglot's bare DECIMAL is DuckDB's DECIMAL(18, 3).
- DATE_ADD/DATE_SUB return a DATE; `date - INTERVAL` is a TIMESTAMP in DuckDB.
- An UNNEST without an alias makes the fields of its structs columns; DuckDB names one `unnest`.
- SAFE.f(...) is NULL where f would fail: DuckDB's TRY(f(...)).

`prepare` then renames calls of Mozilla's functions to their macros (duckdb_routines) and refuses,
naming it, what the embedded engine cannot run (HLL_COUNT.* sketches);
`unresolved_functions` lists the calls DuckDB would not find, for `pubdata check`.
"""

from __future__ import annotations

from functools import lru_cache

from sqlglot import exp
from sqlglot.dialects.duckdb import DuckDB

from pubdata.errors import QueryError
from pubdata.warehouses import duckdb_routines

NUMERIC = "DECIMAL(38, 9)"
"""BigQuery's NUMERIC (and DECIMAL without precision): 38 digits, 9 after the point."""

UNSUPPORTED: dict[str, str] = {
    "HLL_COUNT": "HLL_COUNT.* sketches are BigQuery's own format and the embedded DuckDB engine has no "
                 "equivalent; publish COUNT(DISTINCT ...) or APPROX_COUNT_DISTINCT(...) instead",
    "NET": "NET.* needs a DuckDB extension the sandbox never loads; extract hosts with REGEXP_EXTRACT instead",
}
"""Function families the embedded engine cannot run -> the error naming them, and what to write."""


class BigQueryOnDuckDB(DuckDB):
    """DuckDB output for queries read as BigQuery: stock DuckDB, with BigQuery's meaning kept."""

    class Generator(DuckDB.Generator):  # type: ignore[valid-type,misc]
        def string_sql(self, expression: exp.String) -> str:
            # BigQuery STRING(json) unquotes a JSON string; to_json() leaves JSON as it is and
            # makes a string JSON, so extracting '$' as text gives the value either way.
            if expression.args.get("zone"):
                return super().string_sql(expression)
            return f"json_extract_string(to_json({self.sql(expression, 'this')}), '$')"

        def like_sql(self, expression: exp.Like) -> str:
            sql = super().like_sql(expression)
            if isinstance(expression.parent, exp.Escape) or expression.args.get("quantifier"):
                return sql
            return f"{sql} ESCAPE '\\'"

        def datatype_sql(self, expression: exp.DataType) -> str:
            if expression.this == exp.DType.DECIMAL and not expression.expressions:
                return NUMERIC
            return super().datatype_sql(expression)

        def unnest_sql(self, expression: exp.Unnest) -> str:
            parent = expression.parent
            bare = (not expression.args.get("alias") and not expression.args.get("offset")
                    and isinstance(parent, (exp.From, exp.Join)) and len(expression.expressions) == 1)
            if not bare:
                return super().unnest_sql(expression)
            array = self.sql(expression.expressions[0])
            return f"LATERAL (SELECT _pubdata_unnest.* FROM (SELECT UNNEST({array}) AS _pubdata_unnest))"

        TRANSFORMS = {
            **DuckDB.Generator.TRANSFORMS,
            exp.DateAdd: lambda self, e: f"CAST({DuckDB.Generator.TRANSFORMS[exp.DateAdd](self, e)} AS DATE)",
            exp.DateSub: lambda self, e: f"CAST({DuckDB.Generator.TRANSFORMS[exp.DateSub](self, e)} AS DATE)",
            # BigQuery's SAFE. prefix: NULL instead of an error, which DuckDB spells TRY().
            exp.SafeFunc: lambda self, e: f"TRY({self.sql(e, 'this')})",
        }


def _dotted(node: exp.Expr) -> tuple[list[str], exp.Anonymous] | None:
    """(['mozfun', 'hist'], extract(...)) for mozfun.hist.extract(...); None for a plain call."""
    if isinstance(node, exp.Anonymous) and isinstance(node.this, exp.Identifier) and "." in node.this.name:
        *prefix, name = node.this.name.split(".")  # `moz-fx-data-shared-prod.udf.get_key`(...)
        return prefix, exp.Anonymous(this=name, expressions=node.expressions)
    if not isinstance(node, exp.Dot) or not isinstance(node.expression, exp.Anonymous):
        return None
    head: list[str] = []
    part: exp.Expr | None = node.this
    while isinstance(part, exp.Dot):
        head.insert(0, part.expression.name)
        part = part.this
    if not isinstance(part, (exp.Identifier, exp.Column)):
        return None
    head.insert(0, part.name)
    return head, node.expression


def call_name(node: exp.Expr) -> str | None:
    """The name a function call is written with (`mozfun.hist.extract`, `HLL_COUNT.MERGE`, `f`)."""
    dotted = _dotted(node)
    if dotted is not None:
        head, call = dotted
        return ".".join([*head, call.name])
    if isinstance(node, exp.Anonymous) and not (isinstance(node.parent, exp.Dot) and node.arg_key == "expression"):
        return node.name
    if isinstance(node, exp.NetFunc):
        inner = node.this
        return f"NET.{call_name(inner) or (inner.sql_name() if isinstance(inner, exp.Func) else inner.sql('bigquery'))}"
    return None


def _shared(name: str) -> str | None:
    """`mozfun.hist.extract` for any spelling of a shared function (with the project or not)."""
    parts = name.split(".")
    while parts and parts[0] not in duckdb_routines.PREFIXES:
        parts = parts[1:]
    return ".".join(parts) if len(parts) >= 2 else None


def prepare(tree: exp.Expr) -> exp.Expr:
    """Mozilla's function calls renamed to their macros; QueryError for what cannot run here."""
    for node in list(tree.walk()):
        name = call_name(node)
        if name is None or not isinstance(node, (exp.Dot, exp.Anonymous, exp.NetFunc)):
            continue
        family = name.split(".")[0].upper()
        if family in UNSUPPORTED:
            raise QueryError(f"{name}(...) is not supported on the embedded engine: {UNSUPPORTED[family]}")
        shared = _shared(name)
        if shared is not None and duckdb_routines.known(shared):
            dotted = _dotted(node)
            args = dotted[1].expressions if dotted else node.expressions
            call: exp.Expr = exp.Anonymous(this=duckdb_routines.macro_name(shared), expressions=args)
            if name.split(".")[0].upper() == "SAFE":  # SAFE.mozfun.f(...): NULL instead of an error
                call = exp.Anonymous(this="TRY", expressions=[call])
            node.replace(call)
    return tree


@lru_cache(maxsize=1)
def _engine_functions() -> frozenset[str]:
    import duckdb

    con = duckdb.connect()
    try:
        for statement in duckdb_routines.create_statements():
            con.execute(statement)
        names = con.execute("SELECT DISTINCT lower(function_name) FROM duckdb_functions()").fetchall()
    finally:
        con.close()
    return frozenset(n for (n,) in names)


def unresolved_functions(tree: exp.Expr) -> list[str]:
    """Each function the query calls that neither BigQuery's built-ins (as sqlglot reads them) nor
    the embedded engine define, as written, with why. BigQuery built-ins the embedded engine
    cannot run (UNSUPPORTED) are not listed: the query is valid, and running it here says so."""
    found: dict[str, str] = {}
    for node in tree.walk():
        name = call_name(node)
        if name is None or not isinstance(node, (exp.Dot, exp.Anonymous)):
            continue
        if name.split(".")[0].upper() in UNSUPPORTED:
            continue  # BigQuery built-ins the policy allows; the embedded engine names them when it runs
        shared = _shared(name)
        if shared is not None:
            if not duckdb_routines.known(shared):
                found.setdefault(name, "not one of Mozilla's functions the embedded engine implements ("
                                 + ", ".join(sorted(duckdb_routines.MACROS)) + ")")
        elif "." in name or name.lower() not in _engine_functions():
            found.setdefault(name, "the embedded engine (DuckDB) has no such function, and it is none of Mozilla's "
                             "functions pubdata implements; every query runs its SQL tests on the embedded engine")
    return [f"{name}: {why}" for name, why in found.items()]
