"""Expectation SQL is one read-only SELECT over {batch}: statements spliced in, writes, other
tables and file reads are refused at `check` time with file and line, and the query that runs is
rendered from the parsed tree in the warehouse's dialect; honest SQL still validates."""

from __future__ import annotations

import textwrap

import pytest

from pubdata.config import settings
from pubdata.declarations import load_all
from pubdata.errors import ExpectationsFileError
from pubdata.orchestration import records, tasks
from pubdata.validation import expectations_file
from pubdata.validation.batch_sql import BatchSqlError, batch_query
from pubdata.validation.run import validate
from pubdata.validation.suite import suite_for
from pubdata.warehouses.bigquery import BigQueryWarehouse
from pubdata.warehouses.duckdb import DuckDBWarehouse
from tests.support.project import EXAMPLE, GOOD_ROWS, pubdata_cli

EXPECTATIONS = "expectations/telemetry_public/page_loads_by_country_v1.yaml"
ATTACKS = {
    # the attack: close the parenthesis GX wraps the query in, then add statements
    "copy into the bucket": ("SELECT * FROM {batch} WHERE false) AS x; COPY stage_20261101 TO "
                             "'/srv/public/raw.csv'; SELECT (1", "does not parse"),
    "update after validation": ("SELECT * FROM {batch} WHERE false; UPDATE stage_20261101 SET page_loads = 0",
                                "exactly one SELECT; found 2 statements (SELECT, UPDATE)"),
    "write in a CTE": ("WITH gone AS (DELETE FROM stage_20261101 WHERE true RETURNING *) SELECT * FROM gone, {batch}",
                       "must only read; found DELETE"),
    "select into": ("SELECT * INTO leaked FROM {batch}", "must only read; found INTO"),
    "another table": ("SELECT * FROM {batch} JOIN telemetry.clients_daily USING (country)",
                      "reads telemetry.clients_daily: the only table an expectation reads is {batch}"),
    "a file": ("SELECT * FROM {batch}, read_text('/etc/passwd')", "table function read_text('/etc/passwd')"),
    "a setting": ("SELECT current_setting('secret_directory') AS s FROM {batch}", "calls CURRENT_SETTING"),
    "not a select": ("COPY (SELECT 1) TO '/tmp/x.csv'", "must be a SELECT"),
    "no batch": ("SELECT 1 AS one", "must read {batch}"),
}


def _file(project, text: str):
    path = project / EXPECTATIONS
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_each_attack_is_refused_at_check_time_with_file_and_line(project, attack):
    sql, words = ATTACKS[attack]
    path = _file(project, f"""\
        expectations:
          - expectation: expect_column_values_to_be_between
            kwargs: {{column: page_loads, min_value: 0}}
          - description: looks harmless
            sql: "{sql}"
        """)
    decl = load_all(project).declarations[EXAMPLE]
    with pytest.raises(ExpectationsFileError) as exc:
        expectations_file.load(path, decl)
    assert str(exc.value).startswith(f"{path}:5: expectations[1].sql: "), str(exc.value)
    assert words in str(exc.value)


def test_gx_expectations_that_run_sql_text_are_refused(project):
    path = _file(project, """\
        expectations:
          - expectation: unexpected_rows_expectation
            kwargs: {unexpected_rows_query: "SELECT * FROM {batch}; DROP TABLE stage_20261101"}
        """)
    with pytest.raises(ExpectationsFileError, match=r":2: expectations\[0\].expectation: UnexpectedRowsExpectation "
                                                    "runs SQL text as written; write the query under `sql:`"):
        expectations_file.load(path)
    path.write_text("expectations:\n  - expectation: expect_query_results_to_match_comparison\n"
                    "    kwargs: {base_query: SELECT 1, comparison_query: SELECT 2}\n")
    with pytest.raises(ExpectationsFileError, match="runs SQL text as written"):
        expectations_file.load(path)


def test_check_names_the_file_line_and_what_to_do(project):
    sql, _ = ATTACKS["update after validation"]
    _file(project, f'expectations:\n  - sql: "{sql}"\n')
    proc = pubdata_cli("check", EXAMPLE, env={"PUBDATA_PROJECT": str(project)})
    assert proc.returncode == 1
    out = " ".join(proc.stdout.split())
    assert f"✗ {EXPECTATIONS}:2: expectations: expectations[0].sql: must be exactly one" in out


def test_the_attack_never_reaches_the_warehouse_in_a_run(project, stage_sql):
    """The validate task loads the file itself: a refused file fails it as a data error, the
    staged table is unchanged and nothing is written."""
    sql, _ = ATTACKS["update after validation"]
    _file(project, f'expectations:\n  - sql: "{sql}"\n')
    wh, staged = stage_sql(GOOD_ROWS)
    records.RunRecords.open(settings()).start(EXAMPLE, staged.partition, "manual")
    before = wh.fingerprint(staged)
    with pytest.raises(ExpectationsFileError, match="must be exactly one SELECT"):
        tasks.validate(EXAMPLE, staged.to_dict())
    assert wh.fingerprint(staged) == before and wh.scalar(staged, "SELECT min(page_loads) FROM {table}") > 0


def test_the_query_that_runs_is_rendered_from_the_tree(project):
    written = ("select * from {batch} as t -- rows where the share is off\n"
               "where safe_divide(t.page_loads, t.client_count) > 1000 and t.os != 'it\\'s {{not}} a brace'")
    duck = batch_query(written, write=DuckDBWarehouse.SQL_DIALECT)
    assert duck.startswith("SELECT * FROM {batch} AS t")
    assert "--" not in duck and "safe_divide" not in duck.lower()  # BigQuery's SAFE_DIVIDE, as DuckDB writes it
    assert "'it''s {{not}} a brace'" in duck  # literals re-quoted, braces still escaped for GX
    bq = batch_query(written, write=BigQueryWarehouse.SQL_DIALECT)
    assert "SAFE_DIVIDE(t.page_loads, t.client_count)" in bq
    for refused in ("SELECT * FROM {batch} WHERE x = 1; SELECT 2", "SELECT * FROM pubdata_batch__"):
        with pytest.raises(BatchSqlError):
            batch_query(refused, write="duckdb")


def test_honest_sql_expectations_still_validate(project, stage_sql):
    _file(project, """\
        expectations:
          - sql: SELECT * FROM {batch} WHERE SAFE_DIVIDE(page_loads, client_count) < 10
            description: at least ten page loads per client
        totals: []
        """)
    decl = load_all(project).declarations[EXAMPLE]
    wh, staged = stage_sql(GOOD_ROWS)
    specs = [s for s in suite_for(decl, wh) if s.source == "dataset"]
    assert validate(decl, wh, staged, specs=specs).outcome == "passed"
    wh, staged = stage_sql(GOOD_ROWS.replace("90000, 5000", "900, 5000"))
    report = validate(decl, wh, staged, specs=specs)
    assert report.outcome == "failed" and report.failures[0].observed == 1
