"""Small edits of parsed queries that the rewrites share (sql.rewrite, sql.rollup)."""

from __future__ import annotations

from sqlglot import exp

INTERNAL_OUTPUTS = ("_pubdata_units", "_pubdata_row", "_pubdata_disjoint")


def resolved_keys(select: exp.Select) -> list[exp.Expr]:
    """The GROUP BY expressions, with positions and output aliases replaced by what they stand for."""
    group = select.args.get("group")
    if group is None:
        return []
    aliases = {p.alias: p.unalias() for p in select.selects if isinstance(p, exp.Alias)}
    if group.args.get("all"):
        return [p.unalias() for p in select.selects
                if p.alias_or_name not in INTERNAL_OUTPUTS and not p.unalias().find(exp.AggFunc)]
    keys: list[exp.Expr] = []
    seen: set[str] = set()
    for key in group.expressions:
        if isinstance(key, exp.Literal) and key.is_int:
            key = select.selects[int(key.name) - 1].unalias()
        elif isinstance(key, exp.Column) and not key.table and key.name in aliases:
            key = aliases[key.name]
        text = key.sql("bigquery")
        if text not in seen:
            seen.add(text)
            keys.append(key)
    return keys


def define_cte_before(statement: exp.Query, name: str, body: exp.Query, user: exp.Expr) -> None:
    """Add `name AS (body)` to the statement's WITH, before the CTE holding `user` (a CTE reads
    only the ones before it), or last when `user` is in the main query."""
    cte = exp.CTE(this=body, alias=exp.TableAlias(this=exp.to_identifier(name)))
    ctes = statement.args.get("with_")
    if ctes is None:
        statement.set("with_", exp.With(expressions=[cte]))
        return
    enclosing = user.find_ancestor(exp.CTE)
    position = len(ctes.expressions)
    if enclosing is not None and enclosing in ctes.expressions:
        position = ctes.expressions.index(enclosing)
    ctes.expressions.insert(position, cte)
    cte.parent, cte.arg_key = ctes, "expressions"
