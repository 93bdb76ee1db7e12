"""The shape of a reviewed query: which SELECTs make the published rows, and what that allows.

The published rows of an aggregated dataset are the groups of aggregating SELECTs (the targets),
reached from the query's output through pass-through SELECTs (filters, ordering, windows over
published rows) and UNION branches. For each target the privacy unit must arrive unchanged, as
the unit column of a source table, so the warehouse can count the distinct units of every group
(sql.rewrite adds that count and the minimum). The target's published columns may only reduce
many clients to one value (ALLOWED_AGGREGATES), and no value computed over other clients (an
aggregate or window outside the published row) may reach them. A query without a target
publishes individual rows; one grouped by its unit publishes one client per row.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.scope import Scope, build_scope, find_all_in_scope

from pubdata.declarations.spec import DeclarationFile
from pubdata.policy.forbidden import FORBIDDEN_COLUMNS
from pubdata.sql.parse import DIALECT, Finding
from pubdata.sql.projections import Unresolved, is_star, scope_for, scope_projections, star_modifiers, star_sources

RULE_AGGREGATION = "aggregation"
RULE_PRIVACY_UNIT = "privacy_unit"
CLIENT_IDENTIFIER = next(rule for rule in FORBIDDEN_COLUMNS if rule.name == "client_identifier")
"""What a privacy unit must be: what the policy calls a client identifier."""
RULE_AGGREGATES = "aggregate_functions"
RULE_PROVENANCE = "provenance"
RULE_LEVEL = "aggregation_level"

ALLOWED_AGGREGATES: dict[type[exp.Expr], str] = {
    exp.Count: "COUNT",
    exp.CountIf: "COUNTIF",
    exp.Sum: "SUM",
    exp.Avg: "AVG",
    exp.ApproxDistinct: "APPROX_COUNT_DISTINCT",
    exp.Stddev: "STDDEV",
    exp.StddevPop: "STDDEV_POP",
    exp.StddevSamp: "STDDEV_SAMP",
    exp.Variance: "VARIANCE",
    exp.VariancePop: "VAR_POP",
}
"""Aggregates that reduce the clients of a published row to one value: counts, sums, averages and
spreads (and ratios of them, written as arithmetic). Extend with care: an aggregate belongs here
only if its value cannot be one client's value."""

STEWARD_AGGREGATES: dict[type[exp.Expr], str] = {exp.Min: "MIN", exp.Max: "MAX"}
"""The smallest or largest value is one client's value: allowed only with a steward's sign-off."""

HLL_AGGREGATES = frozenset({"INIT", "MERGE_PARTIAL", "MERGE"})
HLL_SKETCHES = frozenset({"INIT", "MERGE_PARTIAL"})
"""HLL_COUNT.MERGE reduces sketches to a count; INIT and MERGE_PARTIAL publish sketches (level 4)."""
Bucket = Literal["units", "filtered_units", "other"]


@dataclass
class Target:
    """One aggregating SELECT whose groups are published rows."""

    scope: Scope
    branch: int               # position among the targets (UNION branches), left to right
    source: str               # alias of the one relation it reads: the pipeline counts its unit
    keys: list[exp.Expr]      # its GROUP BY expressions, positions and output aliases resolved
    wrappers: list[Scope]     # pass-through SELECTs from the query's output down to it

    @property
    def select(self) -> exp.Select:
        node = self.scope.expression
        assert isinstance(node, exp.Select)
        return node


@dataclass
class Shape:
    statement: exp.Query
    targets: list[Target] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    level: int | None = None           # the lowest aggregation level the query's shape allows
    bucket: Bucket | None = None       # what the declared bucket column counts
    bucket_expr: exp.Expr | None = None

    @property
    def ok(self) -> bool:
        return not self.findings and bool(self.targets)


