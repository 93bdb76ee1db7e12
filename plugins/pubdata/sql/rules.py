"""Static checks of a reviewed query against its declaration.

The steward reviews a declaration; these checks make sure the query publishes what was reviewed
and nothing else: the declared columns, no forbidden column (as a column or derived from one),
only the declared source tables, and the same result every time it runs for a date. They run
before any data is read, so a bad query fails `pubdata check`, not a production run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.scope import Scope, build_scope

from pubdata.declarations.spec import DeclarationFile
from pubdata.policy.forbidden import ForbiddenRule, forbidden_rule, forbidden_rules
from pubdata.sql.lineage import RULE_FORBIDDEN_LINEAGE, check_lineage
from pubdata.sql.parse import DIALECT, RULE_PARSE, Finding, parse
from pubdata.sql.projections import PROJECTIONS, Unresolved, scope_projections, table_name
from pubdata.sql.shape import Shape, analyze
from pubdata.sql.sources import RULE_OUTSIDE_SOURCE, check_sources

RULE_OUTPUT_COLUMNS = "output_columns"
RULE_FORBIDDEN_COLUMN = "forbidden_column"
RULE_SOURCE_TABLES = "source_tables"
RULE_NONDETERMINISTIC = "nondeterministic"
RULE_UNKNOWN_FUNCTION = "unknown_function"

__all__ = ["RULE_FORBIDDEN_LINEAGE", "RULE_OUTSIDE_SOURCE", "RULE_PARSE", "Finding", "QueryAnalysis", "analyze_query",
           "check_query"]

NONDETERMINISTIC_FUNCTIONS = frozenset({
    "RAND", "RANDOM", "RANDN", "RANDSTR", "UUID", "GENERATE_UUID", "NEWID",
    "CURRENT_DATE", "CURRENT_DATETIME", "CURRENT_TIME", "CURRENT_TIMESTAMP", "NOW", "SYSDATE",
    "SYSTIMESTAMP", "GETDATE", "LOCALTIME", "LOCALTIMESTAMP",
    "SESSION_USER", "CURRENT_USER",
})
"""Functions whose value changes between runs: a backfill would not reproduce what was published."""


@dataclass
class QueryAnalysis:
    """What the static checks found, and the query's shape (which stage instruments)."""

    statement: exp.Query | None
    shape: Shape | None
    findings: list[Finding]


def check_query(sql: str, spec: DeclarationFile) -> list[Finding]:
    """Every finding for `sql` as the reviewed query of `spec`; an empty list means it passes."""
    return analyze_query(sql, spec).findings


def analyze_query(sql: str, spec: DeclarationFile) -> QueryAnalysis:
    try:
        return _analyze(sql, spec)
    except RecursionError:  # the parser and every rule walk the tree recursively
        return QueryAnalysis(None, None, [Finding(
            RULE_PARSE, "the query nests expressions too deeply to be checked (thousands of parentheses, or one "
            "expression of thousands of terms).", "split it: compute parts in CTEs, sum columns with fewer terms each")])


def _analyze(sql: str, spec: DeclarationFile) -> QueryAnalysis:
    statement, findings = parse(sql)
    if statement is None:
        return QueryAnalysis(None, None, findings)
    shape = None
    token = PROJECTIONS.set({})
    try:
        root = build_scope(statement)
        if root is None:
            raise SqlglotError("no SELECT found")
        rules = forbidden_rules()
        findings += _check_output_columns(root, spec, rules)
        findings += check_lineage(root, rules)
        findings += _check_source_tables(root, spec)
        shape = analyze(statement, spec)
        findings += shape.findings
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
        PROJECTIONS.reset(token)
    findings += _check_nondeterminism(statement)
    findings += check_sources(statement)
    findings += _check_functions(statement)
    return QueryAnalysis(statement, shape, findings)


def _check_functions(statement: exp.Expr) -> list[Finding]:
    """Every function the engines cannot resolve, named before anything runs."""
    from pubdata.warehouses import unresolved_functions

    return [Finding(RULE_UNKNOWN_FUNCTION, f"the query calls {problem}.",
                    "use a BigQuery built-in or one of Mozilla's functions listed in the README, or define it with "
                    "CREATE TEMP FUNCTION before the SELECT")
            for problem in unresolved_functions(statement)]


def _check_output_columns(root: Scope, spec: DeclarationFile, rules: tuple[ForbiddenRule, ...]) -> list[Finding]:
    declared = spec.policy.columns
    try:
        projections = scope_projections(root)
    except Unresolved as exc:
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
            read.setdefault(table_name(table))
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
                key = str(child.arg_key)
                place = f"the {_CLAUSES.get(key, key.rstrip('_').upper())} clause"
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
