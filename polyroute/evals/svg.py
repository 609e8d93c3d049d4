"""Two hand-written SVG charts for the HTML report: a scatter and grouped horizontal bars.

Inline SVG, no script, no external font or style: the report opens offline. Every
text is escaped. Rates are drawn on a fixed 0-100% scale so charts compare at a glance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

# Okabe-Ito: told apart by colour-blind readers too.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#8C6D1F", "#000000")


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


@dataclass(frozen=True, slots=True)
class Point:
    label: str
    x: float
    y: float
    colour: str


def _nice_max(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above ``value`` (1.0 for nothing)."""
    if value <= 0:
        return 1.0
    step = 10.0 ** math.floor(math.log10(value))
    return next(m * step for m in (1, 2, 5, 10) if m * step >= value * (1 - 1e-9))


def scatter(points: list[Point], x_label: str, y_label: str, title: str) -> str:
    """Points on a 0..max x axis (a cost) and a 0-100% y axis (a rate), each labelled."""
    w, h, left, right, top, bottom = 620, 340, 64, 150, 16, 48
    pw, ph = w - left - right, h - top - bottom
    x_max = _nice_max(max((p.x for p in points), default=0.0))
    out = [f'<svg class="chart" role="img" viewBox="0 0 {w} {h}" width="{w}" height="{h}">',
           f"<title>{escape(title)}</title>",
           f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#999"/>']
    for k in range(6):
        frac = k / 5
        gy = top + ph - frac * ph
        gx = left + frac * pw
        out.append(f'<line x1="{left}" y1="{gy:.1f}" x2="{left + pw}" y2="{gy:.1f}" stroke="#e3e3e3"/>')
        out.append(f'<text x="{left - 6}" y="{gy + 4:.1f}" text-anchor="end" class="tick">{frac * 100:.0f}%</text>')
        out.append(f'<text x="{gx:.1f}" y="{top + ph + 16}" text-anchor="middle" class="tick">'
                   f"{_money(frac * x_max)}</text>")
    out.append(f'<text x="{left + pw / 2:.1f}" y="{h - 8}" text-anchor="middle" class="axis">{escape(x_label)}</text>')
    out.append(f'<text x="14" y="{top + ph / 2:.1f}" text-anchor="middle" class="axis" '
               f'transform="rotate(-90 14 {top + ph / 2:.1f})">{escape(y_label)}</text>')
    for p in points:
        cx = left + (p.x / x_max) * pw
        cy = top + ph - max(0.0, min(1.0, p.y)) * ph
        tip = f"{p.label}: {p.y * 100:.1f}%, {_money(p.x)}"
        out.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="6" fill="{p.colour}" fill-opacity="0.85">'
                   f"<title>{escape(tip)}</title></circle>")
        out.append(f'<text x="{cx + 9:.1f}" y="{cy + 4:.1f}" class="label">{escape(p.label)}</text>')
    out.append("</svg>")
    return "".join(out)


def _money(v: float) -> str:
    return f"${v:.2f}" if v >= 1 or v == 0 else f"${v:.3g}"


@dataclass(frozen=True, slots=True)
class Bar:
    series: str
    value: float | None
    colour: str
    note: str = ""


def bars(groups: list[tuple[str, list[Bar]]], title: str) -> str:
    """Grouped horizontal bars of rates (0-100%), one group a row of bars; a missing value says n/a."""
    left, bar_w, bar_h, gap, label_w = 300, 300, 14, 10, 200
    w = left + bar_w + label_w
    h = 24 + sum(len(bs) * bar_h + gap for _, bs in groups) + 8
    out = [f'<svg class="chart" role="img" viewBox="0 0 {w} {h}" width="{w}" height="{h}">',
           f"<title>{escape(title)}</title>"]
    for k in range(5):
        gx = left + k / 4 * bar_w
        out.append(f'<line x1="{gx:.1f}" y1="16" x2="{gx:.1f}" y2="{h - 8}" stroke="#e3e3e3"/>')
        out.append(f'<text x="{gx:.1f}" y="12" text-anchor="middle" class="tick">{k * 25}%</text>')
    y = 20
    for name, bs in groups:
        mid = y + len(bs) * bar_h / 2 + 4
        out.append(f'<text x="{left - 8}" y="{mid:.1f}" text-anchor="end" class="label">{escape(name)}</text>')
        for b in bs:
            tip = f"{name} · {b.series}: " + ("n/a" if b.value is None else f"{b.value * 100:.1f}%")
            if b.value is None:
                out.append(f'<text x="{left + 4}" y="{y + bar_h - 3}" class="tick">{escape(b.series)}: n/a</text>')
            else:
                width = max(0.0, min(1.0, b.value)) * bar_w
                out.append(f'<rect x="{left}" y="{y}" width="{width:.1f}" height="{bar_h - 2}" fill="{b.colour}">'
                           f"<title>{escape(tip)}</title></rect>")
                text = f"{b.series} {b.value * 100:.1f}%{(' ' + b.note) if b.note else ''}"
                out.append(f'<text x="{left + width + 4:.1f}" y="{y + bar_h - 3}" class="tick">{escape(text)}</text>')
            y += bar_h
        y += gap
    out.append("</svg>")
    return "".join(out)
