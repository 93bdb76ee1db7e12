"""The CI guard on the DAG parse budget (bench/parse.py; the full benchmark is `make bench`).

100 declarations are parsed the way the dag processor parses them, twice in one process: the
second parse gives the cost per declaration without one-off imports. The budget is 1,000
declarations in under 2 s, so one declaration may cost at most 2 ms; bench/RESULTS.md has the
full measurement (about 0.85 ms on a 2-core machine).
"""

from __future__ import annotations

import pytest

from bench import parse

BUDGET_S_PER_DECLARATION = parse.TARGET_SECONDS_AT_1000 / 1000

pytestmark = pytest.mark.airflow


def test_parse_budget_and_no_heavy_imports(tmp_path):
    result = parse.smoke(100, work=tmp_path)
    assert not result["import_errors"], result["import_errors"]
    assert result["dags"] == 100 and result["warm"]["dags"] == 100
    assert result["heavy_modules"] == [], "GX, google, duckdb, sqlglot or pyarrow imported while parsing DAGs"
    per_decl = result["per_declaration_s"]
    assert per_decl < BUDGET_S_PER_DECLARATION, (
        f"{per_decl * 1000:.2f} ms per declaration: 1,000 would take {per_decl * 1000:.1f} s, over the "
        f"{parse.TARGET_SECONDS_AT_1000:g} s budget (run `make bench` and see bench/RESULTS.md)")