def analyze(statement: exp.Query, spec: DeclarationFile) -> Shape:
    """The shape of a parsed reviewed query, judged against its declaration (statement is kept)."""
    shape = Shape(statement)
    unit = spec.policy.privacy_unit
    if not CLIENT_IDENTIFIER.matches(unit.rsplit(".", 1)[-1]):
        shape.findings.append(Finding(
            RULE_PRIVACY_UNIT,
            f"policy.privacy_unit {unit!r} is not a client identifier: the pipeline counts its distinct values "
            f"behind every row, and a per-ping, per-session or any other id would count one client many times, "
            f"so {spec.policy.min_bucket_size:,} of them may be far fewer clients.",
            "set privacy_unit to the source's client identifier: client_id, or client_info.client_id in Glean tables"))
        return shape
    try:
        root = build_scope(statement)
    except SqlglotError as exc:
        shape.findings.append(Finding(RULE_AGGREGATION, f"the query's structure cannot be analysed: {exc}.",
                                      "give every subquery an alias and qualify ambiguous columns"))
        return shape
    if root is None:
        return shape
    walker = _Targets(unit, shape.findings)
    walker.visit(root, [])
    shape.targets = walker.targets
    if walker.row_level:
        shape.level = 5
    elif shape.targets:
        shape.level = 2
    for target in shape.targets:
        if _Target(target, unit, spec, shape.findings).check():
            shape.level = 5
    if shape.targets and any(_publishes_sketch(t) for t in shape.targets):
        shape.level = max(shape.level or 4, 4)
    _check_level(shape, spec)
    if spec.policy.bucket_column and shape.targets and not shape.findings:
        shape.bucket, shape.bucket_expr = _bucket(shape, spec.policy.bucket_column, unit)
    return shape


def _fix_aggregate(unit: str) -> str:
    return (f"aggregate: GROUP BY the dimensions and publish counts and sums per group, with "
            f"COUNT(DISTINCT {unit}) for the clients of each row")


# -- finding the targets -------------------------------------------------------------------------


class _Targets:
    def __init__(self, unit: str, findings: list[Finding]):
        self.unit, self.findings = unit, findings
        self.targets: list[Target] = []
        self.row_level = False

    def visit(self, scope: Scope, wrappers: list[Scope]) -> None:
        scope = _unwrap(scope)
        node = scope.expression
        if isinstance(node, exp.SetOperation):
            if not isinstance(node, exp.Union):
                self.findings.append(Finding(
                    RULE_AGGREGATION,
                    f"{node.key.upper()} publishes the difference or overlap of two sets of rows, which can "
                    "single out the clients the minimum bucket hides.",
                    "publish each set as rows of its own (UNION ALL), or drop the set operation"))
                return
            for branch in scope.set_operation_scopes:
                self.visit(branch, wrappers)
            return
        if not isinstance(node, exp.Select):
            self.findings.append(Finding(RULE_AGGREGATION, f"the query's output comes from a {node.key} the "
                                         "pipeline cannot follow.", _fix_aggregate(self.unit)))
            return
        if _is_aggregating(scope):
            self.targets.append(Target(scope, len(self.targets), "", [], list(wrappers)))
            return
        where = f"the SELECT that produces the output ({_short(node)})"
        tables = [s for _, (_, s) in scope.selected_sources.items() if isinstance(s, exp.Table)]
        if tables and len(tables) == len(scope.selected_sources):
            self.row_level = True
            self.findings.append(Finding(
                RULE_AGGREGATION,
                f"{where} publishes rows of {', '.join(_table_name(t) for t in tables)} without aggregating them: "
                "that is individual-level data (aggregation level 5 or higher), outside the safety matrix.",
                _fix_aggregate(self.unit)))
            return
        problem = _wrapper_problem(scope)
        if problem:
            self.findings.append(Finding(RULE_AGGREGATION, f"{where} {problem}.",
                                         "aggregate in a CTE and select from it in the final query, with no join"))
            return
        (_, (_, source)), = scope.selected_sources.items()
        assert isinstance(source, Scope)
        self.visit(source, [*wrappers, scope])


def _unwrap(scope: Scope) -> Scope:
    scope = scope_for(scope)
    while isinstance(scope.expression, exp.Subquery) and (scope.subquery_scopes or scope.table_scopes):
        scope = (scope.subquery_scopes or scope.table_scopes)[0]
    return scope


def _own_aggregates(scope: Scope) -> Iterator[exp.Expr]:
    """Aggregate calls of this SELECT itself (not of subqueries, not window aggregates)."""
    for node in find_all_in_scope(scope.expression, exp.AggFunc):
        if isinstance(node.find_ancestor(exp.Window, exp.Select), exp.Window):
            continue
        yield node
    for dot in find_all_in_scope(scope.expression, exp.Dot):
        if _hll(dot) is not None:
            yield dot


def _is_aggregating(scope: Scope) -> bool:
    node = scope.expression
    return bool(node.args.get("group") or node.args.get("having") or next(_own_aggregates(scope), None))


def _wrapper_problem(scope: Scope) -> str | None:
    node = scope.expression
    if node.args.get("joins") or len(scope.selected_sources) != 1:
        return "joins or reads several relations"
    if any(isinstance(s, exp.Unnest) for _, (s, _) in scope.selected_sources.items()):
        return "reads an UNNEST"
    expressions = [q for q in find_all_in_scope(node, exp.Subquery) if not isinstance(q.parent, (exp.From, exp.Join))]
    if expressions or scope.subquery_scopes:
        return "uses a subquery expression, which can read rows the published groups do not count"
    return None


