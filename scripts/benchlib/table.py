"""One row per figure, and the table ``scripts/bench`` prints."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class Row:
    figure: str
    value: str
    bar: str
    met: bool | None  # None: not measured, or informational
    notes: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return {True: "met", False: "MISSED", None: "-"}[self.met]


def percentile(samples: list[float], pct: float) -> float:
    """Nearest-rank percentile; inf when there are no samples."""
    if not samples:
        return math.inf
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def median(samples: list[float]) -> float:
    if not samples:
        return math.inf
    ordered = sorted(samples)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def ms(seconds: float) -> str:
    return "n/a" if math.isinf(seconds) else f"{seconds * 1000:.1f} ms"


def render(rows: list[Row]) -> str:
    headers = ("figure", "value", "bar", "met")
    cells = [(r.figure, r.value, r.bar, r.verdict) for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = "+-" + "-+-".join("-" * w for w in widths) + "-+"
    out = [line, "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=False)) + " |", line]
    for c in cells:
        out.append("| " + " | ".join(v.ljust(w) for v, w in zip(c, widths, strict=False)) + " |")
    out.append(line)
    notes = [(r.figure, n) for r in rows for n in r.notes]
    if notes:
        out.append("notes:")
        out.extend(f"  - {fig}: {note}" for fig, note in notes)
    return "\n".join(out)
