"""What a validation found: one CheckResult per expectation, and the run's ValidationReport.

Three outcomes are kept apart, because on-call acts on them differently:
  passed  - every `fail` expectation held: export may run;
  failed  - the data broke a rule: no export, no retry, the staged table stays as quarantine;
  error   - an expectation could not be evaluated: retry, never a pass and never a data failure.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Outcome = Literal["passed", "failed", "error"]


@dataclass
class CheckResult:
    expectation: str
    description: str
    severity: str
    success: bool
    column: str | None = None
    observed: Any = None
    expected: Any = None
    unexpected_sample: list[Any] = field(default_factory=list)
    error: str | None = None
    sensitive: bool = False  # its values may be identifiers: alerts and reports withhold them
    finding: str | None = None  # what a failed check found, in words (validation.findings)
    cells: list[Any] = field(default_factory=list)  # the first failing cells, by their dimension values

    @property
    def status(self) -> str:
        if self.error:
            return "error"
        return "passed" if self.success else ("failed" if self.severity == "fail" else "warning")


@dataclass
class ValidationReport:
    dataset_id: str
    partition: str | None
    outcome: Outcome
    checks: list[CheckResult]
    row_count: int | None
    started_at: str
    seconds: float

    @property
    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if c.status == "failed"]

    @property
    def warnings(self) -> list[CheckResult]:
        return [c for c in self.checks if c.status == "warning"]

    @property
    def errors(self) -> list[CheckResult]:
        return [c for c in self.checks if c.status == "error"]

    def summary(self) -> str:
        head = f"{self.dataset_id} [{self.partition or 'full'}]: validation {self.outcome}"
        lines = [head]
        for c in self.errors:
            lines.append(f"  ERROR   {c.description}: {c.error}")
        for c in self.failures:
            lines.append(f"  FAILED  {c.description}: {_found(c)}")
        for c in self.warnings:
            lines.append(f"  WARNING {c.description}: {_found(c)}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for c, raw in zip(d["checks"], self.checks):
            c["status"] = raw.status
        return d


def _found(c: CheckResult) -> str:
    """What a failed check found: in words when known, else GX's observed and expected values."""
    return c.finding or f"observed {_short(c.observed)}, expected {_short(c.expected)}"


def _short(value: Any, limit: int = 200) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 1] + "…"