def _hll(node: exp.Expr) -> str | None:
    """INIT, MERGE or MERGE_PARTIAL for an HLL_COUNT aggregate (EXTRACT is a scalar function)."""
    if isinstance(node, exp.Dot) and isinstance(node.this, exp.Identifier) and node.this.name.upper() == "HLL_COUNT":
        inner = node.expression
        if isinstance(inner, exp.Anonymous) and str(inner.this).upper() in HLL_AGGREGATES:
            return str(inner.this).upper()
    return None


def _short(node: exp.Expr, limit: int = 70) -> str:
    text = " ".join(node.sql(DIALECT).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _table_name(table: exp.Table) -> str:
    return ".".join(p for p in (table.catalog, table.db, table.name) if p)


# -- one target --------------------------------------------------------------------------------------


class _Target:
    def __init__(self, target: Target, unit: str, spec: DeclarationFile, findings: list[Finding]):
        self.t, self.unit, self.spec, self.findings = target, unit, spec, findings
        self.where = f"the aggregation that makes the published rows ({_short(target.select)})"

    def fail(self, rule: str, message: str, fix: str) -> None:
        self.findings.append(Finding(rule, message, fix))

    def check(self) -> bool:
        """Check the target in place; True when its rows are single clients (grouped by the unit)."""
        select, scope = self.t.select, self.t.scope
        if select.args.get("joins") or len(scope.selected_sources) != 1:
            self.fail(RULE_PRIVACY_UNIT, f"{self.where} reads several relations; the pipeline counts the clients "
                      "of one relation.", "join in a CTE first, keeping its " + self.unit + ", and aggregate that CTE")
            return False
        ((alias, (node, source)),) = scope.selected_sources.items()
        if isinstance(node, exp.Unnest) or isinstance(source, Scope) and isinstance(_unwrap(source).expression, exp.Unnest):
            self.fail(RULE_PRIVACY_UNIT, f"{self.where} aggregates an UNNEST, which has no {self.unit}.",
                      "unnest in a CTE that keeps the " + self.unit + " of each row, and aggregate that CTE")
            return False
        self.t.source = alias
        self.t.keys = _group_keys(select)
        group = select.args.get("group")
        if group is not None and group.find(exp.Rollup, exp.Cube, exp.GroupingSets):
            self.fail(RULE_AGGREGATION, f"{self.where} uses ROLLUP, CUBE or GROUPING SETS: subtotals minus the "
                      "published cells reveal the cells the minimum bucket hides.",
                      "publish the cells, and totals of published cells through the expectations file's totals")
        if not self._unit_is_plain(source, alias):
            return False
        per_client = any(is_unit(k, self.unit, alias) for k in self.t.keys)
        if per_client:
            self.fail(RULE_LEVEL, f"{self.where} groups by {self.unit}: every published row is one client, which "
                      "is individual-level data (aggregation level 5 or higher).",
                      f"group by the dimensions only and count clients with COUNT(DISTINCT {self.unit})")
        self._check_projections()
        _Provenance(self.unit, self.findings).check_target(self.t)
        return per_client

    def _unit_is_plain(self, source: exp.Table | Scope, alias: str) -> bool:
        """The unit reaches the target unchanged from source tables' unit columns."""
        if isinstance(source, exp.Table):
            return True
        try:
            roots = _trace_plain(source, unit_root(self.unit))
        except _NotPlain as exc:
            self.fail(RULE_PRIVACY_UNIT, f"{self.where} reads {alias}, where {exc}.",
                      f"keep the source table's {self.unit} column, unchanged, in every CTE up to the aggregation "
                      "(the pipeline counts the distinct clients of every published row with it)")
            return False
        bad = [f"{t}.{c}" for t, c in roots if c != unit_root(self.unit)]
        if bad:
            self.fail(RULE_PRIVACY_UNIT, f"{self.where} counts clients by {alias}.{self.unit}, which comes from "
                      f"{', '.join(bad)}, not from a source table's {self.unit}.",
                      f"select the source table's {self.unit} as it is")
            return False
        return True

    def _check_projections(self) -> None:
        steward = self.spec.review.steward is not None
        key_sql = {k.sql(DIALECT) for k in self.t.keys}
        key_columns = {c.name for k in self.t.keys for c in k.find_all(exp.Column)}
        for projection in self.t.select.selects:
            name = projection.alias_or_name
            inner = projection.unalias()
            for node in inner.walk():
                if isinstance(node, exp.Subquery):
                    self.fail(RULE_AGGREGATES, f"published column {name} uses a subquery, which can read rows "
                              "outside the published group.", "compute it from the group's own rows, or join in a CTE")
                    break
            for agg in aggregates_in(inner):
                self._check_aggregate(name, agg, steward)
            if inner.sql(DIALECT) in key_sql or _is_constant(inner):
                continue
            for col in _columns_outside_aggregates(inner):
                if col.name not in key_columns:
                    self.fail(RULE_AGGREGATES, f"published column {name} uses {col.sql(DIALECT)}, which is neither "
                              "a grouping key nor aggregated, so it carries one row's value.",
                              "group by it (a dimension) or aggregate it (a metric)")
                    break

    def _check_aggregate(self, column: str, agg: exp.Expr, steward: bool) -> None:
        kind = _hll(agg)
        if kind is not None:
            if kind in HLL_SKETCHES and not _extracted(agg):
                self.fail(RULE_LEVEL, f"published column {column} is an HLL sketch ({_short(agg)}): sketches are "
                          "probabilistic aggregates (aggregation level 4), from which a client can be tested.",
                          "publish the count instead: HLL_COUNT.EXTRACT(...) or COUNT(DISTINCT ...)")
            return
        if type(agg) in ALLOWED_AGGREGATES:
            return
        if type(agg) in STEWARD_AGGREGATES:
            if not steward:
                self.fail(RULE_AGGREGATES, f"published column {column} is {_short(agg)}: the smallest or largest "
                          "value of a group is one client's value.",
                          "publish a sum, count or average instead, or have a data steward sign off on it "
                          "(review.steward), who sees it in `pubdata review`")
            return
        name = agg.sql(DIALECT).split("(", 1)[0].upper()
        self.fail(RULE_AGGREGATES, f"published column {column} uses {name} ({_short(agg)}), which does not reduce "
                  "the group's clients to one value (it keeps, packs or picks individual values).",
                  f"use one of {', '.join(sorted(set(ALLOWED_AGGREGATES.values())))} (ratios of them are fine)")


def _group_keys(select: exp.Select) -> list[exp.Expr]:
    group = select.args.get("group")
    if group is None:
        return []
    aliases = {p.alias: p.unalias() for p in select.selects if isinstance(p, exp.Alias)}
    if group.args.get("all"):
        return [p.unalias() for p in select.selects if not next(aggregates_in(p.unalias()), None)]
    keys: list[exp.Expr] = []
    for key in group.expressions:
        if isinstance(key, (exp.Rollup, exp.Cube, exp.GroupingSets)):
            keys += [k for k in key.expressions if isinstance(k, exp.Expr)]
            continue
        if isinstance(key, exp.Literal) and key.is_int and 0 < int(key.name) <= len(select.selects):
            keys.append(select.selects[int(key.name) - 1].unalias())
        elif isinstance(key, exp.Column) and not key.table and key.name in aliases:
            keys.append(key)
            keys.append(aliases[key.name])
        else:
            keys.append(key)
    return keys


def aggregates_in(node: exp.Expr) -> Iterator[exp.Expr]:
    """Aggregate calls in an expression, outermost first, not looking inside windows or subqueries."""
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, (exp.Window, exp.Subquery, exp.Select)):
            continue
        if isinstance(current, exp.AggFunc) or _hll(current) is not None:
            yield current
            continue
        stack.extend(reversed(list(current.iter_expressions())))


