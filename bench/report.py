"""Benchmark rows and the table `make bench` prints."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Row:
    """One measurement beside its baseline. ratio = value / baseline (lower is better)."""

    bench: str
    case: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    target: str = ""
    ok: bool | None = None  # None: no target for this row
    note: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.baseline in (None, 0):
            return None
        return self.value / self.baseline

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


def _num(x: float | None) -> str:
    if x is None:
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.3g}" if abs(x) < 1 else f"{x:.2f}"


def table(rows: list[Row]) -> str:
    head = ("bench", "case", "measured", "baseline", "ratio", "target", "ok", "note")
    body = []
    for r in rows:
        base = f"{_num(r.baseline)} {r.unit} ({r.baseline_name})" if r.baseline is not None else "-"
        ok = "-" if r.ok is None else ("yes" if r.ok else "NO")
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else "-"
        body.append((r.bench, r.case, f"{_num(r.value)} {r.unit}", base, ratio, r.target or "-", ok, r.note))
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths]), *(line(b) for b in body)])
