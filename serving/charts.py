"""Small line charts as inline SVG, drawn on the server (no JavaScript, no chart library).

The customer page of the workspace shows churn probability and CLV over the kept snapshots
with :func:`line_chart`. The SVG uses presentation attributes and CSS classes only (no
``style`` attribute), so the page's Content-Security-Policy needs no ``'unsafe-inline'``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape

WIDTH, HEIGHT = 560, 180
LEFT, RIGHT, TOP, BOTTOM = 64, 40, 14, 30


def _nice_max(value: float) -> float:
    """The smallest of 1, 2, 2.5 or 5 times a power of ten at or above ``value``."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power


def line_chart(
    title: str,
    labels: Sequence[str],
    values: Sequence[float | None],
    *,
    fmt: Callable[[float], str],
    y_max: float | None = None,
) -> str:
    """An SVG line chart of ``values`` (oldest first; None: no value that day) over the
    x ``labels`` (dates), with a y axis from 0 to ``y_max`` (default: a round number above
    the largest value), four grid lines and every point labelled by ``fmt`` in its
    ``<title>`` (the browser's tooltip, and text for screen readers)."""
    known = [v for v in values if v is not None]
    top = y_max if y_max is not None else _nice_max(max(known, default=0.0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    n = len(labels)

    def x(i: int) -> float:
        return LEFT + (plot_w / 2 if n == 1 else plot_w * i / (n - 1))

    def y(v: float) -> float:
        return TOP + plot_h * (1 - min(max(v / top, 0.0), 1.0))

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'role="img" aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for k in range(5):
        gy = TOP + plot_h * k / 4
        parts.append(
            f'<line class="grid" x1="{LEFT}" y1="{gy:.1f}" x2="{WIDTH - RIGHT}" y2="{gy:.1f}"/>'
        )
        parts.append(
            f'<text class="axis" x="{LEFT - 8}" y="{gy + 4:.1f}" text-anchor="end">'
            f"{escape(fmt(top * (1 - k / 4)))}</text>"
        )
    step = max(1, math.ceil(n / 6))  # at most about six date labels
    for i, label in enumerate(labels):
        if i % step == 0 or i == n - 1:
            parts.append(
                f'<text class="axis" x="{x(i):.1f}" y="{HEIGHT - 8}" text-anchor="middle">'
                f"{escape(label)}</text>"
            )
    points = [(x(i), y(v), v, labels[i]) for i, v in enumerate(values) if v is not None]
    if len(points) > 1:
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py, _, _ in points)
        parts.append(f'<polyline class="line" points="{path}"/>')
    for px, py, v, label in points:
        parts.append(
            f'<circle class="point" cx="{px:.1f}" cy="{py:.1f}" r="4">'
            f"<title>{escape(label)}: {escape(fmt(v))}</title></circle>"
        )
    if not points:
        parts.append(
            f'<text class="axis" x="{LEFT + plot_w / 2}" y="{TOP + plot_h / 2}" '
            'text-anchor="middle">no values</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