def _columns_outside_aggregates(node: exp.Expr) -> Iterator[exp.Column]:
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, (exp.AggFunc, exp.Window, exp.Subquery, exp.Select)) or _hll(current):
            continue
        if isinstance(current, exp.Column) and not isinstance(current.this, exp.Star):
            yield current
            continue
        stack.extend(current.iter_expressions())


def _is_constant(node: exp.Expr) -> bool:
    return not any(isinstance(n, exp.Column) for n in node.walk())


def unit_root(unit: str) -> str:
    """The top-level column holding the unit: `client_id`, or `client_info` for Glean's
    `client_info.client_id`. It is what must reach the aggregation unchanged from a source table."""
    return unit.split(".")[0]


def unit_qualifier(column: exp.Expr | None, unit: str) -> str | None:
    """The relation a reference to the unit names ('' when unqualified), or None when `column`
    does not read the unit: `client_id` / `t.client_id`, or `client_info.client_id` /
    `t.client_info.client_id` for a nested unit."""
    if not isinstance(column, exp.Column) or isinstance(column.this, exp.Star):
        return None
    names = [part.name for part in column.parts]
    path = unit.split(".")
    if names == path:
        return ""
    if len(names) == len(path) + 1 and names[1:] == path:
        return names[0]
    return None


def is_unit(column: exp.Expr | None, unit: str, alias: str | None = None) -> bool:
    """Whether `column` reads the unit (of source `alias`, or of any source when None)."""
    qualifier = unit_qualifier(column, unit)
    return qualifier is not None and (alias is None or qualifier in ("", alias))


