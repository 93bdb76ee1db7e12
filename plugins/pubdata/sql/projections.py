"""The columns each scope of a query produces, with * expanded through CTEs and subqueries.

Scopes are sqlglot's (sqlglot.optimizer.scope); a * over a warehouse table cannot be expanded
without the table's schema and raises Unresolved.
"""

from __future__ import annotations

import contextvars

from sqlglot import exp
from sqlglot.optimizer.scope import Scope

from pubdata.sql.parse import DIALECT

PROJECTIONS: contextvars.ContextVar[dict[int, object]] = contextvars.ContextVar("pubdata_sqlcheck_projections")
"""Projections per scope for the query being checked (scopes are rebuilt for every query)."""


class Unresolved(Exception):
    """A * over a warehouse table: its columns are unknown without the table's schema."""

    def __init__(self, what: str):
        super().__init__(what)
        self.what = what


def scope_for(scope: Scope) -> Scope:
    """Unwrap a parenthesized query to the scope that holds its projections."""
    while isinstance(scope.expression, exp.Subquery) and scope.subquery_scopes:
        scope = scope.subquery_scopes[0]
    return scope


def is_star(select: exp.Expr) -> bool:
    return isinstance(select, exp.Star) or (isinstance(select, exp.Column) and isinstance(select.this, exp.Star))


def star_sources(scope: Scope, star: exp.Expr) -> list[tuple[str, exp.Table | Scope]]:
    """The sources a * (or t.*) expands over, in FROM / JOIN order."""
    if isinstance(star, exp.Column) and star.table:
        src = scope.selected_sources.get(star.table)
        return [(star.table, src[1])] if src else []
    return [(name, src) for name, (_, src) in scope.selected_sources.items()]


def star_modifiers(star: exp.Expr) -> tuple[set[str], dict[str, exp.Expr]]:
    """BigQuery's * EXCEPT (...) and * REPLACE (... AS name)."""
    node = star.this if isinstance(star, exp.Column) else star
    except_ = {c.name for c in (node.args.get("except_") or node.args.get("except") or [])}
    replace = {a.alias: a.this for a in (node.args.get("replace") or []) if isinstance(a, exp.Alias)}
    return except_, replace


def using_columns(select: exp.Select) -> set[str]:
    return {c.name for join in select.args.get("joins") or [] for c in join.args.get("using") or []}


def scope_projections(
    scope: Scope, _seen: frozenset[int] = frozenset(), _cache: dict[int, object] | None = None
) -> list[tuple[str | None, exp.Expr]]:
    """The columns a scope produces, in order: (name or None when unnamed, projection producing it).

    A * is expanded through CTEs and subqueries; over a warehouse table it raises Unresolved,
    because only the warehouse knows that table's columns.
    """
    scope = scope_for(scope)
    cache = _cache if _cache is not None else PROJECTIONS.get(None)
    if cache is None:
        cache = {}
    cached = cache.get(id(scope))
    if isinstance(cached, Unresolved):
        raise cached
    if cached is not None:
        return cached  # type: ignore[return-value]
    if id(scope) in _seen:
        raise Unresolved("a recursive CTE")
    try:
        result = _expand_projections(scope, _seen | {id(scope)}, cache)
    except Unresolved as exc:
        cache[id(scope)] = exc
        raise
    cache[id(scope)] = result
    return result


def _expand_projections(scope: Scope, seen: frozenset[int], cache: dict[int, object]) -> list[tuple[str | None, exp.Expr]]:
    expression = scope.expression
    if isinstance(expression, exp.SetOperation):
        if not scope.set_operation_scopes:
            raise Unresolved("a set operation")
        return scope_projections(scope.set_operation_scopes[0], seen, cache)
    if isinstance(expression, exp.Unnest):
        alias = expression.args.get("alias")
        names = [c.name for c in alias.columns] if alias and alias.columns else []
        if not names and alias and alias.name:
            names = [alias.name]
        return [(n, expression) for n in names] or [(None, expression)]
    if not isinstance(expression, exp.Select):
        raise Unresolved(f"a {type(expression).__name__} source")
    out: list[tuple[str | None, exp.Expr]] = []
    for select in expression.selects:
        if is_star(select):
            except_, _ = star_modifiers(select)
            using, taken = using_columns(expression), set()
            for _, src in star_sources(scope, select):
                if not isinstance(src, Scope):
                    raise Unresolved(f"table {table_name(src)} ({select.sql(DIALECT)})")
                if pivots(src):
                    raise Unresolved(f"a PIVOT or UNPIVOT ({select.sql(DIALECT)})")
                for name, _ in scope_projections(src, seen, cache):
                    if name in except_ or (name in using and name in taken):
                        continue
                    taken.add(name)
                    out.append((name, select))
        elif isinstance(select, exp.Alias):
            out.append((select.alias, select))
        elif isinstance(select, (exp.Column, exp.Dot)):
            out.append((select.name or None, select))
        else:
            out.append((None, select))
    return out


def pivots(src: exp.Table | Scope) -> list[exp.Pivot]:
    """The PIVOT / UNPIVOT operators applied to a FROM source (on the table, or on the subquery)."""
    node: exp.Expr | None = src if isinstance(src, exp.Table) else scope_for(src).expression.parent
    if isinstance(node, (exp.Table, exp.Subquery)):
        return list(node.args.get("pivots") or [])
    return []


def output_names(scope: Scope) -> list[str | None]:
    return [name for name, _ in scope_projections(scope)]



def table_name(table: exp.Table) -> str:
    return ".".join(p for p in (table.catalog, table.db, table.name) if p)
