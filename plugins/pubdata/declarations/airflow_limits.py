"""What Airflow would refuse of a dataset's DAG, checked on the declaration instead.

A DAG that Airflow refuses does not fail loudly: the dag processor records an import error and
the dataset's DAG silently disappears (a schedule of 'every day at noon' passed `pubdata check`
and then vanished). So the declaration model and the loader hold every field that reaches the
DAG to Airflow 3.3's own rules, with the parser Airflow uses (croniter, behind
CronDataIntervalTimetable) and its length limits; tests/declarations/test_airflow_limits.py
checks each one against Airflow itself.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

CRON_PRESETS: dict[str, str] = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@quarterly": "0 0 1 */3 *",
    "@yearly": "0 0 1 1 *",
}
"""Airflow's cron presets (airflow.utils.dates.cron_presets), which CronDataIntervalTimetable expands."""

DAG_ID_MAX = 250        # airflow.sdk.definitions._internal.node.validate_key
TAG_MAX = 100           # airflow.sdk.definitions.dag.TAG_MAX_LEN (a DAG's tags include the dataset name)
OWNER_LINK_MAX = 500    # dag_owner_attributes.link, String(500): our owner_links are mailto:<owner>
OWNERS_MAX = 2000       # dag.owners, String(2000): the owners joined by commas
DESCRIPTION_MAX = 200   # what the DAG's description (the friendly name) is cut to, not a refusal


@lru_cache(maxsize=256)
def cron_problem(schedule: str) -> str | None:
    """Why Airflow would not schedule `schedule`, in words; None when it would.

    Five fields (minute hour day-of-month month day-of-week) or one of Airflow's presets; Airflow
    lets croniter read six or seven fields as seconds and years, which no daily dataset means.
    A valid expression that never fires (31 February) is refused too: Airflow would fail to
    find its next run.
    """
    from croniter import CroniterBadCronError, CroniterBadDateError, croniter

    expression = CRON_PRESETS.get(schedule.strip(), schedule.strip())
    presets = ", ".join(CRON_PRESETS)
    if expression.startswith("@"):
        return f"is not one of Airflow's cron presets ({presets})"
    if len(expression.split()) != 5:
        return ("is not a cron expression of five fields (minute hour day-of-month month day-of-week, "
                f"e.g. '0 5 * * *') nor one of {presets}")
    try:
        croniter(expression).get_next(dt.datetime, dt.datetime(2000, 1, 1))
    except CroniterBadDateError:
        return "never matches a date, so it would never run"
    except (CroniterBadCronError, ValueError, KeyError) as exc:
        return f"is not a cron expression Airflow accepts ({str(exc)[:120]})"
    return None
