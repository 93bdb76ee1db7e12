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

from sqlglot import exp


class FunctionError(ValueError):
    """A temporary function that cannot be inlined; the message names it and says why."""


@dataclass(frozen=True)
class TempFunction:
    name: str
    params: tuple[str, ...]
    body: exp.Expr


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


def _inline(tree: exp.Expr, functions: dict[str, TempFunction]) -> exp.Expr:
    for node in list(tree.walk()):
        if not isinstance(node, exp.Anonymous) or isinstance(node.parent, exp.Dot):
            continue
        function = functions.get(node.name.lower())
        if function is None:
            continue
        if len(node.expressions) != len(function.params):
            raise FunctionError(f"{function.name} takes {len(function.params)} argument(s), called with "
                                f"{len(node.expressions)}: {node.sql('bigquery')}")
        inlined = _substitute(function, list(node.expressions))
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
        body = _inline(function.body.copy(), functions)
        if any(isinstance(n, exp.Anonymous) and n.name.lower() == key for n in body.walk()):
            raise FunctionError(f"{function.name} calls itself; recursive functions cannot be inlined")
        functions[key] = TempFunction(function.name, function.params, body)
    result = _inline(query, functions)
    assert isinstance(result, exp.Query)
    return result
