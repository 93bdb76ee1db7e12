"""The deadline alert's callback, in a module of its own: Airflow imports a DeadlineAlert's callback
when the DAG is built, at every parse, so this module imports nothing until a deadline is missed."""

from __future__ import annotations

import asyncio
from typing import Any


async def on_deadline(context: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """Airflow's deadline alert (DeadlineAlert, run by the triggerer): the run is late; tell on-call."""
    from pubdata.orchestration import alerts

    await asyncio.to_thread(alerts.deadline_missed, context or {}, **kwargs)
