"""What stage runs for an aggregated dataset: the reviewed query, counted and capped by the warehouse.

Every target SELECT of the query (sql.shape) gains COUNT(DISTINCT <privacy unit>) as
_pubdata_units, a key of its group as _pubdata_row, and HAVING <that count> >= the minimum
bucket, so no row under the minimum leaves the warehouse whatever the query says; both columns are
carried through the pass-through SELECTs to the staged table, where validation compares the
declared bucket column with the count, and export leaves them out. The same semantics as
BigQuery's SELECT WITH AGGREGATION_THRESHOLD (which is a HAVING on COUNT(DISTINCT unit)), written
as plain SQL so both engines run the same statement.

The differencing side query finds published rows whose clients are a subset of another row's,
differing by fewer clients than the minimum: publishing both would reveal the difference; and
rows that, less all the rows nested in them (a total less its published cells), leave fewer. Clients
in one row only cannot make a row a subset of another, so only clients in several rows are
compared, grouped by the set of rows they are in; DIFFERENCING_MAX_WORK caps the pairs examined.
Everything is generated as BigQuery SQL, which the embedded engine transpiles like the query.
"""

from __future__ import annotations

import dataclasses
import os

from sqlglot import exp

from pubdata.declarations.spec import DeclarationFile
from pubdata.errors import ConfigurationError, PolicyRefused
from pubdata.sql.parse import DIALECT, prepared
from pubdata.sql.projections import PROJECTIONS, is_star
from pubdata.sql.rollup import ROLLUP_PREFIXES, rollup
from pubdata.sql.rules import QueryAnalysis, analyze_query
from pubdata.sql.shape import Shape, Target, unit_column
from pubdata.sql.tree import define_cte_before, resolved_keys
from pubdata.warehouses.base import DIFFERENCING, DISJOINT, ROW, STAGED, UNITS, StagePlan

INPUT = "_pubdata_input_{}"
MAX_WORK_ENV = "PUBDATA_DIFFERENCING_MAX_WORK"
DEFAULT_MAX_WORK = 200_000_000
"""Pairs of (row, row) examined through shared clients, at most: 200M join rows take DuckDB about
two seconds on 2 cores (bench/RESULTS.md); beyond it the run fails as too large to check."""


def max_work() -> int:
    raw = os.environ.get(MAX_WORK_ENV) or str(DEFAULT_MAX_WORK)
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ConfigurationError(f"{MAX_WORK_ENV}={raw!r} is not a positive whole number of pairs")
    return value


def enforces_minimum(spec: DeclarationFile) -> bool:
    """Level 2 with the policy's minimum: the pipeline counts units and drops rows under it."""
    policy = spec.policy
    return policy.aggregation_level == 2 and policy.bucket_column is not None


def plan(sql: str, spec: DeclarationFile) -> StagePlan:
    """The stage plan of a reviewed query; PolicyRefused when its static checks fail."""
    if not enforces_minimum(spec):
        try:
            return StagePlan(prepared(sql))
        except ValueError as exc:
            raise PolicyRefused(f"the reviewed query cannot be prepared: {exc}") from None
    analysis = _checked(sql, spec)
    assert analysis.shape is not None
    _attributed_rows_only(analysis.shape, spec.policy.privacy_unit)
    params: dict[str, list[str]] = {}
    if spec.policy.rollup is not None:
        assert analysis.statement is not None and analysis.shape is not None
        token = PROJECTIONS.set({})
        try:
            params = rollup(analysis.statement, analysis.shape, spec)
        finally:
            PROJECTIONS.reset(token)
        analysis = _checked(analysis.statement.sql(DIALECT), spec, "the roll-up of the reviewed query")
    assert analysis.statement is not None and analysis.shape is not None
    token = PROJECTIONS.set({})
    try:
        return dataclasses.replace(_Planner(analysis.statement, analysis.shape, spec).plan(), params=params)
    finally:
        PROJECTIONS.reset(token)


