"""The framework's grouping of rare combinations into the Other label (policy.rollup).

The engineer writes a plain GROUP BY of the dimensions with counts and sums; the pipeline
rewrites it to group the clients first: each (group, client) pair keeps partial aggregates, the
cells with at least min_bucket_size distinct clients are published as they are, the clients of
the others are grouped again with the first roll-up step's dimensions relabelled, and so on;
what is still under the minimum after the last step is dropped (by the minimum every published
row gets, sql.rewrite). Re-aggregation uses exact distinct counts of clients, never sums of
counts, so a client in two cells that merge is counted once. Values a geo dimension may not
publish (unknown countries, small places) never form a cell of their own: they take the label at
the step that relabels their dimension (at once when the dimension is not rolled up).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlglot import exp

from pubdata.declarations.spec import DeclarationFile
from pubdata.errors import PolicyRefused
from pubdata.policy.geo import GEO_KINDS, place_values
from pubdata.sql.parse import DIALECT
from pubdata.sql.shape import Shape, Target, aggregates_in
from pubdata.sql.tree import define_cte_before, resolved_keys

LEVEL = "_pubdata_level"
HIT = "_pubdata_hit"
CELLS = "_pubdata_cells"
ROLLED = "_pubdata_rolled"
NOT_RELABELLED = ("date", "numeric_bucket")
ROLLUP_PREFIXES = (CELLS, "_pubdata_level_")
"""CTEs of the roll-up read more than once."""


def rollup(statement: exp.Query, shape: Shape, spec: DeclarationFile) -> dict[str, list[str]]:
    """Replace the statement's one target by the roll-up, in place; return the parameters it binds."""
    if len(shape.targets) != 1:
        raise PolicyRefused("policy.rollup needs one aggregation (a plain GROUP BY of the dimensions); the query has "
                            f"{len(shape.targets)}: write the grouping into Other yourself, or drop rollup")
    if "." in spec.policy.privacy_unit:
        raise PolicyRefused(f"policy.rollup needs a top-level privacy_unit; {spec.policy.privacy_unit} is a field of a "
                            "record: write the grouping into Other yourself, or drop rollup")
    return _Rollup(statement, shape.targets[0], spec).rewrite()


