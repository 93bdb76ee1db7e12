"""Live task progress of `pubdata run` (read from the `airflow dags test` log as it is written) and
`pubdata airflow` (Airflow's components on the embedded stack's environment)."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from pubdata import cli
from pubdata.orchestration import runner
from pubdata.orchestration.runner import TaskLogFollower

DAG = "publish_telemetry_public__page_loads_by_country_v1"


def _lines(task: str, ti: str, state: str | None) -> list[str]:
    """The lines `airflow dags test` logs for one task (Airflow 3.3), with unrelated noise between."""
    lines = [
        f"2026-11-23T09:21:21.340975Z [info     ] [DAG TEST] starting task_id={task} map_index=-1 [airflow.sdk.definitions.dag] loc=dag.py:1501",
        f"2026-11-23T09:21:21.341653Z [info     ] [DAG TEST] running task <TaskInstance: {DAG}.{task} manual__2026-11-23T09:21:21.111133+00:00 "
        f"[TaskInstanceState.SCHEDULED] ti_id={ti}> [airflow.sdk.definitions.dag] loc=dag.py:1504",
        f"2026-11-23T09:21:29.232784Z [info     ] Task started [airflow.api_fastapi.execution_api.routes.task_instances] previous_state=queued ti_id={ti}",
        "2026-11-23T09:21:30.551560Z [info     ] Pushing xcom                   [task] loc=task_runner.py:2280",
    ]
    if state:
        lines.append(f"2026-11-23T09:21:30.598337Z [info     ] Task instance state updated    [airflow.api_fastapi.execution_api.routes."
                     f"task_instances] correlation_id=01a2 loc=task_instances.py:485 new_state={state} rows_affected=1 ti_id={ti}")
    lines.append(f"2026-11-23T09:21:30.620654Z [info     ] [DAG TEST] end task task_id={task} map_index=-1 [airflow.sdk.definitions.dag] loc=dag.py:1563")
    return lines


def _events(lines: list[str]) -> list[tuple[str, str]]:
    follower = TaskLogFollower()
    return [(e.task_id, e.state) for e in map(follower.feed, lines) if e is not None]


def test_follower_reports_each_task_start_and_outcome():
    lines = (_lines("stage", "01a207b5-bf48-7170-b0d9-031f7a59e3e8", "success")
             + _lines("validate", "01a207b5-bf49-7fda-8094-9c437ffe79c9", "failed"))
    assert _events(lines) == [("stage", "running"), ("stage", "success"), ("validate", "running"), ("validate", "failed")]


def test_task_that_ends_without_a_state_failed_and_a_retry_is_a_new_start():
    lines = (_lines("stage", "01a207b5-0000-7170-b0d9-031f7a59e3e8", None)
             + _lines("stage", "01a207b5-0000-7170-b0d9-031f7a59e3e8", "up_for_retry")
             + _lines("stage", "01a207b5-0000-7170-b0d9-031f7a59e3e8", "success"))
    assert _events(lines) == [("stage", "running"), ("stage", "failed"), ("stage", "running"), ("stage", "up_for_retry"),
                              ("stage", "running"), ("stage", "success")]


def test_state_of_another_task_instance_is_not_taken():
    lines = _lines("export", "01a207b5-aaaa-7170-b0d9-031f7a59e3e8", None)
    lines.insert(-1, "2026-11-23T09:21:30Z [info     ] Task instance state updated    new_state=success ti_id=99999999-aaaa-7170-b0d9-031f7a59e3e8")
    assert _events(lines) == [("export", "running"), ("export", "failed")]


def test_airflow_command_runs_the_components_on_the_embedded_stack(project, monkeypatch):
    from pubdata.orchestration import local_airflow

    calls = []

    def fake_serve(binary, port, env, say):
        calls.append((binary, port, env))
        return 0

    monkeypatch.setattr(local_airflow, "serve", fake_serve)
    result = CliRunner().invoke(cli.app, ["airflow", "--port", "8793"])
    assert result.exit_code == 0, result.output
    (binary, port, env), = calls
    assert binary.endswith("airflow") and port == 8793
    home = os.environ["PUBDATA_AIRFLOW_HOME"]
    assert env["AIRFLOW_HOME"] == home
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(project / "dags")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{home}/airflow.db?timeout={runner.SQLITE_BUSY_TIMEOUT}"
    assert env["PUBDATA_PROJECT"] == str(project) and env["PUBDATA_WAREHOUSE"] == os.environ["PUBDATA_WAREHOUSE"]
    assert "http://127.0.0.1:8793/" in " ".join(result.output.split())


def test_airflow_components_listen_on_loopback_only():
    """The api-server on 127.0.0.1; no worker or triggerer log server (Airflow 3.3 binds those to
    every interface): the api-server reads task logs from the local log folder."""
    from pubdata.orchestration import local_airflow

    commands = local_airflow.components("airflow", 8793)
    assert set(commands) == {"api-server", "scheduler", "dag-processor", "triggerer"}
    assert commands["api-server"][1:] == ["api-server", "-H", "127.0.0.1", "-p", "8793"]
    assert "--skip-serve-logs" in commands["scheduler"] and "--skip-serve-logs" in commands["triggerer"]
    env = local_airflow.component_env({}, 8793)
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:8793/execution/"
    assert (env["AIRFLOW__API__HOST"], env["AIRFLOW__API__PORT"]) == ("127.0.0.1", "8793")


@pytest.mark.parametrize("command, says", [("new", "Scaffold a dataset"), ("catalog", "Atom feed"),
                                            ("airflow", "stops all of it"), ("run", "through Airflow")])
def test_help_says_what_each_command_does(command, says):
    result = CliRunner().invoke(cli.app, [command, "--help"])
    assert result.exit_code == 0
    assert says in " ".join(result.output.split())


# The stage of a run whose query names a column that does not exist, as `airflow dags test` logs it
# (Airflow 3.3, DuckDB 1.x; the traceback's frames shortened): the original error, then the
# exception Airflow wrapped it in.
FAILED_STAGE = '''\
2026-12-01T15:13:49.083922Z [error    ] Task failed with exception     [task] loc=task_runner.py:1639
Traceback (most recent call last):
  File "plugins/pubdata/warehouses/duckdb.py", line 301, in stage
    raise QueryError(f"the reviewed query failed in DuckDB: {exc}") from None
pubdata.errors.QueryError: the reviewed query failed in DuckDB: Binder Error: Referenced column "page_lods" not found in FROM clause!
Candidate bindings: "page_loads", "ssl_page_loads", "sample_id", "active_hours", "ad_clicks"

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "airflow/sdk/execution_time/task_runner.py", line 1200, in run
    raise AirflowFailException(str(exc)) from exc
airflow.sdk.exceptions.AirflowFailException: the reviewed query failed in DuckDB: Binder Error: Referenced column "page_lods" not found in FROM clause!
Candidate bindings: "page_loads", "ssl_page_loads", "sample_id", "active_hours", "ad_clicks"
2026-12-01T15:13:49.087764Z [info     ] ::group::Post Execute          [task] loc=task_runner.py:1640
'''.splitlines()


def _failed_end(lines: list[str]):
    follower = TaskLogFollower()
    ended = [e for e in map(follower.feed, lines) if e is not None and e.ended]
    return follower, ended


def test_a_failed_task_carries_its_own_error_in_one_line():
    """What `pubdata run` prints under a failed task: the original error's text (not the exception
    Airflow wrapped it in), with the message's next line, and its family."""
    lines = _lines("stage", "01a2322b-4cc4-75b5-80f4-a97cd8235d62", "failed")
    follower, [end] = _failed_end(lines[:-1] + FAILED_STAGE + lines[-1:])
    assert end.state == "failed" and end.kind == "data"
    assert end.error == ('the reviewed query failed in DuckDB: Binder Error: Referenced column "page_lods" not found in '
                         'FROM clause! Candidate bindings: "page_loads", "ssl_page_loads", "sample_id", "active_hours", '
                         '"ad_clicks"')
    assert "\n" not in end.error and "AirflowFailException" not in end.error
    assert follower.run_id == "manual__2026-11-23T09:21:21.111133+00:00"


def test_an_error_outside_pubdata_keeps_its_class_and_counts_as_infrastructure():
    lines = _lines("export", "01a2322b-0000-75b5-80f4-a97cd8235d62", "failed")
    crash = ["Traceback (most recent call last):", '  File "x.py", line 1, in f', "KeyError: 'files'"]
    _, [end] = _failed_end(lines[:-1] + crash + lines[-1:])
    assert (end.error, end.kind) == ("KeyError: 'files'", "infrastructure")
    # a task that succeeded after logging a handled error reports none
    _, [ok] = _failed_end(_lines("export", "01a2322b-0000-75b5-80f4-a97cd8235d63", "success")[:-1] + crash
                          + _lines("export", "x", "success")[-1:])
    assert ok.state == "success" and ok.error is None
