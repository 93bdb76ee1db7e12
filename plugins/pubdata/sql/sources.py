"""Only warehouse tables are sources: a query that reaches outside the warehouse is refused.

A reviewed query is BigQuery SQL, but on the embedded stack DuckDB runs it, and DuckDB reads
files, globs and URLs through table functions (`read_csv('/any/path')`, `read_text`, `glob`) and
through quoted names that look like paths. The sandbox refuses them at run time (warehouses/
duckdb.py); this rule refuses them before: every table a query reads is a CTE or a table named
`dataset.table` or `project.dataset.table`, UNNEST is the only table function, and no function
that reads files, settings or the environment is called anywhere. The same check guards the SQL
of the datasets' expectations (validation/batch_sql.py).
"""

from __future__ import annotations

import re

from sqlglot import exp

from pubdata.sql.parse import DIALECT, Finding

RULE_OUTSIDE_SOURCE = "outside_source"

_NAME_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*\*?$")
"""A project, dataset or table name (project ids hold dashes, wildcard tables end in *): anything
else, a slash or a colon, is a path or a URL."""
OUTSIDE_FUNCTIONS = re.compile(
    r"^(READ_\w+|\w+_SCAN|PARQUET_\w+|SNIFF_CSV|GLOB|QUERY|QUERY_TABLE|EXTERNAL_QUERY|GETENV|CURRENT_SETTING|"
    r"DUCKDB_\w+|PRAGMA_\w+|WHICH_SECRET|LOAD_\w+|HTTP_\w+|ICEBERG_\w+|DELTA_\w+|FROM_\w+_FILE)$",
    re.IGNORECASE,
)
"""Functions that read files, URLs, other databases, settings or the environment (DuckDB's and BigQuery's)."""
FIX = ("read production tables by name (`project.dataset.table`) and arrays with UNNEST; the embedded engine "
       "reads nothing but the warehouse's own tables")


def function_name(node: exp.Expr) -> str:
    """The SQL name of a function call (ANONYMOUS calls by their own name), upper-case."""
    if isinstance(node, exp.Anonymous):
        return str(node.this).upper()
    return node.sql_name().upper() if isinstance(node, exp.Func) else ""


def check_sources(statement: exp.Expr, allowed_tables: frozenset[str] = frozenset()) -> list[Finding]:
    """Findings for every table function, file-like name or file-reading function in the statement.

    allowed_tables: unqualified names that are not CTEs but may be read (the `{batch}` of an
    expectation). Unqualified names otherwise are refused: a production table has a dataset.
    """
    ctes = {cte.alias_or_name for cte in statement.find_all(exp.CTE)}
    findings: list[Finding] = []
    for table in statement.find_all(exp.Table):
        if isinstance(table.this, exp.Func):
            findings.append(Finding(
                RULE_OUTSIDE_SOURCE,
                f"the query reads from the table function {_short(table.this)}, which is not a warehouse table.",
                FIX,
            ))
            continue
        parts = [p.name for p in table.parts]
        if not all(_NAME_PART.match(p) for p in parts):
            findings.append(Finding(
                RULE_OUTSIDE_SOURCE,
                f"the query reads {_short(table)}, which names a file or URL, not a warehouse table.",
                FIX,
            ))
        elif len(parts) == 1 and parts[0] not in ctes and parts[0] not in allowed_tables:
            findings.append(Finding(
                RULE_OUTSIDE_SOURCE,
                f"the query reads {parts[0]}, which is neither a CTE nor a warehouse table (`dataset.table`).",
                FIX,
            ))
    for node in statement.find_all(exp.Func):
        if isinstance(node.parent, exp.Table) and node.parent.this is node:
            continue  # reported above as a table function
        name = function_name(node)
        if OUTSIDE_FUNCTIONS.match(name):
            findings.append(Finding(
                RULE_OUTSIDE_SOURCE,
                f"the query calls {name}, which reads outside the warehouse (files, URLs, settings or the environment).",
                FIX,
            ))
    return _unique(findings)


def _short(node: exp.Expr, limit: int = 80) -> str:
    text = node.sql(DIALECT)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _unique(findings: list[Finding]) -> list[Finding]:
    return list(dict.fromkeys(findings))
