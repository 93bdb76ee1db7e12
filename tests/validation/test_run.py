"""Every expectation really runs in DuckDB: it passes on good data and fails on bad data, for the
data's reason; an expectation GX cannot evaluate is an error, never a pass."""

from __future__ import annotations

import pytest

from pubdata.errors import ExpectationsFileError
from pubdata.validation import expectations_file
from pubdata.validation.run import validate
from pubdata.validation.spec import ExpectationSpec
from pubdata.warehouses.base import StagedTable
from tests.support.project import GOOD_ROWS


def _status(report, description_start: str) -> str:
    matches = [c for c in report.checks if c.description.startswith(description_start)]
    assert matches, [c.description for c in report.checks]
    return matches[0].status


def test_good_data_passes_every_policy_expectation(decl, stage_sql):
    wh, staged = stage_sql(GOOD_ROWS)
    report = validate(decl, wh, staged)
    assert report.outcome == "passed", report.summary()
    assert report.row_count == 3
    assert all(c.status == "passed" for c in report.checks)
    assert {c.expectation for c in report.checks} >= {
        "ExpectTableColumnsToMatchSet", "ExpectTableColumnsToExcludeForbidden", "ExpectTableRowCountToBeBetween",
        "ExpectColumnValuesToNotBeNull", "ExpectColumnValuesToBeBetween",
    }


@pytest.mark.parametrize(
    "sql, failing, observed_check",
    [
        # a cell below the minimum bucket
        (GOOD_ROWS.replace("90000, 5000", "90000, 4999"), "every row, Other rows included", lambda c: c.observed == 1 and 4999 in c.unexpected_sample),
        # the Other row itself below the minimum
        (GOOD_ROWS.replace("400000, 25000", "400000, 1200"), "every row, Other rows included",
         lambda c: 1200 in c.unexpected_sample and c.finding == "1 row below 5,000" and c.cells == [
             {"submission_date": "2026-11-01", "country": "Other", "os": "Other", "locale": "Other",
              "normalized_channel": "Other", "client_count": 1200}]),
        # a null bucket is not a small bucket that slips through
        (GOOD_ROWS.replace("90000, 5000", "90000, NULL"), "client_count is never null", lambda c: c.observed == 1),
        # a forbidden column
        (f"SELECT *, 'x' AS client_id FROM ({GOOD_ROWS})", "no forbidden column", lambda c: "client_id" in c.observed),
        # columns differ from the declaration
        (f"SELECT * EXCLUDE (locale) FROM ({GOOD_ROWS})", "columns equal the declared", lambda c: True),
        # empty result
        (f"SELECT * FROM ({GOOD_ROWS}) WHERE false", "the query returns at least one row",
         lambda c: c.observed == 0 and c.finding == "the query returned no rows"),
        # a null dimension
        (GOOD_ROWS.replace("'DE', 'Windows_NT'", "NULL, 'Windows_NT'"), "dimension country is never null",
         lambda c: c.observed == 1 and c.finding == "1 row with no country"
         and c.cells == [{"submission_date": "2026-11-01", "os": "Windows_NT", "locale": "de",
                          "normalized_channel": "release", "country": None}]),
    ],
)
def test_bad_data_fails_for_its_reason(decl, stage_sql, sql, failing, observed_check):
    wh, staged = stage_sql(sql)
    report = validate(decl, wh, staged)
    assert report.outcome == "failed", report.summary()
    failed = [c for c in report.failures if c.description.startswith(failing)]
    assert failed, report.summary()
    assert observed_check(failed[0]), (failed[0].observed, failed[0].unexpected_sample)
    assert not report.errors


@pytest.mark.parametrize("broken", [
    # SQL that cannot run: GX records an exception instead of a result
    ExpectationSpec("UnexpectedRowsExpectation", {"unexpected_rows_query": "SELECT * FROM {batch} WHERE no_such_column > 0"},
                    description="a query over a column that does not exist"),
    # stock GX refuses regular expressions on the duckdb dialect
    ExpectationSpec("ExpectColumnValuesToMatchRegex", {"column": "country", "regex": "^[A-Z]{2}$|^Other$"},
                    description="a regex GX cannot evaluate here"),
])
def test_gx_exception_is_an_error_not_a_pass(decl, stage_sql, broken):
    wh, staged = stage_sql(GOOD_ROWS)
    report = validate(decl, wh, staged, specs=[broken])
    assert report.outcome == "error"
    assert report.errors and report.errors[0].error
    assert not report.failures


def test_unreachable_table_is_an_error(decl, stage_sql):
    wh, staged = stage_sql(GOOD_ROWS)
    gone = StagedTable(staged.dataset_id, staged.location, "stage_missing", staged.partition)
    report = validate(decl, wh, gone)
    assert report.outcome == "error"


def test_warn_severity_does_not_fail(decl, stage_sql):
    wh, staged = stage_sql(GOOD_ROWS)
    specs = [ExpectationSpec("UnexpectedRowsExpectation",
                             {"unexpected_rows_query": "SELECT * FROM {batch} WHERE page_loads > 100000"},
                             severity="warn", description="page loads look high")]
    report = validate(decl, wh, staged, specs=specs)
    assert report.outcome == "passed"
    assert [c.status for c in report.checks] == ["warning"]
    assert report.warnings[0].observed == 2


def test_sql_expectation_fails_on_bad_rows(decl, stage_sql):
    wh, staged = stage_sql(GOOD_ROWS)
    specs = [ExpectationSpec("UnexpectedRowsExpectation",
                             {"unexpected_rows_query": "SELECT * FROM {batch} WHERE page_loads < client_count * 10"},
                             description="at least ten page loads per client")]
    assert validate(decl, wh, staged, specs=specs).outcome == "passed"
    wh, staged = stage_sql(GOOD_ROWS.replace("90000, 5000", "900, 5000"))
    report = validate(decl, wh, staged, specs=specs)
    assert report.outcome == "failed" and report.failures[0].observed == 1


def test_dataset_expectations_file(tmp_path):
    path = tmp_path / "e.yaml"
    path.write_text(
        "expectations:\n"
        "  - expectation: expect_column_values_to_be_between\n"
        "    kwargs: {column: page_loads, min_value: 0}\n"
        "  - sql: SELECT * FROM {batch} WHERE page_loads < 0\n"
        "    severity: warn\n"
        "    description: no negative page loads\n"
    )
    specs = expectations_file.load(path).specs
    assert [s.name for s in specs] == ["ExpectColumnValuesToBeBetween", "UnexpectedRowsExpectation"]
    assert specs[1].severity == "warn"


@pytest.mark.parametrize(
    "text, words",
    [
        ("expectations:\n  - expectation: expect_the_impossible\n", "expectations[0].expectation"),
        ("expectations:\n  - expectation: expect_column_values_to_be_between\n    kwargs: {colum: x}\n", "expectations[0].kwargs"),
        ("expectations:\n  - sql: SELECT 1\n    severity: maybe\n", "expectations[0].severity"),
        ("checks: []\n", "top-level key"),
    ],
)
def test_bad_expectations_file_is_named(tmp_path, text, words):
    path = tmp_path / "e.yaml"
    path.write_text(text)
    with pytest.raises(ExpectationsFileError) as exc:
        expectations_file.load(path).specs
    assert str(path) in str(exc.value) and words in str(exc.value)
