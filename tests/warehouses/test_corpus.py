"""One small query per construct Mozilla's public queries use, each with a SQL test case proving
what the embedded engine returns (tests/warehouses/corpus/<construct>/query.sql and its cases,
laid out like tests/sql: input rows per table, query_params.yaml, expect.yaml; a case named
test_init renders `is_init()` true). The queries are written as BigQuery SQL, so each expect.yaml
is also what BigQuery returns; verbatim_mozregression_aggregates is one of bigquery-etl's public
queries as it is there (its SOURCE.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pubdata.sql.parse import parse
from tests.support.sql_cases import diff_rows, expected_rows, run_query

CORPUS = Path(__file__).parent / "corpus"
CASES = sorted(p for p in CORPUS.glob("*/*") if p.is_dir())
CONSTRUCTS = ("json_extraction", "histogram_maps", "nested_unnest", "full_outer_join", "star_except", "qualify",
              "safe_divide", "approx_quantiles", "templated_init", "temp_function", "verbatim_mozregression_aggregates")


def test_every_construct_has_a_case():
    assert sorted({c.parent.name for c in CASES}) == sorted(CONSTRUCTS)


@pytest.mark.parametrize("case", CASES, ids=[f"{c.parent.name}/{c.name}" for c in CASES])
def test_corpus_case(case: Path, production_schemas, tmp_path):
    query = (case.parent / "query.sql").read_text(encoding="utf-8")
    statement, findings = parse(query)
    assert statement is not None and not findings, findings
    problems = diff_rows(run_query(query, case, production_schemas, tmp_path), expected_rows(case))
    assert not problems, f"{case.parent.name}/{case.name}: the query's rows differ from expect:\n{problems}"
