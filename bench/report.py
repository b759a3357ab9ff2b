"""Figures a benchmark reports, and how they are printed."""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Figure:
    """One measured number, with its unit and, where an issue names one, its target."""

    bench: str
    name: str
    value: float
    unit: str
    target: str = ""
    note: str = ""


def median_time(fn: Callable[[], Any], *, repeat: int = 3) -> tuple[float, Any]:
    """Median wall time of ``repeat`` calls (seconds) and the last call's result."""
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far, GiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def print_figures(figures: list[Figure]) -> None:
    """A plain table: bench, figure, value, unit, target, note."""
    rows = [("bench", "figure", "value", "unit", "target", "note")]
    for f in figures:
        value = f"{f.value:,.4g}" if abs(f.value) < 1e6 else f"{f.value:,.0f}"
        rows.append((f.bench, f.name, value, f.unit, f.target, f.note))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(widths[j]) for j, cell in enumerate(row)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
