#!/usr/bin/env python3
"""The "Operator at scale" plot of docs/benchmarks.md, from the runs' own numbers.

Reads the JSON reports `tests/tests/operator_scale.rs` writes when `SCALE_REPORT` is set (one per
run, e.g. run-1000.json and run-10000.json next to this script) and writes delays.svg: the
distribution (CDF) of publish -> Live and end -> Ready delays of 1,000 simultaneous publishes and
ends, one curve per run and direction, with the 2 s target.

    python3 docs/benchmarks/operator-scale/plot.py docs/benchmarks/operator-scale/run-*.json

Standard library only; the output depends only on the input files.
"""

import json
import sys
from pathlib import Path

W, H = 780, 420
LEFT, RIGHT, TOP, BOTTOM = 70, 200, 40, 60
COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]


def cdf_path(values, x_of, y_of):
    v = sorted(values)
    n = len(v)
    points = [(x_of(0.0), y_of(0.0))]
    for i, d in enumerate(v):
        points.append((x_of(d), y_of(i / n)))
        points.append((x_of(d), y_of((i + 1) / n)))
    return "M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in points)


def main(paths):
    runs = []
    for p in paths:
        r = json.loads(Path(p).read_text())
        runs.append(r)
    runs.sort(key=lambda r: r["n"])
    series = []
    for r in runs:
        series.append((f"publish \u2192 Live, {r['n']:,} streams", r["burst_live_s"], False))
        series.append((f"end \u2192 Ready, {r['n']:,} streams", r["burst_ready_s"], True))
    xmax = max(2.5, max(max(s[1]) for s in series if s[1]) * 1.05)
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def x_of(d):
        return LEFT + pw * min(d, xmax) / xmax

    def y_of(q):
        return TOP + ph * (1 - q)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
        f'<text x="{LEFT}" y="22" font-size="14">1,000 simultaneous publishes / ends: time until '
        "the status shows it (CDF)</text>",
    ]
    step = 0.5 if xmax <= 5 else 1.0
    t = 0.0
    while t <= xmax + 1e-9:
        x = x_of(t)
        out.append(f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + ph}" stroke="#eee"/>')
        out.append(f'<text x="{x:.1f}" y="{TOP + ph + 16}" text-anchor="middle">{t:g}</text>')
        t += step
    for q in (0, 0.25, 0.5, 0.75, 0.99, 1.0):
        y = y_of(q)
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + pw}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{q:g}</text>')
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>')
    x2 = x_of(2.0)
    out.append(
        f'<line x1="{x2:.1f}" y1="{TOP}" x2="{x2:.1f}" y2="{TOP + ph}" stroke="#000" stroke-dasharray="4,3"/>'
    )
    out.append(f'<text x="{x2 + 4:.1f}" y="{TOP + 14}">target p99 2 s</text>')
    out.append(f'<text x="{LEFT + pw / 2}" y="{H - 20}" text-anchor="middle">seconds</text>')
    out.append(
        f'<text x="18" y="{TOP + ph / 2}" text-anchor="middle" transform="rotate(-90 18 {TOP + ph / 2})">'
        "fraction of streams</text>"
    )
    for i, (label, values, dashed) in enumerate(series):
        if not values:
            continue
        colour = COLOURS[(i // 2) % len(COLOURS)]
        dash = ' stroke-dasharray="6,3"' if dashed else ""
        out.append(
            f'<path d="{cdf_path(values, x_of, y_of)}" fill="none" stroke="{colour}" stroke-width="1.6"{dash}/>'
        )
        ly = TOP + 10 + 18 * i
        lx = LEFT + pw + 12
        out.append(f'<line x1="{lx}" y1="{ly}" x2="{lx + 22}" y2="{ly}" stroke="{colour}" stroke-width="1.6"{dash}/>')
        out.append(f'<text x="{lx + 28}" y="{ly + 4}" font-size="11">{label}</text>')
    out.append("</svg>")
    target = Path(__file__).with_name("delays.svg")
    target.write_text("\n".join(out) + "\n")
    print(f"wrote {target}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: plot.py REPORT.json...")
    main(sys.argv[1:])
