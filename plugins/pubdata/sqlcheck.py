"""Static checks of a reviewed query (BigQuery SQL) against its declaration.

The steward reviews a declaration; these checks make sure the query publishes what was reviewed
and nothing else: the declared columns, no forbidden column (as a column or derived from one),
only the declared source tables, and the same result every time it runs for a date. They run
before any data is read, so a bad query fails `pubdata check`, not a production run.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Iterator
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, SqlglotError, TokenError
from sqlglot.optimizer.scope import Scope, build_scope

from pubdata.declaration import DeclarationFile
from pubdata.policy import ForbiddenRule, forbidden_rule, forbidden_rules

DIALECT = "bigquery"

RULE_PARSE = "parse"
RULE_OUTPUT_COLUMNS = "output_columns"
RULE_FORBIDDEN_COLUMN = "forbidden_column"
RULE_FORBIDDEN_LINEAGE = "forbidden_lineage"
RULE_SOURCE_TABLES = "source_tables"
RULE_NONDETERMINISTIC = "nondeterministic"

NONDETERMINISTIC_FUNCTIONS = frozenset({
    "RAND", "RANDOM", "RANDN", "RANDSTR", "UUID", "GENERATE_UUID", "NEWID",
    "CURRENT_DATE", "CURRENT_DATETIME", "CURRENT_TIME", "CURRENT_TIMESTAMP", "NOW", "SYSDATE",
    "SYSTIMESTAMP", "GETDATE", "LOCALTIME", "LOCALTIMESTAMP",
    "SESSION_USER", "CURRENT_USER",
})
"""Functions whose value changes between runs: a backfill would not reproduce what was published."""

_COUNT_REDUCERS: tuple[type[exp.Expr], ...] = (exp.Count, exp.CountIf, exp.ApproxDistinct)
_HLL_COUNTS = frozenset({"EXTRACT", "MERGE"})
_HLL_SKETCHES = frozenset({"INIT", "MERGE_PARTIAL"})
_DAY_OR_COARSER = frozenset({"DAY", "WEEK", "ISOWEEK", "MONTH", "QUARTER", "YEAR", "ISOYEAR"})
_EXTRACT_DAY_OR_COARSER = _DAY_OR_COARSER | {"DATE", "DAYOFWEEK", "DAYOFYEAR"}
_TRUNCS: tuple[type[exp.Expr], ...] = (exp.TimestampTrunc, exp.DatetimeTrunc, exp.DateTrunc)
_JSON_EXTRACTS: tuple[type[exp.Expr], ...] = (exp.JSONExtract, exp.JSONExtractScalar)


@dataclass(frozen=True)
class Finding:
    """One way the query departs from its declaration or the policy, and what to change."""

    rule: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.message} Fix: {self.fix}"


def check_query(sql: str, spec: DeclarationFile) -> list[Finding]:
    """Every finding for `sql` as the reviewed query of `spec`; an empty list means it passes."""
    statement, findings = _parse(sql)
    if statement is None:
        return findings
    token = _PROJECTIONS.set({})
    try:
        root = build_scope(statement)
        if root is None:
            raise SqlglotError("no SELECT found")
        rules = forbidden_rules()
        findings += _check_output_columns(root, spec, rules)
        findings += _check_lineage(root, rules)
        findings += _check_source_tables(root, spec)
    except SqlglotError as exc:
        problem = str(exc)
        if problem.startswith("Alias already used:"):
            name = problem.split(":", 1)[1].strip()
            problem = f"two sources in one FROM share the name {name!r}" if name else "two subqueries in one FROM have no alias"
        findings.append(Finding(
            RULE_PARSE,
            f"the query parses but its structure cannot be analysed: {problem}.",
            "make every source and column traceable: give each subquery in FROM an alias, give CTEs and tables "
            "distinct names, and qualify ambiguous columns",
        ))
    finally:
        _PROJECTIONS.reset(token)
    findings += _check_nondeterminism(statement)
    return findings


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


_TOKEN_RE = re.compile(r"<Token token_type: TokenType\.\w+, text: (.*?), line: \d+, col: \d+.*?>")


def _token_words(match: re.Match[str]) -> str:
    text = match.group(1)
    return "the end of the query" if text == "SENTINEL" else repr(text)


def _parse(sql: str) -> tuple[exp.Query | None, list[Finding]]:
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


# --------------------------------------------------------------------------------------------
# Output columns
# --------------------------------------------------------------------------------------------


_PROJECTIONS: contextvars.ContextVar[dict[int, object]] = contextvars.ContextVar("pubdata_sqlcheck_projections")
"""Projections per scope for the query being checked (scopes are rebuilt for every query)."""


class _Unresolved(Exception):
    """A * over a warehouse table: its columns are unknown without the table's schema."""

    def __init__(self, what: str):
        super().__init__(what)
        self.what = what


