"""`pubdata check` catches what Airflow would drop: schedules Airflow's parser refuses, DAG ids two
declarations share, and names and owners over Airflow's limits; each is checked against Airflow."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from pubdata.declarations import load_all
from pubdata.declarations.airflow_limits import CRON_PRESETS, DAG_ID_MAX, TAG_MAX, cron_problem
from tests.support.project import EXAMPLE, pubdata_cli

EXAMPLE_YAML = "metadata/telemetry_public/page_loads_by_country_v1.yaml"
EXAMPLE_SQL = "sql/telemetry_public/page_loads_by_country_v1.sql"


def _declare(project: Path, dataset: str, stem: str, edit=lambda y: y) -> str:
    meta = project / "metadata" / dataset / f"{stem}.yaml"
    sql = project / "sql" / dataset / f"{stem}.sql"
    meta.parent.mkdir(parents=True, exist_ok=True)
    sql.parent.mkdir(parents=True, exist_ok=True)
    meta.write_text(edit((project / EXAMPLE_YAML).read_text()))
    sql.write_text((project / EXAMPLE_SQL).read_text())
    return str(meta.relative_to(project))


def _airflow_accepts(schedule: str) -> bool:
    from airflow.timetables.interval import CronDataIntervalTimetable

    try:
        timetable = CronDataIntervalTimetable(schedule, timezone="UTC")
        timetable.validate()
        from croniter import croniter  # what the timetable does to find the next run

        croniter(CRON_PRESETS.get(schedule, schedule)).get_next(dt.datetime, dt.datetime(2000, 1, 1))
    except Exception:
        return False
    return True


def test_presets_are_airflows():
    from airflow.utils.dates import cron_presets

    assert CRON_PRESETS == cron_presets


@pytest.mark.parametrize("schedule", [
    "0 5 * * *", "@daily", "@hourly", "*/15 * * * *", "0 5 * * MON-FRI", "0 5 1,15 * *", "0 0 1 */3 *",
    "every day at noon", "daily", "0 5 * *", "61 5 * * *", "0 25 * * *", "0 5 * * 8", "H 5 * * *", "0 5 31 2 *",
    "@once", "@continuous", "", "0 5 * * * *", "* * * * * * *",
])
def test_check_accepts_a_schedule_only_when_airflow_would_run_it(schedule):
    accepted = cron_problem(schedule) is None
    if len(schedule.split()) in (6, 7):
        assert not accepted  # Airflow reads seconds or years there; no daily dataset means that
    else:
        assert accepted == _airflow_accepts(schedule), (schedule, cron_problem(schedule))


def test_a_schedule_airflow_drops_fails_check_and_gets_no_dag(project):
    from pubdata.orchestration.dag_factory import ERRORS_DAG_ID, build_dags

    rel = _declare(project, "telemetry_public", "noon_v1", lambda y: y.replace('schedule: "0 5 * * *"',
                                                                                "schedule: every day at noon"))
    problems = [str(p) for p in load_all(project).problems]
    line = next(i for i, t in enumerate((project / rel).read_text().splitlines(), 1) if t.startswith("schedule:"))
    assert problems == [f"{rel}:{line}:11: schedule: 'every day at noon' is not a cron expression of five fields "
                        "(minute hour day-of-month month day-of-week, e.g. '0 5 * * *') nor one of @hourly, @daily, "
                        "@weekly, @monthly, @quarterly, @yearly; Airflow would drop the DAG without an error"], problems
    proc = pubdata_cli("check", env={"PUBDATA_PROJECT": str(project)})
    assert proc.returncode == 1 and f"✗ {rel}:{line}:11: declaration: schedule" in proc.stdout, proc.stdout
    dags = build_dags(project)
    assert "publish_telemetry_public__noon_v1" not in dags and rel in dags[ERRORS_DAG_ID].doc_md


def test_colliding_dag_ids_refuse_both_and_name_each_other(project):
    from pubdata.orchestration.dag_factory import ERRORS_DAG_ID, build_dags

    first = _declare(project, "zz", "adv__x_v1")
    second = _declare(project, "zz__adv", "x_v1")
    catalog = load_all(project)
    assert "zz.adv__x_v1" not in catalog.declarations and "zz__adv.x_v1" not in catalog.declarations
    assert EXAMPLE in catalog.declarations
    problems = {str(p.path): p.message for p in catalog.problems}
    assert "publish_zz__adv__x_v1 is also the DAG id of " + second in problems[first]
    assert "publish_zz__adv__x_v1 is also the DAG id of " + first in problems[second]

    dags = build_dags(project)
    assert "publish_zz__adv__x_v1" not in dags, "neither may silently shadow the other"
    assert first in dags[ERRORS_DAG_ID].doc_md and second in dags[ERRORS_DAG_ID].doc_md
    proc = pubdata_cli("check", env={"PUBDATA_PROJECT": str(project)})
    assert proc.returncode == 1 and first in proc.stdout and second in proc.stdout, proc.stdout


def test_names_over_airflows_limits(project):
    from airflow.sdk import DAG

    long_dataset = "d" * (TAG_MAX + 1)
    rel = _declare(project, long_dataset, "t_v1")
    with pytest.raises(ValueError, match="tag cannot be longer"):  # what Airflow does with it
        DAG(dag_id="x", tags=[long_dataset], schedule=None)
    long_table = "t" * (DAG_ID_MAX - len("publish_d__") - len("_v1") + 1)
    rel_table = _declare(project, "d", f"{long_table}_v1")
    with pytest.raises(ValueError, match="has to be less than 250"):
        DAG(dag_id=f"publish_d__{long_table}_v1", schedule=None)
    problems = {str(p.path): p.message for p in load_all(project).problems}
    assert set(problems) == {rel, rel_table}
    assert all("Airflow allows 250 and 100; shorten the names" in m for m in problems.values()), problems


def test_owners_over_airflows_limits(project):
    too_long = "a" * 250 + "@example.org"
    rel = _declare(project, "telemetry_public", "owners_v1",
                   lambda y: y.replace("owners: [data-eng@example.org]", f"owners: [{too_long}]"))
    team = [f"person{i:03d}@example.org" for i in range(120)]
    rel_team = _declare(project, "telemetry_public", "team_v1",
                        lambda y: y.replace("owners: [data-eng@example.org]", f"owners: [{', '.join(team)}]"))
    problems = {str(p.path): f"{p.field}: {p.message}" for p in load_all(project).problems}
    assert problems[rel].startswith("owners[0]: is longer than the 254 allowed (got 'aaaa")
    assert "over Airflow's limit of 2000 characters" in problems[rel_team]
