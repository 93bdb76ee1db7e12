"""BigQuery constructs whose stock sqlglot transpilation changes the result, run in real DuckDB
(warehouses/duckdb_dialect.py), and Mozilla's shared functions (warehouses/duckdb_routines.py)
against the asserts bigquery-etl ships with each."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import duckdb
import pytest
import sqlglot

from pubdata.errors import QueryError
from pubdata.warehouses.duckdb import transpile
from pubdata.warehouses.duckdb_dialect import unresolved_functions
from pubdata.warehouses.duckdb_routines import create_statements


@pytest.fixture
def con():
    con = duckdb.connect()
    for statement in create_statements():
        con.execute(statement)
    con.execute("""CREATE TABLE events AS SELECT * FROM (VALUES
        (1, '{"value": "on", "n": 3}'::JSON, 'a_b', '16.1.1', DATE '2026-11-01',
         [{'key': 1, 'value': 10}, {'key': 2, 'value': 20}]),
        (2, '{"value": "off"}'::JSON, 'axb', '5', DATE '2026-11-02', [{'key': 3, 'value': 30}])
        ) AS t(id, event_extra, name, os_version, day, histogram)""")
    yield con
    con.close()


def run(con, sql: str, params: dict | None = None):
    return con.execute(transpile(sql), params or {}).fetchall()


def test_string_of_a_json_string_is_its_value_without_quotes(con):
    assert run(con, "SELECT STRING(event_extra.value) AS v FROM events ORDER BY id") == [("on",), ("off",)]
    assert run(con, "SELECT COALESCE(STRING(event_extra.missing), '') AS v FROM events WHERE id = 1") == [("",)]
    # A plain string stays as it is.
    assert run(con, "SELECT STRING(name) FROM events WHERE id = 1") == [("a_b",)]


def test_like_escapes_with_a_backslash_as_in_bigquery(con):
    # Raw and ordinary string literals alike: \_ is a literal underscore, not any character.
    assert run(con, r"SELECT name FROM events WHERE name LIKE r'a\_b'") == [("a_b",)]
    assert run(con, "SELECT name FROM events WHERE name LIKE 'a\\\\_b'") == [("a_b",)]
    assert run(con, r"SELECT name FROM events WHERE name NOT LIKE r'%\_%' ORDER BY name") == [("axb",)]
    assert sorted(run(con, "SELECT name FROM events WHERE name LIKE 'a_b'")) == [("a_b",), ("axb",)]
    # An explicit ESCAPE is kept as written.
    assert run(con, "SELECT name FROM events WHERE name LIKE 'a!_b' ESCAPE '!'") == [("a_b",)]


def test_numeric_is_decimal_38_9(con):
    sql = transpile("SELECT CAST('12345678901234567890.123456789' AS NUMERIC) AS n, CAST(1 AS DECIMAL) AS d")
    assert "DECIMAL(38, 9)" in sql
    assert con.execute(sql).fetchall() == [(Decimal("12345678901234567890.123456789"), Decimal("1.000000000"))]
    assert con.execute(f"SELECT typeof(n) FROM ({sql})").fetchall() == [("DECIMAL(38,9)",)]
    # A precision written out is kept.
    assert con.execute(transpile("SELECT typeof(CAST(1 AS NUMERIC(10, 2)))")).fetchall() == [("DECIMAL(10,2)",)]


def test_date_sub_and_date_add_return_a_date(con):
    rows = run(con, "SELECT DATE_SUB(@submission_date, INTERVAL 1 DAY) AS d, DATE_ADD(day, INTERVAL 28 DAY) AS e "
                    "FROM events WHERE id = 1", {"submission_date": dt.date(2026, 11, 1)})
    assert rows == [(dt.date(2026, 10, 31), dt.date(2026, 11, 29))]
    assert all(type(v) is dt.date for v in rows[0])
    assert run(con, "SELECT id FROM events WHERE day = DATE_SUB(DATE '2026-11-03', INTERVAL 1 DAY)") == [(2,)]


def test_bare_struct_fields_after_an_unnest_without_alias_bind(con):
    rows = run(con, "SELECT id, key, value FROM events, UNNEST(histogram) WHERE key > 1 ORDER BY id, key")
    assert rows == [(1, 2, 20), (2, 3, 30)]
    rows = run(con, "SELECT id, SUM(value) AS s FROM events CROSS JOIN UNNEST(histogram) GROUP BY id ORDER BY id")
    assert rows == [(1, 30), (2, 30)]
    # With an alias, the element is the alias, as before.
    assert run(con, "SELECT h.key FROM events, UNNEST(histogram) AS h WHERE id = 2") == [(3,)]


def test_the_safe_prefix_gives_null_instead_of_an_error(con):
    assert run(con, "SELECT SAFE.PARSE_DATE('%Y-%m-%d', 'not a date'), SAFE.PARSE_DATE('%Y-%m-%d', '2026-11-01')") \
        == [(None, dt.date(2026, 11, 1))]
    assert run(con, "SELECT SAFE.mozfun.map.get_key(histogram, 2) FROM events WHERE id = 1") == [(20,)]
    assert "TRY(" in transpile("SELECT SAFE.mozfun.hist.extract(x) FROM t")


def test_hll_count_is_refused_naming_the_function_and_what_to_use():
    with pytest.raises(QueryError, match=r"HLL_COUNT\.MERGE\(\.\.\.\) is not supported on the embedded engine.*"
                                         r"COUNT\(DISTINCT"):
        transpile("SELECT HLL_COUNT.MERGE(sketch) AS n FROM events")
    with pytest.raises(QueryError, match=r"NET\.HOST\(\.\.\.\) is not supported on the embedded engine.*REGEXP_EXTRACT"):
        transpile("SELECT NET.HOST(url) AS host FROM events")


def test_mozilla_functions_keep_their_documented_results(con):
    # bigquery-etl's own asserts (sql/mozfun/<group>/<name>/udf.sql).
    rows = run(con, """SELECT mozfun.norm.truncate_version('16.1.1', 'minor'), mozfun.norm.truncate_version('16.03.1', 'minor'),
                       mozfun.norm.truncate_version('16.1.1', 'major'), mozfun.norm.truncate_version('10', 'minor'),
                       mozfun.norm.truncate_version('5.1.5-ubuntu-foobar', 'patch'), mozfun.norm.truncate_version('foo-bar', 'minor')""")
    assert rows == [(Decimal("16.1"), Decimal("16.03"), Decimal("16"), Decimal("10"), None, None)]
    assert run(con, "SELECT mozfun.map.get_key([STRUCT('foo' AS key, 42 AS value), ('bar', 12)], 'bar')") == [(12,)]
    assert run(con, "SELECT `moz-fx-data-shared-prod`.udf.get_key(histogram, 2) FROM events WHERE id = 1") == [(20,)]
    assert run(con, "SELECT mozfun.stats.mode_last(['foo', 'bar', 'baz', 'bar', 'baz', 'fred']), "
                    "mozfun.stats.mode_last([NULL, 'foo', NULL]), mozfun.stats.mode_last(['foo', 'bar', 'baz', 'bar'])") \
        == [("baz", "foo", "bar")]
    assert run(con, """SELECT mozfun.json.extract_int_map('{"0":12434,"1":297,"13":8}')""") == [
        ([{"key": 0, "value": 12434}, {"key": 1, "value": 297}, {"key": 13, "value": 8}],)]
    extracted = run(con, """SELECT mozfun.hist.extract(
        '{"bucket_count":10,"histogram_type":1,"sum":2628,"range":[1,100],"values":{"0":12434,"1":297,"13":8}}')""")
    assert extracted == [({"bucket_count": 10, "histogram_type": 1, "sum": 2628, "range": [1, 100],
                           "values": [{"key": 0, "value": 12434}, {"key": 1, "value": 297}, {"key": 13, "value": 8}]},)]
    compact = run(con, "SELECT mozfun.hist.extract('5;2;40;1,2;0:0,1:5,2:0').values, mozfun.hist.extract('0,3').sum, "
                       "mozfun.hist.extract('7').histogram_type")
    assert compact == [([{"key": 0, "value": 0}, {"key": 1, "value": 5}, {"key": 2, "value": 0}], 3, 4)]
    normalized = run(con, "SELECT mozfun.hist.normalize(mozfun.hist.extract('5;2;6;1,2;1:3,2:3')).values")
    assert normalized == [([{"key": 1, "value": 0.5}, {"key": 2, "value": 0.5}],)]


def test_check_names_each_function_the_engine_cannot_resolve():
    def names(sql: str) -> list[str]:
        return unresolved_functions(sqlglot.parse_one(sql, read="bigquery"))

    found = names("SELECT mozfun.hist.percentiles(h, [0.5]), HLL_COUNT.EXTRACT(s), no_such_fn(x), "
                  "mozfun.hist.extract(h), UPPER(x), SAFE_DIVIDE(a, b) FROM t")
    assert [f.split(":")[0] for f in found] == ["mozfun.hist.percentiles", "no_such_fn"]
    assert names("SELECT mozfun.norm.truncate_version(v, 'minor'), udf.get_key(m, 'k'), SAFE_DIVIDE(a, b) FROM t") == []
