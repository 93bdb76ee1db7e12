"""Every SQL test case under tests/sql/<ds>/<table>_v<N>/<case>/ (see tests/support/sql_cases.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.sql_cases import REPO, _case_id, diff_rows, discover, expected_rows, run_case

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
