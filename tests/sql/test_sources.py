"""Only warehouse tables are sources: table functions, file-like names and functions that read
files, URLs, settings or the environment are refused before anything runs; honest queries pass."""

from __future__ import annotations

import pytest
import sqlglot

from pubdata.sql.rules import RULE_OUTSIDE_SOURCE
from pubdata.sql.sources import check_sources
from tests.support.derive import DS, derive
from tests.support.project import pubdata_cli


def _findings(sql: str) -> list[str]:
    return [f"{f.rule}: {f.message}" for f in check_sources(sqlglot.parse_one(sql, read="bigquery"))]


@pytest.mark.parametrize("sql, words", [
    ("SELECT * FROM read_csv('/etc/passwd')", "table function READ_CSV('/etc/passwd')"),
    ("SELECT content AS c FROM read_text('/home/airflow/airflow.cfg')", "table function READ_TEXT("),
    ("SELECT * FROM read_parquet(['a.parquet', 'b.parquet'])", "table function READ_PARQUET("),
    ("SELECT * FROM read_json('https://example.com/leak.json')", "table function READ_JSON("),
    ("SELECT * FROM EXTERNAL_QUERY('conn', 'SELECT 1')", "table function EXTERNAL_QUERY("),
    ("SELECT * FROM `/etc/passwd`", "names a file or URL"),
    ("SELECT * FROM `https://example.com/x`.y", "names a file or URL"),
    ("SELECT (SELECT content FROM read_text('/etc/hostname')) AS h FROM `p.d.t`", "table function READ_TEXT("),
    ("SELECT read_blob('/etc/hostname') AS b FROM `p.d.t`", "calls READ_BLOB"),
    ("SELECT current_setting('secret_directory') AS s FROM `p.d.t`", "calls CURRENT_SETTING"),
    ("SELECT getenv('HOME') AS h FROM `p.d.t`", "calls GETENV"),
    ("SELECT * FROM some_table", "neither a CTE nor a warehouse table"),
    ("WITH x AS (SELECT * FROM read_csv_auto('/tmp/f.csv')) SELECT * FROM x", "table function READ_CSV_AUTO("),
])
def test_reaching_outside_the_warehouse_is_refused(sql, words):
    findings = _findings(sql)
    assert len(findings) == 1 and findings[0].startswith(RULE_OUTSIDE_SOURCE), findings
    assert words.lower() in findings[0].lower(), findings


@pytest.mark.parametrize("sql", [
    "SELECT country FROM `moz-fx-data-shared-prod.telemetry.clients_daily`",
    "SELECT country FROM telemetry.clients_daily",
    "WITH cells AS (SELECT country FROM `p.d.t`) SELECT * FROM cells",
    "SELECT x FROM UNNEST([1, 2, 3]) AS x",
    "SELECT a FROM `p.d.t` AS t, t.arr AS a",
    "SELECT * FROM `moz-fx-data-shared-prod.telemetry_derived.events_*`",
    "SELECT read_count, reader FROM `p.d.t`",  # column names like a reader are not calls
])
def test_honest_sources_pass(sql):
    assert _findings(sql) == []


def test_check_names_the_query_file_and_the_rule(project):
    query = (project / f"sql/{DS}/page_loads_by_country_v1.sql").read_text()
    assert "`moz-fx-data-shared-prod.telemetry.clients_daily`" in query
    stem = derive(project, "page_loads_by_country_v1", "page_loads_leak_v1",
                  sql=query.replace("`moz-fx-data-shared-prod.telemetry.clients_daily`", "read_csv('/etc/passwd')"))
    proc = pubdata_cli("check", stem, env={"PUBDATA_PROJECT": str(project)})
    assert proc.returncode == 1
    assert (f"✗ sql/{DS}/page_loads_leak_v1.sql: sql: outside_source: the query reads from the table function "
            "read_csv('/etc/passwd'), which is not a warehouse table.") in proc.stdout, proc.stdout