def unit_column(unit: str, source: str | None = None) -> exp.Column:
    """A reference to the unit, qualified by `source` when given: `s.client_id`, `s.client_info.client_id`."""
    *path, name = ([source] if source else []) + unit.split(".")
    parts = list(reversed(path)) + [None, None, None]
    return exp.column(name, table=parts[0], db=parts[1], catalog=parts[2])


def _mentions_unit(node: exp.Expr, unit: str, alias: str | None) -> bool:
    """Whether the expression reads column `unit` (of source `alias`, or of any source when None)."""
    return any(is_unit(c, unit, alias) for c in node.find_all(exp.Column))


def _publishes_sketch(target: Target) -> bool:
    return any(_hll(a) in HLL_SKETCHES and not _extracted(a)
               for p in target.select.selects for a in aggregates_in(p.unalias()))


def _extracted(node: exp.Expr) -> bool:
    """Inside HLL_COUNT.EXTRACT(...): the sketch is reduced to its count."""
    parent = node.parent
    while parent is not None and not isinstance(parent, exp.Select):
        if isinstance(parent, exp.Anonymous) and str(parent.this).upper() == "EXTRACT" and \
                isinstance(parent.parent, exp.Dot) and parent.parent.this.name.upper() == "HLL_COUNT":
            return True
        parent = parent.parent
    return False


# -- the unit's lineage -----------------------------------------------------------------------------


class _NotPlain(Exception):
    pass


def _trace_plain(scope: Scope, column: str, _depth: int = 0) -> list[tuple[str, str]]:
    """(table, column) the output `column` of a scope comes from, through bare column references only."""
    if _depth > 64:
        raise _NotPlain(f"{column} goes through more than 64 relations")
    scope = _unwrap(scope)
    node = scope.expression
    if isinstance(node, exp.SetOperation):
        names = _names(scope_for(scope.set_operation_scopes[0]))
        if column not in names:
            raise _NotPlain(f"{column} is not an output of the set operation")
        position = names.index(column)
        out = []
        for branch in scope.set_operation_scopes:
            branch_names = _names(_unwrap(branch))
            if position >= len(branch_names) or branch_names[position] is None:
                raise _NotPlain(f"{column} is not a named column of every branch")
            out += _trace_plain(branch, str(branch_names[position]), _depth + 1)
        return out
    if not isinstance(node, exp.Select):
        raise _NotPlain(f"{column} comes from a {node.key} (an UNNEST has no {column} of its own)")
    projection = _projection(scope, column)
    if projection is None:
        for star in (p for p in node.selects if is_star(p)):
            if column in star_modifiers(star)[0]:
                continue
            for _, source in star_sources(scope, star):
                if isinstance(source, exp.Table):
                    return [(_table_name(source), column)]
                if column in _names(_unwrap(source)):
                    return _trace_plain(source, column, _depth + 1)
        raise _NotPlain(f"{column} is not selected")
    inner = projection.unalias()
    if not isinstance(inner, exp.Column) or isinstance(inner.this, exp.Star):
        raise _NotPlain(f"{column} is computed ({_short(projection)}), not a column of the source")
    sources = scope.selected_sources
    if inner.table:
        if inner.table not in sources:
            raise _NotPlain(f"{column} comes from {inner.table}, which the pipeline cannot follow")
        candidates = [(inner.table, sources[inner.table][1])]
    else:
        candidates = [(a, s) for a, (_, s) in sources.items()
                      if isinstance(s, exp.Table) or inner.name in _names(_unwrap(s))]
        using = {c.name for j in node.args.get("joins") or [] for c in j.args.get("using") or []}
        if len(candidates) > 1 and inner.name in using:
            candidates = candidates[:1]  # JOIN ... USING (col): one column, equal on both sides
        if len(candidates) != 1:
            raise _NotPlain(f"{column} is ambiguous between {', '.join(a for a, _ in candidates) or 'no relation'}: "
                            "qualify it")
    (_, source), = candidates
    if isinstance(source, exp.Table):
        return [(_table_name(source), inner.name)]
    if isinstance(_unwrap(source).expression, exp.Unnest):
        raise _NotPlain(f"{column} comes from an UNNEST")
    return _trace_plain(source, inner.name, _depth + 1)