def _attributed_rows_only(shape: Shape, unit: str) -> None:
    """Aggregate only rows that have a unit: a row without one (a NULL client_id, the far side of an
    outer join) would add its values to a published row without being counted in it, and two rows
    that differ by it would look identical to the differencing check."""
    for target in shape.targets:
        column = unit_column(unit, target.source or None)
        target.select.where(exp.Not(this=exp.Is(this=column, expression=exp.Null())), copy=False)


def _checked(sql: str, spec: DeclarationFile, what: str = "the reviewed query") -> QueryAnalysis:
    analysis = analyze_query(sql, spec)
    if analysis.findings or analysis.shape is None or analysis.statement is None:
        problems = "; ".join(f"[{f.rule}] {f.message}" for f in analysis.findings) or "it has no aggregation"
        raise PolicyRefused(f"{what} fails its static checks: {problems}")
    return analysis


def rolled_up(sql: str, spec: DeclarationFile) -> str:
    """The query as stage runs it after the roll-up (for `pubdata review` and tests); the query itself without one."""
    if spec.policy.rollup is None:
        return sql
    analysis = _checked(sql, spec)
    assert analysis.statement is not None and analysis.shape is not None
    token = PROJECTIONS.set({})
    try:
        rollup(analysis.statement, analysis.shape, spec)
    finally:
        PROJECTIONS.reset(token)
    return analysis.statement.sql(DIALECT, pretty=True)


class _Planner:
    def __init__(self, statement: exp.Query, shape: Shape, spec: DeclarationFile):
        self.statement, self.shape, self.spec = statement, shape, spec
        self.unit = spec.policy.privacy_unit
        self.k = spec.policy.min_bucket_size

    def plan(self) -> StagePlan:
        keys = [len(resolved_keys(t.select)) for t in self.shape.targets]
        rows = [self._rows(t) for t in self.shape.targets]
        materialize = self._inputs()
        for target in self.shape.targets:
            self._instrument(target)
        query = self.statement.sql(DIALECT)
        sides = ((DIFFERENCING, differencing_sql(rows, keys, self.k, max_work())),)
        # The roll-up's CTEs are each read twice (the next level's sizes and marks): compute them once.
        ctes = self.statement.args.get("with_")
        rolled = [c.alias_or_name for c in ctes.expressions if c.alias_or_name.startswith(ROLLUP_PREFIXES)] if ctes else []
        return StagePlan(query, tuple(dict.fromkeys([*materialize, *rolled])), sides)

    def _row_key(self, target: Target) -> exp.Expr:
        """TO_JSON_STRING(STRUCT(branch AS b, key0 AS k0, ...)): one published row's group, as text."""
        fields: list[exp.Expr] = [exp.alias_(exp.Literal.number(target.branch), "b")]
        fields += [exp.alias_(key.copy(), f"k{i}") for i, key in enumerate(resolved_keys(target.select))]
        return exp.func("TO_JSON_STRING", exp.Struct(expressions=fields))

    def _instrument(self, target: Target) -> None:
        select = target.select
        units = _count_distinct(unit_column(self.unit, target.source))
        select.select(exp.alias_(units, UNITS), exp.alias_(self._row_key(target), ROW),
                      exp.alias_(self._disjoint(), DISJOINT), copy=False)
        select.having(exp.GTE(this=units.copy(), expression=exp.Literal.number(self.k)), copy=False)
        bucket = self.spec.policy.bucket_column
        if self.shape.bucket == "filtered_units" and bucket:
            projection = next((p for p in select.selects if p.alias_or_name == bucket), None)
            if projection is not None:
                select.having(exp.GTE(this=projection.unalias().copy(), expression=exp.Literal.number(self.k)),
                              copy=False)
        for wrapper in reversed(target.wrappers):
            node = wrapper.expression
            assert isinstance(node, exp.Select)
            if any(is_star(p) for p in node.selects):
                continue  # * carries them
            (alias,) = wrapper.selected_sources
            node.select(*(exp.column(c, table=alias) for c in (UNITS, ROW, DISJOINT)), copy=False)

    def _inputs(self) -> list[str]:
        """Make each target read a CTE (wrapping a table or subquery it reads), and return their names.

        The check that every client is in one input row reads the same CTEs, so an engine that
        materializes them pays for the relation once.
        """
        names = []
        ctes = self.statement.args.get("with_")
        known = {c.alias_or_name for c in ctes.expressions} if ctes else set()
        for target in self.shape.targets:
            source = target.select.args["from_"].this
            if isinstance(source, exp.Table) and not source.db and source.name in known and not source.args.get("pivots"):
                names.append(source.name)
                continue
            name = INPUT.format(target.branch)
            define_cte_before(self.statement, name, exp.select("*").from_(source.copy()), target.select)
            target.select.set("from_", exp.From(this=exp.to_table(name).as_(target.source)))
            names.append(name)
        return names

    def _rows(self, target: Target) -> str:
        """The input rows of a target as its group keys (b, k0, k1, ...) and unit, from the sources."""
        select = target.select
        fields: list[exp.Expr] = [exp.alias_(exp.Literal.number(target.branch), "b")]
        fields += [exp.alias_(key.copy(), f"k{i}") for i, key in enumerate(resolved_keys(select))]
        fields.append(exp.alias_(unit_column(self.unit, target.source), "unit"))
        body = exp.select(*fields).from_(select.args["from_"].this.copy())
        where = select.args.get("where")
        if where is not None:
            body.set("where", where.copy())
        ctes = self.statement.args.get("with_")
        if ctes is not None:
            body.set("with_", ctes.copy())
        return body.sql(DIALECT)

    def _disjoint(self) -> exp.Expr:
        """(SELECT COUNT(*) = COUNT(DISTINCT unit) ...): true when every client is in one input row."""
        units = []
        for target in self.shape.targets:
            body = exp.select(exp.alias_(unit_column(self.unit, target.source), "unit")).from_(
                target.select.args["from_"].this.copy())
            where = target.select.args.get("where")
            if where is not None:
                body.set("where", where.copy())
            units.append(body)
        union: exp.Query = units[0]
        for more in units[1:]:
            union = exp.union(union, more, distinct=False)
        check = exp.select(exp.EQ(this=exp.Count(this=exp.Star()), expression=_count_distinct(exp.column("unit"))))
        return exp.Subquery(this=check.from_(exp.Subquery(this=union, alias=exp.TableAlias(this=exp.to_identifier("u")))))


