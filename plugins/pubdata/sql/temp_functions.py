"""`CREATE TEMP FUNCTION` preambles (SQL UDFs): inlined into the query they precede.

A reviewed query may start, as in bigquery-etl, with temporary SQL functions. Every call is
replaced by the function's body with its parameters replaced by the call's arguments, so the
static checks follow the arguments through it like through any expression (a function returning
its argument still publishes that argument: an identifier passed in is still an identifier), and
each warehouse runs one plain SELECT. What cannot be followed this way is refused with the reason:
JavaScript functions, table functions, recursion, a parameter shadowed inside the body, a
persistent CREATE FUNCTION.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect

_BUILT_IN = frozenset(Dialect.get_or_raise("bigquery").parser_class.FUNCTIONS)
"""Names sqlglot parses as BigQuery's own functions: a call by such a name never reaches a temp function."""


class FunctionError(ValueError):
    """A temporary function that cannot be inlined; the message names it and says why."""


def is_function_definition(statement: exp.Expr) -> bool:
    return isinstance(statement, exp.Create) and str(statement.args.get("kind") or "").upper() in (
        "FUNCTION", "TABLE FUNCTION")


def _definition(statement: exp.Create) -> TempFunction:
    udf = statement.this
    name = udf.this.name if isinstance(udf, exp.UserDefinedFunction) and isinstance(udf.this, exp.Expr) else udf.name
    properties = statement.args.get("properties")
    props = properties.expressions if properties is not None else []
    if str(statement.args.get("kind") or "").upper() != "FUNCTION" or any(
            isinstance(p, exp.ReturnsProperty) and p.args.get("is_table") for p in props):
        raise FunctionError(f"{name}: table functions cannot be inlined; write the query as a CTE instead")
    if not any(isinstance(p, exp.TemporaryProperty) for p in props):
        raise FunctionError(f"{name}: a reviewed query may define only TEMP functions (CREATE TEMP FUNCTION); "
                            "a persistent function would change the warehouse")
    if name.upper() in _BUILT_IN:
        raise FunctionError(f"{name}: a function of BigQuery has this name, so calls would not reach the temporary "
                            "one; rename it")
    language = next((p for p in props if isinstance(p, exp.LanguageProperty)), None)
    if language is not None and language.name.lower() != "sql":
        raise FunctionError(f"{name}: a {language.name} function cannot be followed by the static checks nor run on "
                            "the embedded engine; write it in SQL")
    body = statement.expression
    if not isinstance(body, exp.Expr) or isinstance(body, exp.Literal):
        raise FunctionError(f"{name}: its body is not a SQL expression")
    params = tuple(p.name for p in udf.expressions) if isinstance(udf, exp.UserDefinedFunction) else ()
    lowered = {p.lower() for p in params}
    for node in body.walk():
        names = [node.alias] if isinstance(node, exp.Alias) else []
        if isinstance(node, exp.TableAlias):
            names = [node.name, *(c.name for c in node.columns)]
        shadowed = next((n for n in names if n and n.lower() in lowered), None)
        if shadowed:
            raise FunctionError(f"{name}: the name {shadowed} is both a parameter and an alias in the body, so "
                                "the parameter cannot be followed; rename one")
    return TempFunction(name, params, body)


MAX_INLINED_NODES = 20_000
"""Expressions the query may hold once its functions are inlined. A function calling another
several times multiplies its size at each level (ten short lines can expand to a billion
nodes); a query past this bound is refused before it is built, so no declaration can stall the
checks, and with them the DAG parse every dataset shares."""


@dataclass
class TempFunction:
    name: str
    params: tuple[str, ...]
    body: exp.Expr

    @cached_property
    def size(self) -> int:
        return _size(self.body)

    @cached_property
    def uses(self) -> dict[str, int]:
        """How many times the body reads each parameter."""
        counts = {p.lower(): 0 for p in self.params}
        for column in self.body.find_all(exp.Column):
            first = column.parts[0].name.lower() if column.parts else ""
            if first in counts:
                counts[first] += 1
        return counts


def _size(tree: exp.Expr) -> int:
    return sum(1 for _ in tree.walk())


def _substitute(function: TempFunction, args: list[exp.Expr]) -> exp.Expr:
    """The body with each parameter replaced by its argument (struct fields of it kept)."""
    body = function.body.copy()
    index = {p.lower(): a for p, a in zip(function.params, args, strict=True)}
    for column in list(body.find_all(exp.Column)):
        parts = column.parts
        arg = index.get(parts[0].name.lower()) if parts else None
        if arg is None:
            continue
        value: exp.Expr = exp.Paren(this=arg.copy())
        for field in parts[1:]:
            value = exp.Dot(this=value, expression=field.copy())
        if column is body:
            body = value
        else:
            column.replace(value)
    return exp.Paren(this=body) if not isinstance(body, exp.Paren) else body


def _inline(tree: exp.Expr, functions: dict[str, TempFunction], where: str) -> exp.Expr:
    """`tree` with every call inlined, innermost first (so `f(g(x))` inlines both)."""
    total = _size(tree)
    # Reversed pre-order: every node comes after its descendants, so a call's arguments are
    # already inlined when the call is.
    for node in reversed(list(tree.walk())):
        if not isinstance(node, exp.Anonymous) or isinstance(node.parent, exp.Dot):
            continue
        function = functions.get(node.name.lower())
        if function is None:
            continue
        args = list(node.expressions)
        if len(args) != len(function.params):
            raise FunctionError(f"{function.name} takes {len(function.params)} argument(s), called with "
                                f"{len(args)}: {node.sql('bigquery')[:200]}")
        grown = function.size + sum(function.uses[p.lower()] * (_size(a) + 1) for p, a in zip(function.params, args, strict=True))
        total += grown - _size(node)
        if total > MAX_INLINED_NODES:
            raise FunctionError(
                f"{function.name}: inlining it in {where} makes that more than {MAX_INLINED_NODES:,} expressions "
                "(functions calling functions multiply their size); write the repeated part once, in a CTE")
        inlined = _substitute(function, args)
        if node is tree:
            tree = inlined
        else:
            node.replace(inlined)
    return tree


def inline(definitions: list[exp.Expr], query: exp.Query) -> exp.Query:
    """The query with every call of the preamble's functions replaced by its body."""
    functions: dict[str, TempFunction] = {}
    for statement in definitions:
        assert isinstance(statement, exp.Create)
        function = _definition(statement)
        key = function.name.lower()
        if key in functions:
            raise FunctionError(f"{function.name} is defined twice")
        # A body may call the functions defined before it, never itself or a later one.
        body = _inline(function.body.copy(), functions, f"the body of {function.name}")
        if any(isinstance(n, exp.Anonymous) and n.name.lower() == key for n in body.walk()):
            raise FunctionError(f"{function.name} calls itself; recursive functions cannot be inlined")
        functions[key] = TempFunction(function.name, function.params, body)
    result = _inline(query, functions, "the query")
    assert isinstance(result, exp.Query)
    return result
