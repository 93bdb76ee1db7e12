"""What every declared dataset must satisfy, with no per-dataset code: adding a declaration adds
its cases here. The DAG folder is parsed once, in one subprocess (as the dag processor would);
queries run on the embedded DuckDB engine directly, never through an Airflow run.

A declaration the policy does not let publish (the repository keeps one as the example of a
refusal) must fail `pubdata check` on the policy alone, with a fix, and get no DAG but a line in
the errors DAG; everything else about it is held to the same rules.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import sqlglot
from sqlglot import exp

from pubdata import gate
from pubdata.declarations import load_all
from pubdata.orchestration.dag_factory import CATALOG_DAG_ID, ERRORS_DAG_ID, WAREHOUSE_POOL, source_task_id
from pubdata.orchestration.tasks import query_params
from pubdata.policy import verdict as policy
from pubdata.sources.synthetic import DEFAULT_END
from pubdata.sql.parse import prepared
from pubdata.sql.rewrite import enforces_minimum, plan
from pubdata.warehouses.base import INTERNAL_COLUMNS, UNITS
from pubdata.warehouses.duckdb import DuckDBWarehouse, transpile
from tests.support.project import REPO

CATALOG = load_all(REPO)
DECLS = sorted(CATALOG.declarations.values(), key=lambda d: d.id)
IDS = [d.id for d in DECLS]
PUBLISHABLE = [d for d in DECLS if policy.verdict(d.spec).allows_publish]
PUBLISHABLE_IDS = [d.id for d in PUBLISHABLE]
TASKS = {"stage": [], "validate": ["stage"], "export": ["validate"], "publish": ["export"]}  # the real chain only


def expected_tasks(decl) -> dict[str, list[str]]:
    """The chain, after one source-readiness wait per declared source table."""
    waits = sorted(source_task_id(t) for t in decl.spec.source_tables)
    return {**{w: [] for w in waits}, **TASKS, "stage": waits}


def test_every_declaration_loads():
    assert DECLS, "no declarations under metadata/"
    assert [str(e) for e in CATALOG.problems] == []


@pytest.mark.parametrize("decl", DECLS, ids=IDS)
def test_passes_check(decl):
    problems = gate.check_declaration(decl, REPO)
    if decl in PUBLISHABLE:
        assert not problems, "\n".join(f"{p.file}: {p.rule}: {p.message} (fix: {p.fix})" for p in problems)
    else:
        assert [p.rule.split(":")[0] for p in problems] == ["policy"], problems
        assert problems[0].fix, "a refusal must say what to change"


@pytest.mark.parametrize("decl", DECLS, ids=IDS)
def test_query_parses_as_bigquery_sql_and_transpiles(decl):
    text = prepared(decl.query)  # bqetl's Jinja rendered for a daily run, as stage renders it
    tree = sqlglot.parse_one(text, read="bigquery")
    assert isinstance(tree, exp.Query)
    duck = sqlglot.parse_one(transpile(text), read="duckdb")
    assert [s.alias_or_name for s in duck.selects] == decl.spec.policy.columns


@pytest.mark.parametrize("decl", DECLS, ids=IDS)
def test_query_runs_on_duckdb_and_keeps_the_minimum_bucket(decl, source_warehouse, tmp_path):
    """On the synthetic warehouse (the test scale), staged as a run stages it: rows come out, in the
    declared columns, none below the minimum by the declared count or by the pipeline's own."""
    day = DEFAULT_END
    partition = day if decl.spec.incremental else None
    warehouse = DuckDBWarehouse(source_warehouse, tmp_path)
    enforced = enforces_minimum(decl.spec)
    staged = warehouse.stage(decl.id, plan(decl.query, decl.spec), query_params(decl, day), partition,
                             partition_field=decl.spec.partition_field)
    internal = list(INTERNAL_COLUMNS) if enforced else []
    assert [c.name for c in warehouse.columns(staged)] == decl.spec.policy.columns + internal
    assert warehouse.scalar(staged, "SELECT count(*) FROM {table}") > 0, "no rows at the test scale: rethink the grouping"
    p = decl.spec.policy
    if p.bucket_column:
        small = warehouse.scalar(staged, f'SELECT count(*) FROM {{table}} WHERE "{p.bucket_column}" < {p.min_bucket_size} '
                                         f'OR {UNITS} < {p.min_bucket_size}')
        assert small == 0


@pytest.mark.parametrize("decl", PUBLISHABLE, ids=PUBLISHABLE_IDS)
def test_has_a_sql_test_case(decl):
    cases = REPO / "tests" / "sql" / decl.dataset / f"{decl.table}_v{decl.version}"
    assert list(cases.glob("*/expect.*")), f"add a SQL test case under {cases.relative_to(REPO)}/<case>/ (see tests/sql/test_cases.py)"


