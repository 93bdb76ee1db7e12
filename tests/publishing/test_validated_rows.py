"""Validation and export see the same rows: validate records a fingerprint of the staged table
(rows, and an order-independent hash computed in the warehouse), and export refuses to write a
single part when the table no longer has it."""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest

from pubdata.config import settings
from pubdata.errors import NotValidated, StagedTableChanged
from pubdata.orchestration import records, tasks
from pubdata.stores import open_store
from pubdata.warehouses import open_warehouse
from tests.support.project import EXAMPLE, GOOD_ROWS

DAY = dt.date(2026, 11, 1)


def _staged_and_validated(stage_sql) -> tuple:
    wh, staged = stage_sql(GOOD_ROWS)
    records.RunRecords.open(settings()).start(EXAMPLE, staged.partition, "manual")
    summary = tasks.validate(EXAMPLE, staged.to_dict())
    assert summary["outcome"] == "passed" and summary["fingerprint"].startswith("3:")
    return wh, staged, summary


def _write_to_staging(staged, sql: str) -> None:
    """What any other writer of the staging file could do between validate and export."""
    con = duckdb.connect(staged.location)
    con.execute(sql)
    con.close()


def test_the_validated_rows_are_exported(project, stage_sql):
    wh, staged, summary = _staged_and_validated(stage_sql)
    exported = tasks.export(EXAMPLE, staged.to_dict(), summary, "manual")
    assert exported and wh.fingerprint(staged) == summary["fingerprint"]
    assert records.RunRecords.open(settings()).get(EXAMPLE, staged.partition).validation.fingerprint == \
        summary["fingerprint"]


@pytest.mark.parametrize("change", [
    "UPDATE stage_20261101 SET page_loads = page_loads + 1 WHERE country = 'DE'",
    "INSERT INTO stage_20261101 SELECT * REPLACE ('FR' AS country) FROM stage_20261101 WHERE country = 'US'",
    "DELETE FROM stage_20261101 WHERE country = 'US'",
    # the same rows, one value swapped between two of them: count and column sums unchanged
    "UPDATE stage_20261101 SET locale = CASE country WHEN 'US' THEN 'de' WHEN 'DE' THEN 'en-US' ELSE locale END",
])
def test_a_table_changed_after_validation_is_not_exported(project, stage_sql, change):
    wh, staged, summary = _staged_and_validated(stage_sql)
    _write_to_staging(staged, change)
    with pytest.raises(StagedTableChanged, match="changed after validation") as exc:
        tasks.export(EXAMPLE, staged.to_dict(), summary, "manual")
    assert summary["fingerprint"] in str(exc.value) and "run the DAG again" in str(exc.value)
    # not one part was written, public or staged
    assert open_store(settings().bucket_url).list("") == [] and tasks.staging_store(settings()).list("") == []


def test_the_fingerprint_ignores_row_order(project, stage_sql):
    wh, staged = stage_sql(GOOD_ROWS)
    before = wh.fingerprint(staged)
    _write_to_staging(staged, "CREATE OR REPLACE TABLE stage_20261101 AS SELECT * FROM stage_20261101 "
                              "ORDER BY country DESC")
    assert wh.fingerprint(staged) == before


def test_a_validation_without_fingerprint_is_not_exported(project, stage_sql):
    wh, staged = stage_sql(GOOD_ROWS)
    with pytest.raises(NotValidated, match="no fingerprint"):
        tasks.export(EXAMPLE, staged.to_dict(), {"outcome": "passed", "checks": 1}, "manual")


def test_every_warehouse_has_a_fingerprint_in_its_own_sql(project):
    import sqlglot

    from pubdata.warehouses.bigquery import BigQueryWarehouse

    wh = open_warehouse(settings().warehouse_url, home=settings().home)
    for cls in (type(wh), BigQueryWarehouse):
        tree = sqlglot.parse_one(cls.FINGERPRINT.format(table="t"), read=cls.SQL_DIALECT)
        assert isinstance(tree, sqlglot.exp.Select)
