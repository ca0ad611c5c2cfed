"""PNG plots of bench results, drawn with matplotlib in bench/compare's venv.

    python bench/plot.py targets TARGETS.json OUT.png   # bench/compare's ratio targets
    python bench/plot.py scale SCALE.json OUT.png       # bench/scale's curves

``targets``: one horizontal bar per target, its measured ratio divided by its goal on a log
axis, so that every bar right of the line at 1 is a target met (for an "at most" target the
quotient is inverted, so right is still better; bars below 0.05 are cut at the axis).
``scale``: the cost of each step against the archive's sample count, and the peak resident
set of each step, both on log-log axes.
"""

from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt


def targets(data: list[dict], out: str) -> None:
    rows = [t for t in data if t.get("measured")]
    if not rows:
        raise SystemExit("no measured target to plot")
    labels, scores, colours = [], [], []
    for t in rows:
        score = t["measured"] / t["goal"]
        if t.get("at_most"):
            score = 1 / score
        labels.append(f"{t['text']}  ({t['measured']:.2f}x, goal {t['goal']:g}x)")
        scores.append(score)
        colours.append("#3a7d44" if score >= 1 else "#c0392b")
    height = 0.3 * len(rows) + 1.2
    fig, ax = plt.subplots(figsize=(11, height))
    y = range(len(rows))
    ax.barh(list(y), scores, color=colours)
    ax.axvline(1, color="black", linewidth=1)
    ax.set_xscale("log")
    # Far misses (a profile read against its grain) would squeeze every other bar: clip them.
    ax.set_xlim(max(min(scores) * 0.8, 0.05), max(max(scores) * 1.25, 2))
    ax.set_yticks(list(y), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("measured ratio / goal (right of 1: met)")
    ax.set_title("bench/compare targets, same machine, same run")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def scale(data: list[dict], out: str) -> None:
    steps = list(dict.fromkeys(r["step"] for r in data))
    fig, (cost, memory) = plt.subplots(1, 2, figsize=(12, 4.5))
    for step in steps:
        rows = sorted((r for r in data if r["step"] == step), key=lambda r: r["samples"])
        xs = [r["samples"] for r in rows]
        cost.plot(xs, [r["cost"] for r in rows], marker="o", label=f"{step} ({rows[0]['unit']})")
        memory.plot(xs, [r["peak_kib"] / 1024 for r in rows], marker="o", label=step)
    for ax, title, unit in ((cost, "cost per operation", "ns or µs (see legend)"),
                            (memory, "peak resident set of the step", "MiB")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("samples in the archive")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, which="both", linewidth=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    if len(sys.argv) != 4 or sys.argv[1] not in ("targets", "scale"):
        raise SystemExit(__doc__)
    with open(sys.argv[2]) as f:
        data = json.load(f)
    (targets if sys.argv[1] == "targets" else scale)(data, sys.argv[3])


if __name__ == "__main__":
    main()
