"""Plots `scone-bench core` results (docs/results/core-10M-*.json) as bars of
scone, the baseline a user would write, and the ceiling, per metric and machine.

    pip install matplotlib && python3 docs/plots/core_10m.py
writes docs/core-10M.png.
"""
import glob
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DOCS = os.path.dirname(HERE)
METRICS = [
    ("probes/s, present, 1 thread (M)", "lookups, present (M/s, 1 thread)"),
    ("probes/s, absent, 1 thread (M)", "lookups, absent (M/s, 1 thread)"),
    ("probes/s, present, batches of 4096, 1 thread (M)", "batched lookups, present (M/s)"),
    ("matched tokens/s, 1 thread (M)", "matching (M tokens/s, 1 thread)"),
    ("gather GB/s, batch 4096, 1 thread", "gather (GB/s, 1 thread)"),
]
LABELS = {"dev": "dev VM, 2-core AMD EPYC", "h200host": "GPU host, 16-core Xeon"}


def load():
    runs = []
    for path in sorted(glob.glob(os.path.join(DOCS, "results", "core-10M-*-final.json"))):
        name = os.path.basename(path)[len("core-10M-"):-len("-final.json")]
        with open(path) as f:
            runs.append((LABELS.get(name, name), {m["metric"]: m for m in json.load(f)["metrics"]}))
    return runs


def main():
    runs = load()
    fig, axes = plt.subplots(1, len(METRICS), figsize=(3.6 * len(METRICS), 4.0))
    colors = {"scone": "#2b6cb0", "baseline": "#a0aec0", "ceiling": "#f6ad55"}
    width = 0.26
    for ax, (key, title) in zip(axes, METRICS):
        for i, (label, metrics) in enumerate(runs):
            m = metrics[key]
            for j, what in enumerate(["scone", "baseline", "ceiling"]):
                v = m.get(what)
                if v is None:
                    continue
                x = i + (j - 1) * width
                ax.bar(x, v, width, color=colors[what], label=what if i == 0 else None)
                ax.text(x, v, f"{v:.3g}", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(runs)))
        ax.set_xticklabels([r[0] for r in runs], fontsize=8)
        ax.set_title(title, fontsize=10)
        if "lookups" in title:
            ax.set_yscale("log")  # the random-read ceiling is an order of magnitude above
    axes[0].legend(fontsize=8)
    fig.suptitle("scone-bench core: 10 M f-grams, d = 256 f16, Zipf(1.1) queries (higher is better)", fontsize=11)
    fig.tight_layout()
    out = os.path.join(DOCS, "core-10M.png")
    fig.savefig(out, dpi=110)
    print("wrote", out)


if __name__ == "__main__":
    main()
