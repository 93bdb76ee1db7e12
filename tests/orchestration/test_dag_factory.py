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