def _projection(scope: Scope, name: str) -> exp.Expr | None:
    """The expression a SELECT gives output `name`: a projection, or a * REPLACE (expr AS name)."""
    node = scope.expression
    assert isinstance(node, exp.Select)
    found = next((p for p in node.selects if not is_star(p) and p.alias_or_name == name), None)
    if found is not None:
        return found
    for star in (p for p in node.selects if is_star(p)):
        replaced = star_modifiers(star)[1].get(name)
        if replaced is not None:
            return exp.alias_(replaced.copy(), name)
    return None


def _provides(source: exp.Table | Scope, name: str) -> bool:
    """Whether a source may output `name`: a table may hold any column, a * over one may pass it on."""
    if isinstance(source, exp.Table):
        return True
    scope = _unwrap(source)
    try:
        return name in [n for n, _ in scope_projections(scope)]
    except Unresolved:
        selects = getattr(scope.expression, "selects", [])
        return any(is_star(p) or p.alias_or_name == name for p in selects)


def _names(scope: Scope) -> list[str | None]:
    try:
        return [name for name, _ in scope_projections(scope)]
    except Unresolved:
        node = scope.expression
        return [p.alias_or_name for p in getattr(node, "selects", []) if not is_star(p)]


# -- what reaches the target: no value computed over other clients ----------------------------------


class _Provenance:
    """Follows every column the target reads back through CTEs and subqueries: an aggregate or a
    window over other clients (not grouped or partitioned by the unit) may not feed a published row,
    or the row would carry clients it does not count (a total over everyone, a window count)."""

    def __init__(self, unit: str, findings: list[Finding]):
        self.unit, self.findings = unit, findings
        self.seen: set[tuple[int, str]] = set()
        self.joined: set[int] = set()
        self.reported = False

    def check_target(self, target: Target) -> None:
        scope = target.scope
        for col in scope.columns:
            self.column(scope, col)

    def fail(self, message: str) -> None:
        if not self.reported:
            self.reported = True
            self.findings.append(Finding(
                RULE_PROVENANCE, message,
                f"compute per client first (GROUP BY {self.unit}, or PARTITION BY {self.unit}) and aggregate the "
                "clients of each published row in the final aggregation; totals come from published cells "
                "(the expectations file's totals)"))

    def column(self, scope: Scope, col: exp.Column) -> None:
        sources = scope.selected_sources
        if col.table and col.table in sources:
            candidates = [sources[col.table][1]]
        else:
            candidates = [s for _, (_, s) in sources.items() if isinstance(s, Scope) and _provides(s, col.name)]
        for source in candidates:
            if isinstance(source, Scope):
                self.output(source, col.name)

    def output(self, scope: Scope, name: str) -> None:
        scope = _unwrap(scope)
        key = (id(scope), name)
        if key in self.seen or self.reported:
            return
        self.seen.add(key)
        node = scope.expression
        if isinstance(node, exp.SetOperation):
            for branch in scope.set_operation_scopes:
                self.output(branch, name)
            return
        if not isinstance(node, exp.Select):
            return
        self.joins(scope)
        projection = _projection(scope, name)
        if projection is None:
            for star in (p for p in node.selects if is_star(p)):
                if name in star_modifiers(star)[0]:
                    continue
                for _, source in star_sources(scope, star):
                    if isinstance(source, Scope):
                        self.output(source, name)
            return
        self.expression(scope, projection.unalias(), name)

    def joins(self, scope: Scope) -> None:
        """A join that feeds published rows must keep each client's values with that client: row-level
        relations are joined on the unit, so no row carries another client's values under its unit."""
        if id(scope) in self.joined or len(scope.selected_sources) < 2:
            return
        self.joined.add(id(scope))
        unit_alias = _unit_alias(scope, self.unit)
        node = scope.expression
        assert isinstance(node, exp.Select)
        for alias, (source_node, source) in scope.selected_sources.items():
            if alias == unit_alias or not _row_level(source_node, source, self.unit):
                continue
            if unit_alias is not None and _joined_on_unit(node, unit_alias, alias, self.unit):
                continue
            self.findings.append(Finding(
                RULE_PRIVACY_UNIT,
                f"{_scope_name(scope)} joins {alias} " + (f"to {unit_alias} " if unit_alias else "")
                + f"without matching {self.unit}: its rows would carry other clients' values under the "
                "clients the pipeline counts, so a published row could describe a client it does not count.",
                f"join row-level relations on {self.unit} (ON a.{self.unit} = b.{self.unit} or USING "
                f"({self.unit})); filter by another relation with WHERE ... IN (SELECT ...) instead of a join"))
            self.reported = True
            return

    def expression(self, scope: Scope, node: exp.Expr, name: str) -> None:
        per_unit = _grouped_by_unit(scope, self.unit)
        values = list(_value_nodes(node))
        # An aggregate inside a window partitioned by the unit is per client, like GROUP BY the unit.
        per_client = {id(n) for v in values if isinstance(v, exp.Window) and _partitioned_by_unit(v, self.unit)
                      for n in v.this.walk()}
        for value in values:
            if id(value) in per_client:
                continue
            if isinstance(value, exp.Window):
                if not _partitioned_by_unit(value, self.unit):
                    self.fail(f"column {name} of {_scope_name(scope)} is a window over many clients "
                              f"({_short(value)}), and it reaches a published row.")
                    return
            elif (isinstance(value, exp.AggFunc) or _hll(value)) and not per_unit:
                self.fail(f"column {name} of {_scope_name(scope)} is an aggregate over clients that are not those of "
                          f"the published row ({_short(value)}).")
                return
            elif isinstance(value, exp.Subquery) and not _reads_no_rows(value):
                self.fail(f"column {name} of {_scope_name(scope)} comes from a subquery ({_short(node)}), which reads "
                          "rows the published row does not count.")
                return
        for value in values:
            if isinstance(value, exp.Column) and not isinstance(value.this, exp.Star):
                self.column(scope, value)