class _Rollup:
    def __init__(self, statement: exp.Query, target: Target, spec: DeclarationFile):
        self.statement, self.target, self.spec = statement, target, spec
        self.policy = spec.policy
        self.unit = spec.policy.privacy_unit
        self.partials: list[exp.Expr] = []
        self.params: dict[str, list[str]] = {}
        self.guarded: set[int] = set()
        """Key indexes of geo dimensions: a value that may not be published is the label from the start."""

    def refuse(self, message: str) -> PolicyRefused:
        return PolicyRefused(f"policy.rollup: {message}")

    def label(self) -> exp.Expr:
        return exp.Literal.string(self.policy.other_label)

    def rewrite(self) -> dict[str, list[str]]:
        select = self.target.select
        # A constant key (GROUP BY @submission_date) is the same in every cell: it stays a constant.
        keys = [k for k in resolved_keys(select) if any(isinstance(n, exp.Column) for n in k.walk())]
        index = {k.sql(DIALECT): i for i, k in enumerate(keys)}
        outputs: list[exp.Expr] = []
        dims: dict[str, int] = {}
        for projection in select.selects:
            name = projection.alias_or_name
            inner = projection.unalias()
            if inner.sql(DIALECT) in index:
                dims[name] = index[inner.sql(DIALECT)]
                outputs.append(exp.alias_(exp.column(f"d{dims[name]}"), name))
            elif not any(isinstance(n, exp.Column) for n in inner.walk()):
                outputs.append(projection.copy())
            else:
                outputs.append(exp.alias_(self._combine(inner), name))
        having = select.args.get("having")
        final_having = self._combine(having.this) if having is not None else None
        steps = self._steps(dims)
        guards = self._geo_guards(dims)
        n = len(keys)
        unit = exp.column(self.unit, table=self.target.source)
        # Values a geo dimension may not publish take the label at once: they never form a cell.
        cells = exp.select(*(exp.alias_(guards[i](k.copy()) if i in guards else k.copy(), f"d{i}")
                             for i, k in enumerate(keys)),
                           exp.alias_(unit, self.unit), *self.partials)
        cells = cells.from_(select.args["from_"].this.copy())
        if select.args.get("where") is not None:
            cells.set("where", select.args["where"].copy())
        cells = cells.group_by(*(k.copy() for k in keys), unit.copy())
        ctes: list[tuple[str, exp.Query]] = [(CELLS, cells), *self._levels(n, steps)]
        ctes.append((ROLLED, self._relabelled(n, steps, ctes[-1][0])))
        final = exp.select(*outputs).from_(exp.to_table(ROLLED).as_(self.target.source))
        final = final.group_by(*(exp.column(f"d{i}") for i in range(n)))
        if final_having is not None:
            final = final.having(final_having)
        for name, body in ctes:
            define_cte_before(self.statement, name, body, select)
        # In place (the target may be the statement itself): its WITH, ORDER BY and LIMIT stay.
        for key in ("expressions", "from_", "joins", "laterals", "where", "group", "having", "qualify"):
            select.set(key, final.args.get(key))
        return self.params

    # -- what is summed within a group ----------------------------------------------------------

    def _partial(self, aggregate: exp.Expr) -> exp.Expr:
        """A column of the (group, client) pairs holding a partial aggregate."""
        name = f"p{len(self.partials)}"
        self.partials.append(exp.alias_(aggregate, name))
        return exp.column(name)

    def _combine(self, node: exp.Expr) -> exp.Expr:
        """The expression with every aggregate replaced by its re-aggregation over the partials."""
        node = node.copy()
        for aggregate in list(aggregates_in(node)):
            combined = self._recombined(aggregate)
            if aggregate is node:
                return combined
            aggregate.replace(combined)
        return node

    def _recombined(self, agg: exp.Expr) -> exp.Expr:
        if isinstance(agg, exp.Count) and isinstance(agg.this, exp.Distinct):
            args = agg.this.expressions
            if len(args) == 1 and _is_column(args[0], self.unit):
                return exp.Count(this=exp.Distinct(expressions=[exp.column(self.unit)]))
            if len(args) == 1 and isinstance(args[0], exp.If) and _is_column(args[0].args.get("true"), self.unit):
                flag = self._partial(exp.LogicalOr(this=args[0].this.copy()))
                return exp.Count(this=exp.Distinct(expressions=[
                    exp.If(this=flag, true=exp.column(self.unit), false=exp.Null())]))
            raise self.refuse(f"{agg.sql(DIALECT)} cannot be re-aggregated from (group, client) pairs: count "
                              f"distinct clients ({self.unit}), or write the grouping into Other yourself")
        if isinstance(agg, (exp.Sum, exp.Count, exp.CountIf)):
            return exp.Sum(this=self._partial(agg.copy()))
        if isinstance(agg, exp.Avg):
            total = self._partial(exp.Sum(this=agg.this.copy()))
            count = self._partial(exp.Count(this=agg.this.copy()))
            return exp.func("SAFE_DIVIDE", exp.Sum(this=total), exp.Sum(this=count))
        if isinstance(agg, (exp.Min, exp.Max)):
            return type(agg)(this=self._partial(agg.copy()))
        name = agg.sql(DIALECT).split("(", 1)[0].upper()
        raise self.refuse(f"{name} cannot be re-aggregated from (group, client) pairs; use SUM, COUNT, COUNTIF, "
                          f"AVG, MIN, MAX or COUNT(DISTINCT {self.unit}) (also IF(condition, {self.unit}, NULL)), or "
                          "write the grouping into Other yourself")

    # -- the steps ------------------------------------------------------------------------------

    def _steps(self, dims: dict[str, int]) -> dict[int, int]:
        """Key index -> the step (1-based) from which it is relabelled."""
        assert self.policy.rollup is not None
        kinds = {d.name: d.kind for d in self.policy.dimensions}
        first: dict[int, int] = {}
        for level, step in enumerate(self.policy.rollup.steps, start=1):
            for name in [step] if isinstance(step, str) else step:
                if name not in dims:
                    raise self.refuse(f"dimension {name} is not a grouping key of the query's aggregation: group by it")
                if kinds.get(name) in NOT_RELABELLED:
                    raise self.refuse(f"dimension {name} is a {kinds[name]}, which cannot be relabelled "
                                      f"{self.policy.other_label!r}: roll up categorical, version and geo dimensions")
                first[dims[name]] = level
        return first

    def _levels(self, n: int, first: dict[int, int]) -> list[tuple[str, exp.Query]]:
        """CTEs giving each (group, client) pair the first level at which its cell is big enough.

        Level 0 publishes cells as they are; level s relabels the dimensions of steps 1..s; only
        pairs no earlier level kept are grouped again.
        """
        k = self.policy.min_bucket_size
        out: list[tuple[str, exp.Query]] = []
        previous = CELLS
        for level in range(max(first.values(), default=0) + 1):
            def cell(i: int, level: int = level) -> exp.Expr:
                return self.label() if first.get(i, level + 1) <= level else exp.column(f"d{i}", table="c")

            pending = exp.column(LEVEL, table="c").is_(exp.Null()) if level else None
            big = exp.select(*(exp.alias_(cell(i), f"d{i}") for i in range(n)), exp.alias_(exp.true(), HIT))
            big = big.from_(exp.to_table(previous).as_("c"))
            # An unknown place is not a place: its clients wait for the step that relabels the dimension.
            unknown = [exp.NEQ(this=exp.column(f"d{i}", table="c"), expression=self.label())
                       for i in sorted(self.guarded) if first.get(i, level + 1) > level and i in first]
            filters = ([pending.copy()] if pending is not None else []) + unknown
            if filters:
                big = big.where(exp.and_(*filters))
            big = big.group_by(*(exp.Literal.number(i + 1) for i in range(n)))
            big = big.having(exp.GTE(this=exp.Count(this=exp.Distinct(expressions=[exp.column(self.unit, table="c")])),
                                     expression=exp.Literal.number(k)))
            big_name = f"_pubdata_big_{level}"
            out.append((big_name, big))
            conditions: list[exp.Expr] = [exp.NullSafeEQ(this=cell(i), expression=exp.column(f"d{i}", table="b"))
                                          for i in range(n)]
            if pending is not None:
                conditions.insert(0, pending.copy())
            hit = exp.If(this=exp.column(HIT, table="b"), true=exp.Literal.number(level), false=exp.Null())
            if level:
                star = exp.Column(this=exp.Star(except_=[exp.column(LEVEL)]), table=exp.to_identifier("c"))
                marked = exp.select(star, exp.alias_(exp.func("COALESCE", exp.column(LEVEL, table="c"), hit), LEVEL))
            else:
                marked = exp.select(exp.Column(this=exp.Star(), table=exp.to_identifier("c")), exp.alias_(hit, LEVEL))
            on = exp.and_(*conditions) if conditions else exp.true()
            marked = marked.from_(exp.to_table(previous).as_("c")).join(exp.to_table(big_name).as_("b"), on=on,
                                                                           join_type="left")
            previous = f"_pubdata_level_{level}"
            out.append((previous, marked))
        return out

    def _relabelled(self, n: int, first: dict[int, int], last: str) -> exp.Query:
        """Every pair under the labels its level gives (pairs no level kept: every step relabelled)."""
        top = max(first.values(), default=0)
        level = exp.func("COALESCE", exp.column(LEVEL), exp.Literal.number(top))
        fields: list[exp.Expr] = []
        for i in range(n):
            value: exp.Expr = exp.column(f"d{i}")
            if i in first:
                value = exp.If(this=exp.GTE(this=level.copy(), expression=exp.Literal.number(first[i])),
                               true=self.label(), false=value)
            fields.append(exp.alias_(value, f"d{i}"))
        fields.append(exp.column(self.unit))
        fields += [exp.column(p.alias) for p in self.partials]
        return exp.select(*fields).from_(last)

    def _geo_guards(self, dims: dict[str, int]) -> dict[int, Callable[[exp.Expr], exp.Expr]]:
        """For geo dimensions: the value when it may be published (an allowed country or city), else the label."""
        guards: dict[int, Callable[[exp.Expr], exp.Expr]] = {}
        kinds = {d.name: d.kind for d in self.policy.dimensions}
        for name, i in dims.items():
            kind = kinds.get(name)
            if kind in GEO_KINDS:
                param = f"_pubdata_valid_{name}"
                self.params[param] = sorted(place_values(str(kind)) - {self.policy.other_label})
                guards[i] = self._allowed_or_label(param)
                self.guarded.add(i)
        return guards

    def _allowed_or_label(self, param: str) -> Callable[[exp.Expr], exp.Expr]:
        allowed = exp.select("v").from_(exp.Unnest(expressions=[exp.Parameter(this=exp.Var(this=param))],
                                                   alias=exp.TableAlias(columns=[exp.to_identifier("v")])))

        def guard(value: exp.Expr) -> exp.Expr:
            # IN (SELECT ... FROM UNNEST(@list)): a hash semi-join on both engines, not a scan of the list per row.
            return exp.If(this=exp.In(this=value, query=exp.Subquery(this=allowed.copy())), true=value.copy(),
                          false=self.label())
        return guard


def _is_column(node: exp.Expr | None, name: str) -> bool:
    return isinstance(node, exp.Column) and node.name == name
