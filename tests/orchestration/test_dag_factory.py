"""Which day a run publishes: the run's config wins over the logical date, and a bad value is named."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

from pubdata.orchestration.dag_factory import _partition

LOGICAL = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)


def test_the_logical_date_by_default():
    assert _partition({"logical_date": LOGICAL, "dag_run": SimpleNamespace(conf={})}) == dt.date(2026, 11, 2)


def test_the_run_config_publishes_another_day():
    context = {"logical_date": LOGICAL, "dag_run": SimpleNamespace(conf={"submission_date": "2026-10-30"})}
    assert _partition(context) == dt.date(2026, 10, 30)


def test_a_bad_day_in_the_config_is_named():
    context = {"logical_date": LOGICAL, "dag_run": SimpleNamespace(conf={"submission_date": "30/10/2026"})}
    with pytest.raises(ValueError, match=r"submission_date '30/10/2026'.*YYYY-MM-DD"):
        _partition(context)


def test_a_manual_run_without_a_day_says_how_to_give_one():
    with pytest.raises(ValueError, match="submission_date"):
        _partition({"dag_run": SimpleNamespace(conf=None)})


def _serialized(dag) -> dict:
    from airflow.serialization.serialized_objects import DagSerialization

    return DagSerialization.to_dict(dag)["dag"]


def test_the_graph_has_only_the_real_chain(decl):
    """wait_for_* -> stage -> validate -> export -> publish, and no more edges: each step reads the
    results it needs from XCom, so an earlier result is not also a dependency."""
    from pubdata.orchestration.dag_factory import build_dag, source_task_id

    dag = build_dag(decl)
    wait = source_task_id(decl.spec.source_tables[0])
    assert {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks} == {
        wait: [], "stage": [wait], "validate": ["stage"], "export": ["validate"], "publish": ["export"]}
    assert not any(t.op_args[1:] for t in dag.tasks if t.task_id != wait), "no XComArg passed as an argument"


def test_the_trigger_form_offers_submission_date(decl):
    """A DAG Param, so the UI's trigger form shows a date field; on the DAG only (a copy per task
    would cost the parse about 2 ms per DAG: bench/parse.py), and a day that is not a date is refused
    at the trigger, as the API and the form validate the config against it."""
    from airflow.sdk.definitions.param import ParamsDict

    from pubdata.orchestration.dag_factory import build_dag

    dag = build_dag(decl)
    param = dag.params.get_param("submission_date")
    assert param.value is None and param.schema["format"] == "date" and param.schema["type"] == ["null", "string"]
    serialized = _serialized(dag)
    assert [name for name, _ in serialized["params"]] == ["submission_date"]
    assert all(not t["__var"].get("params") for t in serialized["tasks"])

    def validated(value):
        merged = ParamsDict({"submission_date": param.__copy__()})
        merged["submission_date"] = value
        return merged.validate()

    assert validated("2026-11-01") == {"submission_date": "2026-11-01"}
    assert validated(None) == {"submission_date": None}  # empty field: the logical date's day
    with pytest.raises(Exception, match="2026-13-01"):
        validated("2026-13-01")
