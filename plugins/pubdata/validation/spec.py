"""ExpectationSpec: one expectation the suite runs (a GX class name, its arguments, our severity)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SEVERITIES = ("fail", "warn")


@dataclass(frozen=True)
class ExpectationSpec:
    """One expectation to run: a GX class name and its arguments, with our severity."""

    name: str
    kwargs: dict[str, Any]
    severity: str = "fail"
    description: str = ""
    source: str = "policy"
    columns: tuple[str, ...] = ()  # columns it reads besides kwargs["column"]; absent ones fail it unrun
    sensitive: bool = False         # its failures may show identifiers: withhold values outside the warehouse

    @property
    def reads(self) -> list[str]:
        column = self.kwargs.get("column")
        return ([column] if column is not None else []) + list(self.columns)
