"""Every SQL test case under tests/sql/<ds>/<table>_v<N>/<case>/ (see tests/support/sql_cases.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.sql_cases import REPO, _case_id, diff_rows, discover, expected_rows, run_case, source_schemas


@pytest.fixture(scope="session")
def production_schemas(tmp_path_factory) -> dict[str, list[tuple[str, str]]]:
    """The source tables' columns and types, from a tiny synthetic warehouse (same DDL as every run)."""
    from pubdata.sources.synthetic import SynthSpec, generate

    path = tmp_path_factory.mktemp("schemas") / "schemas.duckdb"
    generate(path, SynthSpec(scale=3, days=1))
    return source_schemas(path)


CASES = discover()


def test_every_case_has_a_declared_dataset():
    orphans = [_case_id(c) for c in CASES if not (REPO / "metadata" / c.parent.parent.name / f"{c.parent.name}.yaml").is_file()]
    assert CASES, "no SQL test cases under tests/sql"
    assert orphans == [], "test cases for datasets that are not declared"


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_sql_case(case: Path, production_schemas, tmp_path):
    actual = run_case(case, REPO, production_schemas, tmp_path)
    problems = diff_rows(actual, expected_rows(case))
    assert not problems, f"{case.relative_to(REPO)}: the query's rows differ from expect:\n{problems}"