def _scope_for(scope: Scope) -> Scope:
    """Unwrap a parenthesized query to the scope that holds its projections."""
    while isinstance(scope.expression, exp.Subquery) and scope.subquery_scopes:
        scope = scope.subquery_scopes[0]
    return scope


def _is_star(select: exp.Expr) -> bool:
    return isinstance(select, exp.Star) or (isinstance(select, exp.Column) and isinstance(select.this, exp.Star))


def _star_sources(scope: Scope, star: exp.Expr) -> list[tuple[str, exp.Table | Scope]]:
    """The sources a * (or t.*) expands over, in FROM / JOIN order."""
    if isinstance(star, exp.Column) and star.table:
        src = scope.selected_sources.get(star.table)
        return [(star.table, src[1])] if src else []
    return [(name, src) for name, (_, src) in scope.selected_sources.items()]


def _star_modifiers(star: exp.Expr) -> tuple[set[str], dict[str, exp.Expr]]:
    """BigQuery's * EXCEPT (...) and * REPLACE (... AS name)."""
    node = star.this if isinstance(star, exp.Column) else star
    except_ = {c.name for c in (node.args.get("except_") or node.args.get("except") or [])}
    replace = {a.alias: a.this for a in (node.args.get("replace") or []) if isinstance(a, exp.Alias)}
    return except_, replace


def _using_columns(select: exp.Select) -> set[str]:
    return {c.name for join in select.args.get("joins") or [] for c in join.args.get("using") or []}


def _projections(
    scope: Scope, _seen: frozenset[int] = frozenset(), _cache: dict[int, object] | None = None
) -> list[tuple[str | None, exp.Expr]]:
    """The columns a scope produces, in order: (name or None when unnamed, projection producing it).

    A * is expanded through CTEs and subqueries; over a warehouse table it raises _Unresolved,
    because only the warehouse knows that table's columns.
    """
    scope = _scope_for(scope)
    cache = _cache if _cache is not None else _PROJECTIONS.get(None)
    if cache is None:
        cache = {}
    cached = cache.get(id(scope))
    if isinstance(cached, _Unresolved):
        raise cached
    if cached is not None:
        return cached  # type: ignore[return-value]
    if id(scope) in _seen:
        raise _Unresolved("a recursive CTE")
    try:
        result = _expand_projections(scope, _seen | {id(scope)}, cache)
    except _Unresolved as exc:
        cache[id(scope)] = exc
        raise
    cache[id(scope)] = result
    return result


def _expand_projections(scope: Scope, seen: frozenset[int], cache: dict[int, object]) -> list[tuple[str | None, exp.Expr]]:
    expression = scope.expression
    if isinstance(expression, exp.SetOperation):
        if not scope.set_operation_scopes:
            raise _Unresolved("a set operation")
        return _projections(scope.set_operation_scopes[0], seen, cache)
    if isinstance(expression, exp.Unnest):
        alias = expression.args.get("alias")
        names = [c.name for c in alias.columns] if alias and alias.columns else []
        if not names and alias and alias.name:
            names = [alias.name]
        return [(n, expression) for n in names] or [(None, expression)]
    if not isinstance(expression, exp.Select):
        raise _Unresolved(f"a {type(expression).__name__} source")
    out: list[tuple[str | None, exp.Expr]] = []
    for select in expression.selects:
        if _is_star(select):
            except_, _ = _star_modifiers(select)
            using, taken = _using_columns(expression), set()
            for _, src in _star_sources(scope, select):
                if not isinstance(src, Scope):
                    raise _Unresolved(f"table {_table_name(src)} ({select.sql(DIALECT)})")
                for name, _ in _projections(src, seen, cache):
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


def _output_names(scope: Scope) -> list[str | None]:
    return [name for name, _ in _projections(scope)]