def _count_distinct(column: exp.Expr) -> exp.Expr:
    return exp.Count(this=exp.Distinct(expressions=[column]))


def differencing_sql(rows: list[str], keys: list[int], k: int, work_cap: int) -> str:
    """Side query: nested pairs of published rows whose difference is 1 to k-1 clients, and a summary.

    `rows` are per target: (b, k0, k1, ..., unit) for the input rows of every group, `keys` the
    number of k columns of each. Only clients in two published rows or more are compared, grouped
    by the set of rows they are in. Output rows: kind
    'nested' (row_a is a subset of row_b and has 1 to k-1 fewer clients: units_a, units_b,
    difference); 'rest' (row_b minus every row nested in it leaves 1 to k-1 clients: the cells of
    a total published beside the total, with one cell withheld; units_a = clients covered); and one
    'summary' (units_a = clients in several published rows, units_b = distinct sets of rows,
    difference = pairs examined; over work_cap nothing is compared, and validation fails as too
    large to check).
    """
    parts = [f"_pubdata_rows_{i} AS ({sql})" for i, sql in enumerate(rows)]
    per_target = []
    members = []
    for i, n in enumerate(keys):
        names = ["b", *(f"k{j}" for j in range(n))]
        per_target.append(
            f"_pubdata_keys_{i} AS (SELECT g.*, TO_JSON_STRING(STRUCT({_fields(n)})) AS row_key FROM "
            f"(SELECT DISTINCT {', '.join(names)} FROM _pubdata_rows_{i}) AS g)")
        on = " AND ".join(f"r.{c} IS NOT DISTINCT FROM g.{c}" for c in names)
        members.append(f"SELECT p.gid, r.unit FROM _pubdata_rows_{i} AS r JOIN _pubdata_keys_{i} AS g ON {on} "
                       "JOIN _pubdata_ids AS p ON p.row_key = g.row_key")
    return f"""
WITH {', '.join(parts)},
_pubdata_published AS (SELECT {ROW} AS row_key, {UNITS} AS units FROM {STAGED}),
_pubdata_ids AS (SELECT row_key, units, ROW_NUMBER() OVER (ORDER BY row_key) AS gid FROM _pubdata_published),
{', '.join(per_target)},
_pubdata_pm AS (SELECT DISTINCT gid, unit FROM ({' UNION ALL '.join(members)})),
_pubdata_shared AS (
  SELECT unit, ARRAY_AGG(gid ORDER BY gid) AS rows_of FROM _pubdata_pm GROUP BY unit HAVING COUNT(*) > 1),
_pubdata_patterns AS (
  SELECT TO_JSON_STRING(rows_of) AS pattern, ANY_VALUE(rows_of) AS rows_of, COUNT(*) AS w
  FROM _pubdata_shared GROUP BY pattern),
_pubdata_work AS (
  SELECT COALESCE(SUM(w), 0) AS shared_units, COUNT(*) AS patterns,
         COALESCE(SUM(ARRAY_LENGTH(rows_of) * ARRAY_LENGTH(rows_of)), 0) AS work
  FROM _pubdata_patterns),
_pubdata_pairs AS (
  SELECT a AS gid_a, b AS gid_b, SUM(p.w) AS shared
  FROM _pubdata_patterns AS p, UNNEST(p.rows_of) AS a, UNNEST(p.rows_of) AS b
  WHERE a <> b AND (SELECT work FROM _pubdata_work) <= {int(work_cap)}
  GROUP BY a, b),
_pubdata_nested AS (
  SELECT q.gid_a, q.gid_b FROM _pubdata_pairs AS q
  JOIN _pubdata_ids AS pa ON pa.gid = q.gid_a JOIN _pubdata_ids AS pb ON pb.gid = q.gid_b
  WHERE q.shared = pa.units AND pb.units > pa.units),
_pubdata_covered AS (
  SELECT c.gid_b, SUM(c.w) AS covered FROM (
    SELECT DISTINCT p.pattern, p.w, b AS gid_b
    FROM _pubdata_patterns AS p, UNNEST(p.rows_of) AS a, UNNEST(p.rows_of) AS b
    JOIN _pubdata_nested AS n ON n.gid_a = a AND n.gid_b = b
    WHERE (SELECT work FROM _pubdata_work) <= {int(work_cap)}) AS c
  GROUP BY c.gid_b)
SELECT 'nested' AS kind, pa.row_key AS row_a, pb.row_key AS row_b, pa.units AS units_a, pb.units AS units_b,
       pb.units - pa.units AS difference
FROM _pubdata_nested AS q
JOIN _pubdata_ids AS pa ON pa.gid = q.gid_a
JOIN _pubdata_ids AS pb ON pb.gid = q.gid_b
WHERE pb.units - pa.units < {int(k)}
UNION ALL
SELECT 'rest' AS kind, CAST(NULL AS STRING) AS row_a, pb.row_key AS row_b, c.covered AS units_a, pb.units AS units_b,
       pb.units - c.covered AS difference
FROM _pubdata_covered AS c
JOIN _pubdata_ids AS pb ON pb.gid = c.gid_b
WHERE pb.units - c.covered BETWEEN 1 AND {int(k) - 1}
UNION ALL
SELECT 'summary' AS kind, CAST(NULL AS STRING) AS row_a, CAST(NULL AS STRING) AS row_b,
       shared_units AS units_a, patterns AS units_b, work AS difference
FROM _pubdata_work
"""


def _fields(keys: int) -> str:
    """`b AS b, k0 AS k0, ...`: the key columns of a groups query, in the row key's order."""
    return ", ".join(["b AS b", *(f"k{i} AS k{i}" for i in range(keys))])
