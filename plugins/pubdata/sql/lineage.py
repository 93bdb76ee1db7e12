"""Lineage: which warehouse columns flow into each output column of a query, and how.

A value stops being traced where it is reduced to a count; everything else still carries the
source value. Used to refuse outputs derived from identifiers and other forbidden fields.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

from sqlglot import exp
from sqlglot.optimizer.scope import Scope, find_all_in_scope

from pubdata.policy.forbidden import ForbiddenRule, forbidden_rule
from pubdata.sql.parse import DIALECT, Finding
from pubdata.sql.projections import (
    Unresolved,
    is_star,
    output_names,
    pivots,
    scope_for,
    scope_projections,
    star_modifiers,
    star_sources,
    table_name,
)

RULE_FORBIDDEN_LINEAGE = "forbidden_lineage"

_COUNT_REDUCERS: tuple[type[exp.Expr], ...] = (exp.Count, exp.CountIf, exp.ApproxDistinct)
_HLL_COUNTS = frozenset({"EXTRACT", "MERGE"})
_HLL_SKETCHES = frozenset({"INIT", "MERGE_PARTIAL"})
_DAY_OR_COARSER = frozenset({"DAY", "WEEK", "ISOWEEK", "MONTH", "QUARTER", "YEAR", "ISOYEAR"})
_EXTRACT_DAY_OR_COARSER = _DAY_OR_COARSER | {"DATE", "DAYOFWEEK", "DAYOFYEAR"}
_TRUNCS: tuple[type[exp.Expr], ...] = (exp.TimestampTrunc, exp.DatetimeTrunc, exp.DateTrunc)
_JSON_EXTRACTS: tuple[type[exp.Expr], ...] = (exp.JSONExtract, exp.JSONExtractScalar, exp.JSONExtractArray,
                                              exp.JSONValueArray)
ANY_FIELD = "*"
"""The field of a flow read at a JSON path computed at run time (or the whole document): any key."""


def _literal_keys(path: exp.Expr | None) -> tuple[str, ...]:
    """The keys of a literal JSON path ('$.a.b[0]' -> (a, b)); () for a computed path or the root alone."""
    if not isinstance(path, exp.JSONPath):
        return ()
    keys: list[str] = []
    for part in path.expressions:
        if isinstance(part, exp.JSONPathKey) and isinstance(part.this, str):
            keys.append(part.this)
        elif not isinstance(part, (exp.JSONPathRoot, exp.JSONPathSubscript)):
            return ()  # wildcards, recursive descent, filters: any key
    return tuple(keys)


@dataclass(frozen=True)
class _Flow:
    """A warehouse column whose value reaches an output column without being reduced to a count."""

    table: str | None
    column: str
    fields: tuple[str, ...]
    via: str
    day: bool = False
    sketch: bool = False

    @property
    def leaf(self) -> str:
        return self.fields[-1] if self.fields else self.column

    @property
    def path(self) -> str:
        return ".".join((self.column, *self.fields))


@dataclass(frozen=True)
class _Ctx:
    """How the value is transformed between the warehouse column and the output."""

    day: bool = False
    sketch: bool = False


def _hll(node: exp.Expr) -> str | None:
    if isinstance(node, exp.Dot) and isinstance(node.this, exp.Identifier) and node.this.name.upper() == "HLL_COUNT":
        inner = node.expression
        if isinstance(inner, exp.Anonymous):
            return str(inner.this).upper()
    return None


def _unit(node: exp.Expr) -> str:
    unit = node.args.get("unit")
    if isinstance(unit, exp.WeekStart):
        return "WEEK"
    return unit.name.upper() if isinstance(unit, exp.Expr) else str(unit or "").upper()


def _truncates_to_day(node: exp.Expr) -> bool:
    if isinstance(node, exp.Date):
        return True
    if isinstance(node, (exp.Cast, exp.TryCast)):
        return node.to.is_type("date")
    if isinstance(node, _TRUNCS):
        return _unit(node) in _DAY_OR_COARSER
    if isinstance(node, exp.Extract):
        return node.this.name.upper() in _EXTRACT_DAY_OR_COARSER
    return False


_Key = tuple[int, "str | int", tuple[str, ...], _Ctx]


class _Lineage:
    """Follows output columns through CTEs, subqueries, aliases and functions to warehouse columns.

    A value stops being traced where it is reduced to a count (COUNT, COUNTIF, APPROX_COUNT_DISTINCT,
    HLL_COUNT.EXTRACT / MERGE): that is how client_count is computed. Everything else (hashes,
    substrings, CASE, MIN/MAX, concatenation, window partitions) still carries the source value.
    """

    def __init__(self) -> None:
        self._memo: dict[_Key, frozenset[_Flow]] = {}
        self._active: set[_Key] = set()

    def output(self, scope: Scope, column: str | int, fields: tuple[str, ...], ctx: _Ctx) -> frozenset[_Flow]:
        """Warehouse columns flowing into one output column (by name or position) of a scope."""
        scope = scope_for(scope)
        key = (id(scope), column, fields, ctx)
        if key in self._memo:
            return self._memo[key]
        if key in self._active:  # a recursive CTE: its other branch carries the flows
            return frozenset()
        self._active.add(key)
        try:
            flows = frozenset(self._output(scope, column, fields, ctx))
        finally:
            self._active.discard(key)
        self._memo[key] = flows
        return flows

    def _output(self, scope: Scope, column: str | int, fields: tuple[str, ...], ctx: _Ctx) -> Iterator[_Flow]:
        expression = scope.expression
        if isinstance(expression, exp.SetOperation):
            if isinstance(column, str):
                names = self._names(scope)
                column = names.index(column) if names and column in names else -1
            if column < 0:
                return
            for branch in scope.set_operation_scopes:
                yield from self.output(branch, column, fields, ctx)
            return
        if isinstance(expression, exp.Unnest):
            for arg in expression.expressions:
                yield from self.walk(arg, scope, ctx, expression.sql(DIALECT))
            return
        if not isinstance(expression, exp.Select):
            return
        if isinstance(column, int):
            try:
                projections = scope_projections(scope)
            except Unresolved:
                # Positions are still known up to the first *.
                selects = expression.selects
                if column < len(selects) and not any(is_star(s) for s in selects[: column + 1]):
                    yield from self._projection(selects[column], scope, fields, ctx)
                return
            if column >= len(projections):
                return
            name, projection = projections[column]
            if not is_star(projection) or name is None:
                yield from self._projection(projection, scope, fields, ctx)
                return
            column = name
        for select in expression.selects:
            if not is_star(select) and select.alias_or_name == column:
                yield from self._projection(select, scope, fields, ctx)
                return
        for select in expression.selects:
            if not is_star(select):
                continue
            except_, replace = star_modifiers(select)
            if column in except_:
                continue
            if column in replace:
                yield from self.walk(replace[column], scope, ctx, f"{replace[column].sql(DIALECT)} AS {column}")
                continue
            for _, src in star_sources(scope, select):
                if isinstance(src, exp.Table) or self._may_provide(src, column):
                    yield from self._from_source(src, column, fields, ctx, select.sql(DIALECT))

    @staticmethod
    def _names(scope: Scope) -> list[str | None]:
        try:
            return output_names(scope)
        except Unresolved:
            return []

    def _projection(self, select: exp.Expr, scope: Scope, fields: tuple[str, ...], ctx: _Ctx) -> Iterator[_Flow]:
        inner = select.this if isinstance(select, exp.Alias) else select
        via = select.sql(DIALECT)
        if fields and isinstance(inner, exp.Column) and not isinstance(inner.this, exp.Star):
            yield from self.column(inner, scope, ctx, via, fields)
        else:
            yield from self.walk(inner, scope, ctx, via)

    def walk(self, node: exp.Expr, scope: Scope, ctx: _Ctx, via: str) -> Iterator[_Flow]:
        """Warehouse columns whose values reach the result of expression `node`."""
        if isinstance(node, _COUNT_REDUCERS) or _hll(node) in _HLL_COUNTS:
            # The values counted are reduced to a number; what decides whether a row is counted is not:
            # COUNTIF(client_id = 'x') tells whether x is in the row.
            for condition in _conditions(node):
                yield from self.walk(condition, scope, ctx, via)
            return
        if isinstance(node, exp.Window):
            # PARTITION BY chooses whose rows the window reads, not the value: SUM(v) OVER (PARTITION
            # BY client_id) is one client's total. ORDER BY still ranks values, so it is followed.
            yield from self.walk(node.this, scope, ctx, via)
            order = node.args.get("order")
            for key in order.expressions if order is not None else []:
                yield from self.walk(key, scope, ctx, via)
            return
        if _hll(node) in _HLL_SKETCHES:
            ctx = _Ctx(day=ctx.day, sketch=True)
        elif _truncates_to_day(node):
            ctx = _Ctx(day=True, sketch=ctx.sketch)
        if isinstance(node, exp.Column):
            if isinstance(node.this, exp.Star):
                for _, src in star_sources(scope, node):
                    yield from self._whole_source(src, ctx, via)
            else:
                yield from self.column(node, scope, ctx, via, ())
            return
        if isinstance(node, exp.Dot) and isinstance(node.this, (exp.Column, exp.Dot)):
            # a.b.c.d.e: a column followed by struct fields
            fields: list[str] = []
            current: exp.Expr = node
            while isinstance(current, exp.Dot):
                fields.insert(0, current.expression.name)
                current = current.this
            if isinstance(current, exp.Column):
                yield from self.column(current, scope, ctx, via, tuple(fields))
                return
        if isinstance(node, _JSON_EXTRACTS):
            # JSON_VALUE(event_extra, '$.url') publishes the url key: trace it as a field. A path
            # computed when the query runs, or the whole document, may reach any key: ANY_FIELD.
            path = node.expression
            keys = _literal_keys(path)
            if keys and isinstance(node.this, exp.Column):
                yield from self.column(node.this, scope, ctx, via, keys)
                return
            if not keys:
                for flow in self.walk(node.this, scope, ctx, via):
                    yield dataclasses.replace(flow, fields=(*flow.fields, ANY_FIELD))
                if path is not None and not isinstance(path, exp.JSONPath):
                    yield from self.walk(path, scope, ctx, via)
                return
        if isinstance(node, (exp.Select, exp.SetOperation, exp.Subquery)):
            sub = self._subquery_scope(node, scope)
            if sub is not None:
                names = self._names(sub)
                count = len(names) or len(getattr(scope_for(sub).expression, "selects", None) or [])
                for i in range(count):
                    yield from self.output(sub, i, (), ctx)
                return
        for child in node.iter_expressions():
            yield from self.walk(child, scope, ctx, via)

    @staticmethod
    def _subquery_scope(node: exp.Expr, scope: Scope) -> Scope | None:
        targets = {id(node)} | ({id(node.this)} if isinstance(node, exp.Subquery) else set())
        for sub in scope.subquery_scopes:
            if id(sub.expression) in targets:
                return sub
        return None

    def column(self, col: exp.Column, scope: Scope, ctx: _Ctx, via: str, fields: tuple[str, ...]) -> Iterator[_Flow]:
        """Resolve a column reference the way BigQuery does: a source alias first, then a column
        of one of the sources, then a whole row; unresolved names go to the enclosing query."""
        parts = [p.name for p in col.parts]
        current: Scope | None = scope
        while current is not None:
            selected = {name: src for name, (_, src) in current.selected_sources.items()}
            if len(parts) > 1 and parts[0] in selected:
                yield from self._from_source(selected[parts[0]], parts[1], tuple(parts[2:]) + fields, ctx, via)
                return
            name, rest = parts[0], tuple(parts[1:]) + fields
            providers: list[exp.Table | Scope] = [
                s for s in selected.values() if isinstance(s, Scope) and name in self._names(s)]
            if not providers and name in selected:
                # TO_JSON_STRING(t), STRUCT(t): the alias of a source used as a value is a whole row.
                yield from self._whole_source(selected[name], ctx, via)
                return
            if not providers:
                providers = [s for s in selected.values() if self._may_provide(s, name)]
            if providers:
                for src in providers:
                    yield from self._from_source(src, name, rest, ctx, via)
                return
            current = current.parent
        yield _Flow(None, parts[0], tuple(parts[1:]) + fields, via, ctx.day, ctx.sketch)

    def _may_provide(self, src: exp.Table | Scope, name: str) -> bool:
        """A warehouse table, or a query with a * over one, may hold any column."""
        if isinstance(src, exp.Table) or name in _pivot_outputs(src) or "*" in _pivot_outputs(src):
            return True
        try:
            return name in output_names(src)
        except Unresolved:
            return True

    def _from_source(
        self, src: exp.Table | Scope, column: str, fields: tuple[str, ...], ctx: _Ctx, via: str
    ) -> Iterator[_Flow]:
        operators = pivots(src)
        produced = _pivot_outputs(src)
        if operators and (column in produced or "*" in produced):
            # A PIVOT or UNPIVOT output carries the values of every column the operator reads.
            for pivot in operators:
                for name in sorted({c.name for c in pivot.find_all(exp.Column)} | _unpivot_names(pivot)):
                    if name not in produced:
                        yield from self._from_source(src, name, (), ctx, f"{via}, through {pivot.sql(DIALECT)}")
            return
        if isinstance(src, exp.Table):
            yield _Flow(table_name(src), column, fields, via, ctx.day, ctx.sketch)
        elif isinstance(scope_for(src).expression, exp.Unnest):
            # An UNNEST element carries the array it came from; a field of it is still that array.
            for flow in self.output(src, column, (), ctx):
                yield flow if flow.fields or not fields else _Flow(
                    flow.table, flow.column, fields, flow.via, flow.day, flow.sketch
                )
        else:
            yield from self.output(src, column, fields, ctx)

    def _whole_source(self, src: exp.Table | Scope, ctx: _Ctx, via: str) -> Iterator[_Flow]:
        """A whole row (t.* inside an expression, or t as a value) carries every column of its source."""
        if isinstance(src, exp.Table):
            yield _Flow(table_name(src), "*", (), via, ctx.day, ctx.sketch)
            return
        try:
            projections = scope_projections(src)
        except Unresolved:
            for _, (_, inner) in scope_for(src).selected_sources.items():
                yield from self._whole_source(inner, ctx, via)
            return
        for i in range(len(projections)):
            yield from self.output(src, i, (), ctx)


def _unpivot_names(pivot: exp.Pivot) -> set[str]:
    """Columns an UNPIVOT names in its IN list as bare identifiers (sqlglot keeps some as Identifier)."""
    out: set[str] = set()
    for field in pivot.args.get("fields") or []:
        for item in field.expressions if isinstance(field, exp.In) else []:
            for ident in item.find_all(exp.Identifier):
                if not isinstance(ident.parent, (exp.Column, exp.PivotAlias)):
                    out.add(ident.name)
    return out


def _conditions(node: exp.Expr) -> Iterator[exp.Expr]:
    """The outermost predicates inside a count (COUNTIF's condition, IF(condition, x, NULL))."""
    stack = list(node.iter_expressions())
    while stack:
        current = stack.pop()
        if _is_null_test(current):
            continue  # whether a value is there tells nothing about which value it is
        if isinstance(current, (exp.Predicate, exp.Connector, exp.Not)):
            yield current
            continue
        stack.extend(current.iter_expressions())


def _is_null_test(node: exp.Expr) -> bool:
    inner = node.this if isinstance(node, exp.Not) else node
    return isinstance(inner, exp.Is) and isinstance(inner.expression, exp.Null)


def _pivot_outputs(src: exp.Table | Scope) -> set[str]:
    """Names the source's PIVOT / UNPIVOT operators produce (value and name columns, pivoted cells)."""
    out: set[str] = set()
    for pivot in pivots(src):
        if pivot.args.get("unpivot"):
            for value in pivot.expressions:
                out |= {i.name for i in value.find_all(exp.Identifier)}
            for field in pivot.args.get("fields") or []:
                if isinstance(field, exp.In) and isinstance(field.this, (exp.Identifier, exp.Column)):
                    out.add(field.this.name)
        else:
            columns = pivot.args.get("columns") or []
            out |= {c.name for c in columns} if columns else {"*"}  # "*": names unknown, any may be a cell
    return out


def check_lineage(root: Scope, rules: tuple[ForbiddenRule, ...]) -> list[Finding]:
    lineage = _Lineage()
    findings = _identifier_tests(lineage, root, rules)
    try:
        names = output_names(root)
    except Unresolved:
        # The output-columns rule reports the *; still trace the projections before it.
        query = scope_for(root).expression
        names = [None] * len(getattr(query, "selects", None) or [])
    reported: set[tuple[str, str, bool]] = set()
    for i, name in enumerate(names):
        label = name if name is not None else f"#{i + 1}"
        flows = sorted(lineage.output(root, i, (), _Ctx()), key=lambda f: (f.table is None, f.table or "", f.path, f.via))
        for flow in flows:
            finding = _flow_finding(label, flow, rules)
            if finding is None:
                continue
            key = (label, flow.path, flow.sketch)
            same_column = name is not None and name == flow.leaf and not flow.sketch and forbidden_rule(name, rules)
            if key in reported or same_column:
                continue  # reported once already, or as a forbidden output column
            reported.add(key)
            findings.append(finding)
    return findings


_COMPARISONS: tuple[type[exp.Expr], ...] = (
    exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.NullSafeEQ, exp.NullSafeNEQ, exp.Like, exp.ILike,
    exp.In, exp.Between, exp.RegexpLike, exp.StartsWith, exp.EndsWith, exp.Contains, exp.Glob, exp.SimilarTo,
)


def _compared(node: exp.Expr) -> list[exp.Expr]:
    if isinstance(node, exp.In):
        query = node.args.get("query")
        unnest = node.args.get("unnest")
        return [node.this, *node.expressions, *(q for q in (query, unnest) if q is not None)]
    if isinstance(node, exp.Between):
        return [node.this, node.args["low"], node.args["high"]]
    return [v for v in (node.this, node.args.get("expression")) if isinstance(v, exp.Expr)]


def _identifier_tests(lineage: _Lineage, root: Scope, rules: tuple[ForbiddenRule, ...]) -> list[Finding]:
    """An identifier compared with a value picks out one person: COUNTIF(client_id = 'x'), HAVING
    LOGICAL_OR(client_id = 'x'), a join that keeps one client's row, WHERE SUBSTR(client_id, 1, 1) = 'a'.
    Identifiers may only be matched with identifiers of another relation (a join on client_id,
    IN (SELECT client_id ...)) or tested for NULL."""
    identifying = tuple(r for r in rules if r.identifies)
    findings: list[Finding] = []
    node: exp.Expr
    for scope in root.traverse():
        for node in find_all_in_scope(scope.expression, _COMPARISONS):  # type: ignore[arg-type]
            sides = _compared(node)
            reads = [_identifier_read(lineage, side, scope, identifying) for side in sides]
            if not any(reads):
                continue
            if all(reads) and all(_bare(side) for side in sides):
                continue  # a key equality between relations
            path = next(r for r in reads if r)
            findings.append(Finding(
                RULE_FORBIDDEN_LINEAGE,
                f"{_short(node)} compares {path} with a value: a condition on one person's identifier "
                "publishes whether that person is in a row, or which row.",
                "match identifiers only with the same identifier of another relation (a join on it, or "
                "IN (SELECT client_id FROM ...)), or test them for NULL"))
    return findings


def _identifier_read(lineage: _Lineage, side: exp.Expr, scope: Scope, rules: tuple[ForbiddenRule, ...]) -> str | None:
    for flow in lineage.walk(side, scope, _Ctx(), side.sql(DIALECT)):
        if forbidden_rule(flow.leaf, rules):
            return flow.path
    return None


def _bare(side: exp.Expr) -> bool:
    """A column as it is, or a subquery selecting one (IN (SELECT client_id FROM ...))."""
    if isinstance(side, exp.Column):
        return True
    query = side.this if isinstance(side, exp.Subquery) else side
    if isinstance(query, exp.Select):
        return len(query.selects) == 1 and isinstance(query.selects[0].unalias(), exp.Column)
    return False


def _short(node: exp.Expr, limit: int = 70) -> str:
    text = " ".join(node.sql(DIALECT).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _reason(finding: Finding) -> str:
    return finding.message.split("): ", 1)[-1]


def _flow_finding(output: str, flow: _Flow, rules: tuple[ForbiddenRule, ...]) -> Finding | None:
    source = f"{flow.path} of {flow.table}" if flow.table else flow.path
    if flow.column == "*":
        return Finding(
            RULE_FORBIDDEN_LINEAGE,
            f"output column {output} carries whole rows of {flow.table} (via {flow.via}), identifiers included.",
            "select only the reviewed columns, never a whole row",
        )
    if flow.fields and flow.fields[-1] == ANY_FIELD:
        return Finding(
            RULE_FORBIDDEN_LINEAGE,
            f"output column {output} reads {flow.column} of {flow.table or 'the query'} as JSON at a path computed "
            f"when the query runs, or as a whole document (via {flow.via}): any field of it could be published, "
            "identifiers included.",
            "read each field with a literal JSON path, e.g. JSON_VALUE(event_extra, '$.reason')",
        )
    rule = forbidden_rule(flow.leaf, rules)
    if rule is None:
        return None
    if flow.sketch:
        return Finding(
            RULE_FORBIDDEN_LINEAGE,
            f"output column {output} is a sketch of {source} (via {flow.via}): sketches are probabilistic "
            "aggregates (aggregation level 4) from which identifiers can be tested.",
            "publish the count instead: HLL_COUNT.EXTRACT(...) or COUNT(DISTINCT ...)",
        )
    if flow.day and rule.allowed_at_day_resolution:
        return None
    return Finding(
        RULE_FORBIDDEN_LINEAGE,
        f"output column {output} derives from {source} (via {flow.via}): {rule.reason}.",
        rule.fix,
    )