def _check_output_columns(root: Scope, spec: DeclarationFile, rules: tuple[ForbiddenRule, ...]) -> list[Finding]:
    declared = spec.policy.columns
    try:
        projections = _projections(root)
    except _Unresolved as exc:
        return [Finding(
            RULE_OUTPUT_COLUMNS,
            f"the output columns cannot be determined from the query: a * reads {exc.what}.",
            "list the published columns explicitly in the final SELECT",
        )]
    names = [name for name, _ in projections]
    findings: list[Finding] = []
    for i, (name, projection) in enumerate(projections):
        if name is None:
            expr = projection.sql(DIALECT)
            findings.append(Finding(
                RULE_OUTPUT_COLUMNS,
                f"output column {i + 1} ({expr}) has no name.",
                "give it the declared name with AS <name>",
            ))
    named = [n for n in names if n is not None]
    dupes = sorted({n for n in named if named.count(n) > 1})
    if dupes:
        findings.append(Finding(
            RULE_OUTPUT_COLUMNS,
            f"output column {', '.join(dupes)} appears more than once.",
            "keep one column per declared dimension or metric",
        ))
    missing = [n for n in declared if n not in named]
    extra = [n for n in dict.fromkeys(named) if n not in declared]
    case_only = {n: d for n in extra for d in missing if n.lower() == d.lower()}
    for n, d in case_only.items():
        findings.append(Finding(
            RULE_OUTPUT_COLUMNS,
            f"output column {n} differs from declared {d} only in case; published names are case-sensitive.",
            f"write it as {d}",
        ))
    missing = [d for d in missing if d not in case_only.values()]
    extra = [n for n in extra if n not in case_only]
    if missing:
        findings.append(Finding(
            RULE_OUTPUT_COLUMNS,
            f"declared but not produced by the query: {', '.join(missing)}.",
            "select them in the final SELECT, or remove them from policy.dimensions / policy.metrics",
        ))
    if extra:
        findings.append(Finding(
            RULE_OUTPUT_COLUMNS,
            f"produced by the query but not declared: {', '.join(extra)}.",
            "declare them as dimensions (with a category) or metrics so the steward reviews them, or drop them",
        ))
    for n in dict.fromkeys(named):
        rule = forbidden_rule(n, rules)
        if rule is not None:
            findings.append(Finding(
                RULE_FORBIDDEN_COLUMN,
                f"output column {n} is forbidden in public data: {rule.reason}.",
                rule.fix,
            ))
    return findings


# --------------------------------------------------------------------------------------------
# Lineage of output columns to warehouse columns
# --------------------------------------------------------------------------------------------


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
        scope = _scope_for(scope)
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
                projections = _projections(scope)
            except _Unresolved:
                # Positions are still known up to the first *.
                selects = expression.selects
                if column < len(selects) and not any(_is_star(s) for s in selects[: column + 1]):
                    yield from self._projection(selects[column], scope, fields, ctx)
                return
            if column >= len(projections):
                return
            name, projection = projections[column]
            if not _is_star(projection) or name is None:
                yield from self._projection(projection, scope, fields, ctx)
                return
            column = name
        for select in expression.selects:
            if not _is_star(select) and select.alias_or_name == column:
                yield from self._projection(select, scope, fields, ctx)
                return
        for select in expression.selects:
            if not _is_star(select):
                continue
            except_, replace = _star_modifiers(select)
            if column in except_:
                continue
            if column in replace:
                yield from self.walk(replace[column], scope, ctx, f"{replace[column].sql(DIALECT)} AS {column}")
                continue
            for name, src in _star_sources(scope, select):
                if isinstance(src, exp.Table) or self._may_provide(src, column):
                    yield from self._from_source(src, column, fields, ctx, select.sql(DIALECT))

    @staticmethod
    def _names(scope: Scope) -> list[str | None]:
        try:
            return _output_names(scope)
        except _Unresolved:
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
            return
        if _hll(node) in _HLL_SKETCHES:
            ctx = _Ctx(day=ctx.day, sketch=True)
        elif _truncates_to_day(node):
            ctx = _Ctx(day=True, sketch=ctx.sketch)
        if isinstance(node, exp.Column):
            if isinstance(node.this, exp.Star):
                for _, src in _star_sources(scope, node):
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
        if isinstance(node, _JSON_EXTRACTS) and isinstance(node.this, exp.Column):
            # JSON_VALUE(event_extra, '$.url') publishes the url key: trace it as a field.
            path = node.expression
            keys = tuple(k.this for k in path.expressions if isinstance(k, exp.JSONPathKey)) if isinstance(path, exp.JSONPath) else ()
            if keys and all(isinstance(k, str) for k in keys):
                yield from self.column(node.this, scope, ctx, via, keys)
                return
        if isinstance(node, (exp.Select, exp.SetOperation, exp.Subquery)):
            sub = self._subquery_scope(node, scope)
            if sub is not None:
                names = self._names(sub)
                count = len(names) or len(getattr(_scope_for(sub).expression, "selects", None) or [])
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
            providers = [s for s in selected.values() if isinstance(s, Scope) and name in self._names(s)]
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
        if isinstance(src, exp.Table):
            return True
        try:
            return name in _output_names(src)
        except _Unresolved:
            return True

    def _from_source(
        self, src: exp.Table | Scope, column: str, fields: tuple[str, ...], ctx: _Ctx, via: str
    ) -> Iterator[_Flow]:
        if isinstance(src, exp.Table):
            yield _Flow(_table_name(src), column, fields, via, ctx.day, ctx.sketch)
        elif isinstance(_scope_for(src).expression, exp.Unnest):
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
            yield _Flow(_table_name(src), "*", (), via, ctx.day, ctx.sketch)
            return
        try:
            projections = _projections(src)
        except _Unresolved:
            for _, (_, inner) in _scope_for(src).selected_sources.items():
                yield from self._whole_source(inner, ctx, via)
            return
        for i in range(len(projections)):
            yield from self.output(src, i, (), ctx)