_CONDITIONS = (exp.Predicate, exp.Connector, exp.Not)


def _value_nodes(node: exp.Expr) -> Iterator[exp.Expr]:
    """The nodes whose value can become the expression's value: not conditions (IF/CASE tests, WHERE-like
    predicates), which only choose between values; a comparison yields a boolean, not the value compared."""
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, _CONDITIONS) and current is not node:
            continue
        yield current
        if isinstance(current, exp.If):
            stack += [v for v in (current.args.get("true"), current.args.get("false")) if v is not None]
        elif isinstance(current, exp.Case):
            stack += [i.args["true"] for i in current.args.get("ifs") or [] if i.args.get("true") is not None]
            if current.args.get("default") is not None:
                stack.append(current.args["default"])
        elif isinstance(current, exp.Window):
            stack.append(current.this)
        elif not isinstance(current, exp.Subquery):
            stack += list(current.iter_expressions())


def _reads_no_rows(subquery: exp.Subquery) -> bool:
    """A subquery over lists of constants only (UNNEST of a parameter or literal array): no table, no CTE."""
    return not any(True for _ in subquery.find_all(exp.Table)) and all(
        not any(isinstance(n, exp.Column) for n in u.walk()) for u in subquery.find_all(exp.Unnest))


def _partitioned_by_unit(window: exp.Window, unit: str) -> bool:
    return any(is_unit(p, unit) for p in window.args.get("partition_by") or [])


def _unit_alias(scope: Scope, unit: str) -> str | None:
    """The source the scope's output `unit` (its root column) comes from, when it is a bare column of one source."""
    unit = unit_root(unit)
    projection = _projection(scope, unit)
    sources = scope.selected_sources
    if projection is None:
        for star in (p for p in getattr(scope.expression, "selects", []) if is_star(p)):
            providers = [a for a, src in star_sources(scope, star)
                         if isinstance(src, exp.Table) or unit in _names(_unwrap(src))]
            if len(providers) == 1:
                return providers[0]
        return None
    inner = projection.unalias()
    if not isinstance(inner, exp.Column):
        return None
    if inner.table:
        return inner.table if inner.table in sources else None
    providers = [a for a, (_, s) in sources.items() if isinstance(s, exp.Table) or unit in _names(_unwrap(s))]
    using = {c.name for j in scope.expression.args.get("joins") or [] for c in j.args.get("using") or []}
    if len(providers) > 1 and unit in using:
        return providers[0]  # JOIN ... USING (unit): the same value on both sides
    return providers[0] if len(providers) == 1 else None


def _row_level(node: exp.Expr, source: exp.Table | Scope, unit: str) -> bool:
    """Whether a joined source holds rows of clients: a table, or a query not aggregated to groups
    without the unit. An UNNEST (of the row's own array, or of constants) adds no other client."""
    if isinstance(node, exp.Unnest) or isinstance(source, Scope) and isinstance(_unwrap(source).expression, exp.Unnest):
        return False
    if isinstance(source, exp.Table):
        return True
    inner = _unwrap(source)
    if isinstance(inner.expression, exp.Select) and _is_aggregating(inner):
        return _grouped_by_unit(inner, unit)  # per-client aggregates are rows of clients; other groups are not
    return True