_DAGBAG = textwrap.dedent("""
    import json, os, sys
    from airflow.dag_processing.dagbag import DagBag
    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    heavy = sorted(m for m in sys.modules if m.startswith(("great_expectations", "google.cloud", "duckdb", "sqlglot")))
    dags = {}
    for dag_id, dag in bag.dags.items():
        dags[dag_id] = {
            "upstream": {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks},
            "pools": {t.task_id: t.pool for t in dag.tasks},
            "timeouts": {t.task_id: t.execution_timeout.total_seconds() if t.execution_timeout else None for t in dag.tasks},
            "sensors": {t.task_id: [t.mode, t.timeout] for t in dag.tasks if hasattr(t, "poke_interval")},
            "outlets": {t.task_id: [a.uri for a in t.outlets] for t in dag.tasks if t.outlets},
            "dagrun_timeout": dag.dagrun_timeout.total_seconds() if dag.dagrun_timeout else None,
            "deadlines": [[d.interval.total_seconds(), d.callback.path] for d in (dag.deadline or [])],
            "asset_schedule": sorted(a.uri for a in getattr(dag.timetable.asset_condition, "objects", ())),
            "owner": dag.default_args.get("owner"),
            "schedule": getattr(dag.timetable, "_expression", None),
            "start_date": dag.start_date.date().isoformat() if dag.start_date else None,
            "tags": sorted(dag.tags),
            "doc_md": dag.doc_md or "",
            "max_active_runs": dag.max_active_runs,
            "catchup": dag.catchup,
        }
    print(json.dumps({"errors": {k: str(v) for k, v in bag.import_errors.items()}, "heavy": heavy, "dags": dags}))
    sys.stdout.flush()
    os._exit(0)
""")


@pytest.fixture(scope="module")
def dagbags(tmp_path_factory):
    """The DAG folder as the dag processor parses it, twice (each summarised as JSON by a fresh
    process): the first parse runs the static checks, the second finds them in the gate cache."""
    from pubdata.config import settings
    from pubdata.orchestration.runner import airflow_env

    home = tmp_path_factory.mktemp("dagbag")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PUBDATA_PROJECT", str(REPO))
        mp.setenv("PUBDATA_HOME", str(home))
        mp.setenv("PUBDATA_AIRFLOW_HOME", str(home / "airflow"))
        # The first parse imports Great Expectations for the static checks, seconds on a busy
        # machine: a budget that covers it, so this test is about the DAGs (the budget has its own).
        mp.setenv("PUBDATA_GATE_BUDGET_SECONDS", "300")
        env = airflow_env(settings())
    parses = []
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", _DAGBAG], capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        parses.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return parses


@pytest.fixture(scope="module")
def dagbag(dagbags):
    return dagbags[1]


def test_dag_folder_imports_without_errors_or_heavy_modules(dagbags, dagbag):
    cold, warm = dagbags
    assert cold["errors"] == {} and warm["errors"] == {}
    assert "sqlglot" in cold["heavy"], "the first parse runs the static checks"
    assert warm["heavy"] == [], "a parse with nothing changed imported heavy modules"
    assert cold["dags"] == warm["dags"]
    expected = [d.dag_id for d in PUBLISHABLE] + ([ERRORS_DAG_ID] if len(PUBLISHABLE) < len(DECLS) else []) + [CATALOG_DAG_ID]
    assert sorted(dagbag["dags"]) == sorted(expected), "one DAG per publishable declaration, the errors DAG for the others"
    for decl in DECLS:
        if decl not in PUBLISHABLE:
            assert str(decl.metadata_path.relative_to(REPO)) in dagbag["dags"][ERRORS_DAG_ID]["doc_md"]


@pytest.mark.parametrize("decl", PUBLISHABLE, ids=PUBLISHABLE_IDS)
def test_dag_matches_its_declaration(decl, dagbag):
    dag = dagbag["dags"][decl.dag_id]
    spec = decl.spec
    assert dag["upstream"] == expected_tasks(decl)
    # Production hygiene: every task has a timeout, the warehouse work shares one pool, sources are
    # waited for in reschedule mode (no worker slot held while waiting), and the run has a timeout
    # and a deadline alert derived from its schedule.
    assert all(t for t in dag["timeouts"].values())
    assert {task for task, pool in dag["pools"].items() if pool == WAREHOUSE_POOL} == set(dag["upstream"]) - {"publish"}
    assert spec.source_tables and all(mode == "reschedule" for mode, _timeout in dag["sensors"].values())
    assert dag["dagrun_timeout"] == 24 * 3600 and dag["deadlines"] == [[12 * 3600, "pubdata.orchestration.deadlines.on_deadline"]]
    assert dag["outlets"] == {"publish": [f"pubdata://{decl.dataset_id.table_path}"]}
    assert dag["schedule"] == spec.schedule
    assert dag["start_date"] == spec.start_date.isoformat()
    assert dag["owner"] == ",".join(spec.owners)
    assert {"pubdata", decl.dataset, f"level-{spec.policy.aggregation_level}"} <= set(dag["tags"])
    assert dag["max_active_runs"] == 1 and dag["catchup"] is False
    doc = dag["doc_md"]
    assert spec.friendly_name in doc and spec.description in doc
    assert all(str(bug) in doc for bug in spec.review.bugs)
    assert all(owner in doc for owner in spec.owners)



def test_one_catalog_dag_is_scheduled_on_every_publish(dagbag):
    """Catalog pages are rebuilt downstream of publishes, once per batch: not by each publish."""
    catalog = dagbag["dags"][CATALOG_DAG_ID]
    assert catalog["asset_schedule"] == sorted(f"pubdata://{d.dataset_id.table_path}" for d in PUBLISHABLE)
    assert list(catalog["upstream"]) == ["rebuild"] and catalog["max_active_runs"] == 1