def _check_lineage(root: Scope, rules: tuple[ForbiddenRule, ...]) -> list[Finding]:
    lineage = _Lineage()
    try:
        names = _output_names(root)
    except _Unresolved:
        # The output-columns rule reports the *; still trace the projections before it.
        query = _scope_for(root).expression
        names = [None] * len(getattr(query, "selects", None) or [])
    findings: list[Finding] = []
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


def _flow_finding(output: str, flow: _Flow, rules: tuple[ForbiddenRule, ...]) -> Finding | None:
    source = f"{flow.path} of {flow.table}" if flow.table else flow.path
    if flow.column == "*":
        return Finding(
            RULE_FORBIDDEN_LINEAGE,
            f"output column {output} carries whole rows of {flow.table} (via {flow.via}), identifiers included.",
            "select only the reviewed columns, never a whole row",
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


# --------------------------------------------------------------------------------------------
# Source tables and determinism
# --------------------------------------------------------------------------------------------


def _table_name(table: exp.Table) -> str:
    return ".".join(p for p in (table.catalog, table.db, table.name) if p)


def _normalize_table(name: str) -> str:
    return ".".join(part for part in re.split(r"\.", name.replace("`", "").strip()) if part)


def _check_source_tables(root: Scope, spec: DeclarationFile) -> list[Finding]:
    if not spec.source_tables:
        return []
    declared = [_normalize_table(t) for t in spec.source_tables]
    read: dict[str, None] = {}
    for scope in root.traverse():
        for table in scope.tables:
            if isinstance(scope.sources.get(table.alias_or_name), Scope):
                continue  # a CTE, not a warehouse table
            read.setdefault(_table_name(table))
    findings = []
    for name in read:
        if name in declared:
            continue
        if name.count(".") < 2:
            matches = [d for d in declared if d.endswith("." + name)]
            hint = f" (did you mean {matches[0]}?)" if matches else ""
            findings.append(Finding(
                RULE_SOURCE_TABLES,
                f"the query reads {name}, which is not fully qualified{hint}; source_tables are compared as "
                "project.dataset.table.",
                f"write the fully qualified name{': ' + matches[0] if matches else ''}",
            ))
        else:
            findings.append(Finding(
                RULE_SOURCE_TABLES,
                f"the query reads {name}, which is not in the declaration's source_tables "
                f"({', '.join(declared)}).",
                "read only declared tables, or add it to source_tables so the steward reviews it",
            ))
    return findings


def _function_name(node: exp.Expr) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.this).upper()
    return node.sql_name().upper() if isinstance(node, exp.Func) else ""


_CLAUSES = {
    "where": "WHERE", "group": "GROUP BY", "having": "HAVING", "qualify": "QUALIFY", "order": "ORDER BY",
    "from": "FROM", "from_": "FROM", "joins": "JOIN", "limit": "LIMIT", "windows": "WINDOW",
}


def _where(node: exp.Expr) -> str:
    """Where a node sits, in words: which column or clause, of which CTE."""
    place: str | None = None
    child, parent = node, node.parent
    while parent is not None:
        if place is None and isinstance(parent, exp.Select):
            if child.arg_key == "expressions":
                place = f"column {child.alias_or_name or child.sql(DIALECT)}"
            else:
                place = f"the {_CLAUSES.get(child.arg_key, child.arg_key.rstrip('_').upper())} clause"
        if isinstance(parent, exp.CTE):
            return f"{place or 'the body'} of CTE {parent.alias}"
        child, parent = parent, parent.parent
    return f"{place} of the main query" if place else "the query"


def _check_nondeterminism(statement: exp.Expr) -> list[Finding]:
    findings = []
    for node in statement.walk():
        if isinstance(node, exp.Func) and _function_name(node) in NONDETERMINISTIC_FUNCTIONS:
            findings.append(Finding(
                RULE_NONDETERMINISTIC,
                f"{node.sql(DIALECT)} in {_where(node)} changes between runs, so a rerun or backfill would "
                "publish different data.",
                "use the run's date parameter (@submission_date) instead of the clock, and deterministic "
                "sampling (sample_id) instead of random numbers",
            ))
        elif isinstance(node, exp.TableSample):
            findings.append(Finding(
                RULE_NONDETERMINISTIC,
                f"{node.sql(DIALECT).strip()} in {_where(node)} samples differently on every run.",
                "sample deterministically: WHERE sample_id < N",
            ))
    return findings