def _conjuncts(node: exp.Expr | None) -> Iterator[exp.Expr]:
    if node is None:
        return
    if isinstance(node, exp.And):
        yield from _conjuncts(node.this)
        yield from _conjuncts(node.expression)
    elif isinstance(node, exp.Paren):
        yield from _conjuncts(node.this)
    else:
        yield node


def _joined_on_unit(select: exp.Select, left: str, right: str, unit: str) -> bool:
    """ON / USING / WHERE has left.unit = right.unit as a conjunct."""
    conditions: list[exp.Expr] = []
    for join in select.args.get("joins") or []:
        if "." not in unit and any(c.name == unit for c in join.args.get("using") or []) and join.alias_or_name == right:
            return True
        conditions += list(_conjuncts(join.args.get("on")))
    where = select.args.get("where")
    conditions += list(_conjuncts(where.this if where is not None else None))
    for condition in conditions:
        if isinstance(condition, exp.EQ):
            sides = {unit_qualifier(condition.this, unit), unit_qualifier(condition.expression, unit)}
            if sides == {left, right}:
                return True
    return False


def _grouped_by_unit(scope: Scope, unit: str) -> bool:
    node = scope.expression
    return isinstance(node, exp.Select) and any(is_unit(k, unit) for k in _group_keys(node))


def _scope_name(scope: Scope) -> str:
    parent = scope.expression.parent
    if isinstance(parent, exp.CTE):
        return f"CTE {parent.alias}"
    if isinstance(parent, exp.Subquery) and parent.alias:
        return f"subquery {parent.alias}"
    return "a subquery"


# -- the declared level and the bucket column -------------------------------------------------------


def _check_level(shape: Shape, spec: DeclarationFile) -> None:
    declared = spec.policy.aggregation_level
    if shape.level is None or declared >= shape.level:
        return
    already = {f.rule for f in shape.findings}
    if shape.level >= 5 and RULE_AGGREGATION in already or RULE_LEVEL in already:
        return  # a finding says it already
    shape.findings.append(Finding(
        RULE_LEVEL,
        f"policy.aggregation_level is {declared}, but the query's shape allows no lower level than {shape.level}: "
        "the declaration claims more aggregation than the query does.",
        "aggregate the query into groups of clients, or declare the level the query has (levels above 3 are "
        "outside the safety matrix and are refused)"))


def _bucket(shape: Shape, bucket_column: str, unit: str) -> tuple[Bucket, exp.Expr | None]:
    """What the declared bucket column counts in the targets: the row's units, a filtered count of
    them (COUNT(DISTINCT IF(cond, unit, NULL))), or something else (checked against the count)."""
    kinds: set[Bucket] = set()
    expr: exp.Expr | None = None
    for target in shape.targets:
        projection = _output_in_target(target, bucket_column)
        if projection is None:
            kinds.add("other")
            continue
        kind = _count_kind(projection, unit, target.source)
        kinds.add(kind)
        expr = projection
    if len(kinds) == 1:
        kind = kinds.pop()
        return kind, expr if kind == "filtered_units" else None
    return "other", None


def _output_in_target(target: Target, column: str) -> exp.Expr | None:
    """The target's projection that becomes output `column`, when the wrappers pass it through by name."""
    name = column
    for wrapper in target.wrappers:
        node = wrapper.expression
        assert isinstance(node, exp.Select)
        projection = next((p for p in node.selects if not is_star(p) and p.alias_or_name == name), None)
        if projection is None:
            if not any(is_star(p) for p in node.selects):
                return None
            continue
        inner = projection.unalias()
        if not isinstance(inner, exp.Column):
            return None
        name = inner.name
    projection = next((p for p in target.select.selects if p.alias_or_name == name), None)
    return projection.unalias() if projection is not None else None


def _count_kind(node: exp.Expr, unit: str, alias: str) -> Bucket:
    if not isinstance(node, exp.Count) or not isinstance(node.this, exp.Distinct):
        return "other"
    args = node.this.expressions
    if len(args) != 1:
        return "other"
    arg = args[0]
    if is_unit(arg, unit, alias):
        return "units"
    branches: list[exp.Expr | None] = []
    if isinstance(arg, exp.If):
        branches = [arg.args.get("true"), arg.args.get("false")]
    elif isinstance(arg, exp.Case) and len(arg.args.get("ifs") or []) == 1:
        branches = [arg.args["ifs"][0].args.get("true"), arg.args.get("default")]
    if branches and is_unit(branches[0], unit, alias) and (branches[1] is None or isinstance(branches[1], exp.Null)):
        return "filtered_units"
    return "other"
