"""Plots rows/s against batch size for the GPU paths measured in one device run
(docs/results/device-2026-11-28-h200host-gpu-baseline.txt): the pinned-copy
ceiling, scone's zero-copy and CPU-gather pipelines, and the Python baseline.

    pip install matplotlib && python3 docs/plots/gpu_batches.py
writes docs/gpu-batches.png.
"""
import os
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DOCS = os.path.dirname(HERE)
LOG = os.path.join(DOCS, "results", "device-2026-11-28-h200host-gpu-baseline.txt")


def parse(text):
    scone, python = {}, {}
    part = None
    for line in text.splitlines():
        if line.startswith("== scone"):
            part = scone
        elif line.startswith("== python"):
            part = python
        m = re.match(r"\s*(\d+)\s+(\d+)\s+(\S+)\s+(\d+\s+)?([\d.]+)\s+([\d.]+)", line)
        if part is None or not m:
            continue
        dim, batch, mode, rows = int(m.group(1)), int(m.group(2)), m.group(3), float(m.group(5))
        part.setdefault((dim, mode), {})[batch] = rows
    return scone, python


def main():
    with open(LOG) as f:
        scone, python = parse(f.read())
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    series = [
        (scone, "ceiling", "pinned copy ceiling", "#f6ad55", "--"),
        (scone, "zc-pipelined", "scone zero-copy pipeline", "#2b6cb0", "-"),
        (scone, "pipelined", "scone CPU-gather pipeline", "#63b3ed", "-"),
        (python, "uniform", "Python baseline (numpy memmap + .cuda())", "#a0aec0", "-"),
    ]
    for ax, dim in zip(axes, [1024, 2048]):
        for data, mode, label, color, style in series:
            pts = sorted(data.get((dim, mode), {}).items())
            if pts:
                ax.plot([b for b, _ in pts], [r for _, r in pts], style, marker="o", color=color, label=label)
        ax.set_xscale("log", base=2)
        ax.set_xticks([1024, 4096, 16384])
        ax.set_xticklabels(["1024", "4096", "16384"])
        ax.set_xlabel("batch (positions)")
        ax.set_ylabel("M rows/s")
        ax.set_title(f"d = {dim} f16, rows in DRAM, H200 host")
        ax.set_ylim(bottom=0)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    out = os.path.join(DOCS, "gpu-batches.png")
    fig.savefig(out, dpi=110)
    print("wrote", out)


if __name__ == "__main__":
    main()
