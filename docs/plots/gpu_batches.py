"""Plots rows/s against batch size for the GPU paths, from the raw device logs
in docs/results/. Two figure files:

- docs/gpu-batches.png (rows in DRAM, uniform keys; from
  device-2026-11-28-h200host-gpu-baseline.txt): the pinned-copy ceiling,
  scone's zero-copy and CPU-gather pipelines, and the Python baseline
  (numpy memmap + .cuda(), page cache), d = 1024 and d = 2048.
- docs/gpu-batches-zipf-nvme.png, a second figure of 2 x 2 panels (columns
  d = 1024 and d = 2048):
  top, Zipf(1.1) keys, rows in DRAM (gpu-pipeline-dedup-2026-11-28.txt):
  the copy ceiling, CPU gather + dedup + 10 % GPU cache (`zipf-cpu-dd-c`),
  zero-copy + cache (`zipf-zc-c`), zero-copy + dedup + cache
  (`zipf-zc-dd-c`), and for reference the Python baseline's Zipf figures
  from the page cache (the first figure's run: numpy's zipf(1.1) clipped to
  the last row, so not the same key distribution);
  bottom, tables on NVMe (gpu-nvme-python-cold-2026-11-28.txt, session 3,
  the same device call as the Python cold figures): the raw
  O_DIRECT io_uring reader alone with uniform keys (`nvme-raw-uni`), the
  pipeline with uniform keys (`nvme-uni`), the pipeline with Zipf(1.1) keys
  + dedup + 10 % GPU cache (`nvme-zipf-c`), and, when a log of
  `bench/python/gpu_baseline.py --cold` / `--only-cold` is given with
  --python-cold, the Python baseline from a cold page cache (its `cold`
  lines: uniform and Zipf keys, mmap with MADV_RANDOM and with the kernel's
  read-around; the legend gives how much of the table was touched and how
  much of it was in the page cache at the end of the figures). Without
  --python-cold those series are left out.
  A panel's y axis is logarithmic where its values span more than 10x.

    pip install matplotlib && python3 docs/plots/gpu_batches.py [--python-cold docs/results/LOG.txt]
"""
import argparse
import os
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DOCS = os.path.dirname(HERE)
RESULTS = os.path.join(DOCS, "results")
LOG = os.path.join(RESULTS, "device-2026-11-28-h200host-gpu-baseline.txt")
DEDUP_LOG = os.path.join(RESULTS, "gpu-pipeline-dedup-2026-11-28.txt")
NVME_LOG = os.path.join(RESULTS, "gpu-nvme-python-cold-2026-11-28.txt")
BATCHES = [1024, 4096, 16384]

# gpu-pipeline: dim batch mode n Mrows/s GB/s p50 p99 [note]
PIPE_RE = re.compile(r"\s*(\d+)\s+(\d+)\s+(\S+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)")
# the note of an NVMe row
STORAGE_RE = re.compile(r"\s+storage\s+([\d.]+)\s+krows/s\s+[\d.]+\s+GB/s\s+([\d.]+)\s+rows/batch read")
# gpu_baseline.py --cold: cold dim batch keys n Mrows/s GB/s p50 p99 uniq% touched% resid0% resid% access drop
COLD_RE = re.compile(
    r"cold\s+(\d+)\s+(\d+)\s+(\S+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)"
    r"\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s*$")


def parse(text):
    """The combined device log: `== scone` and `== python` sections."""
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


def parse_pipeline(text):
    """A gpu-pipeline log: {(dim, mode): {batch: Mrows/s}}.

    Mrows/s has two decimals, too coarse for the NVMe rows (0.08 M): where an
    NVMe row's note (`storage X krows/s ... Y rows/batch read`) follows, the
    delivered rate is taken as X * batch / Y instead, if it agrees with the
    printed value to its rounding."""
    out = {}
    last = None
    for line in text.splitlines():
        m = PIPE_RE.match(line)
        if m:
            dim, batch, mode = int(m.group(1)), int(m.group(2)), m.group(3)
            out.setdefault((dim, mode), {})[batch] = float(m.group(5))
            last = (dim, mode, batch)
            continue
        n = STORAGE_RE.match(line)
        if n and last:
            dim, mode, batch = last
            per_batch = float(n.group(2))
            if per_batch > 0:
                fine = float(n.group(1)) * 1e3 * batch / per_batch / 1e6
                if abs(fine - out[(dim, mode)][batch]) <= 0.0051 + 0.01 * fine:
                    out[(dim, mode)][batch] = fine
        last = None
    return out


def pct(s):
    return None if s == "-" else float(s)


def parse_cold(text):
    """`cold` lines of gpu_baseline.py: {(dim, access, keys): {batch: fields}}.
    `cold-host` lines (no GPU) do not match."""
    out = {}
    for line in text.splitlines():
        m = COLD_RE.match(line)
        if not m:
            continue
        g = m.groups()
        out.setdefault((int(g[0]), g[12], g[2]), {})[int(g[1])] = {
            "n": int(g[3]), "mrows": float(g[4]), "gbs": float(g[5]), "p50": float(g[6]), "p99": float(g[7]),
            "uniq": float(g[8]), "touched": float(g[9]), "resid0": pct(g[10]), "resid": pct(g[11]), "drop": g[13],
        }
    return out


def batch_axis(ax):
    ax.set_xscale("log", base=2)
    ax.set_xticks(BATCHES)
    ax.set_xticklabels([str(b) for b in BATCHES])
    ax.minorticks_off()
    ax.set_xlabel("batch (positions)")


def y_scale(ax, values):
    """Log y where the panel's values span more than 10x, else linear from 0."""
    values = [v for v in values if v > 0]
    if values and max(values) / min(values) > 10:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.grid(True, which="major", axis="y", alpha=0.3)
    else:
        ax.set_ylim(bottom=0)
        ax.grid(True, axis="y", alpha=0.25)


def plot_series(ax, pts, label, color, style, marker="o", scale=1.0):
    pts = sorted(pts.items())
    if not pts:
        return []
    ys = [r * scale for _, r in pts]
    ax.plot([b for b, _ in pts], ys, style, marker=marker, color=color, label=label)
    return ys


def figure_dram(log):
    with open(log) as f:
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
            plot_series(ax, data.get((dim, mode), {}), label, color, style)
        batch_axis(ax)
        ax.set_ylabel("M rows/s")
        ax.set_title(f"d = {dim} f16, rows in DRAM, H200 host")
        ax.set_ylim(bottom=0)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    out = os.path.join(DOCS, "gpu-batches.png")
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print("wrote", out)


def cold_label(keys, access, data):
    """Legend text of a Python cold series, with how cold it stayed."""
    touched = max(v["touched"] for v in data.values())
    resid = [v["resid"] for v in data.values() if v["resid"] is not None]
    how = "MADV_RANDOM" if access == "random" else "mmap read-around"
    text = f"Python cold cache, {'Zipf(1.1)' if keys.startswith('zipf') else 'uniform'}, {how}: touched <= {touched:.0f} %"
    if resid:
        lo, hi = f"{min(resid):.0f}", f"{max(resid):.0f}"
        text += f", {lo if lo == hi else lo + '-' + hi} % cached at end"
    return text


def figure_zipf_nvme(baseline_log, dedup_log, nvme_log, cold_log):
    with open(dedup_log) as f:
        dedup = parse_pipeline(f.read())
    with open(nvme_log) as f:
        nvme = parse_pipeline(f.read())
    python = {}
    if baseline_log and os.path.exists(baseline_log):
        with open(baseline_log) as f:
            python = parse(f.read())[1]
    cold = {}
    if cold_log:
        with open(cold_log) as f:
            cold = parse_cold(f.read())
        if not cold:
            print(f"warning: no `cold` lines in {cold_log}: the Python cold series are left out")

    fig, axes = plt.subplots(2, 2, figsize=(15, 9))
    top = [
        ("ceiling", "pinned copy ceiling (whole batch)", "#f6ad55", "--", "o"),
        ("zipf-cpu-dd-c", "scone CPU gather + dedup + 10 % GPU cache", "#63b3ed", "-", "o"),
        ("zipf-zc-c", "scone zero-copy + 10 % GPU cache", "#2b6cb0", "-", "s"),
        ("zipf-zc-dd-c", "scone zero-copy + dedup + 10 % GPU cache", "#1a365d", "-", "^"),
    ]
    for ax, dim in zip(axes[0], [1024, 2048]):
        ys = []
        for mode, label, color, style, marker in top:
            ys += plot_series(ax, dedup.get((dim, mode), {}), label, color, style, marker)
        ys += plot_series(ax, python.get((dim, "zipf1.1"), {}),
                          "Python baseline, page cache, Zipf keys (other run; numpy zipf clipped)", "#a0aec0", "-")
        batch_axis(ax)
        y_scale(ax, ys)
        ax.set_ylabel("M rows/s (positions delivered)")
        ax.set_title(f"Zipf(1.1) keys, rows in DRAM, d = {dim} f16")
    axes[0][1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)

    bottom = [
        ("nvme-raw-uni", "raw reader alone (O_DIRECT io_uring, QD 128), uniform", "#f6ad55", "--", "o"),
        ("nvme-uni", "scone pipeline from NVMe, uniform", "#2b6cb0", "-", "o"),
        ("nvme-zipf-c", "scone pipeline from NVMe, Zipf(1.1) + dedup + 10 % GPU cache", "#1a365d", "-", "^"),
    ]
    cold_styles = {
        ("random", "uniform"): ("#718096", "-", "D"),
        ("random", "zipf1.1"): ("#718096", "--", "D"),
        ("readaround", "uniform"): ("#cbd5e0", "-", "x"),
        ("readaround", "zipf1.1"): ("#cbd5e0", "--", "x"),
    }
    for ax, dim in zip(axes[1], [1024, 2048]):
        ys = []
        for mode, label, color, style, marker in bottom:
            ys += plot_series(ax, nvme.get((dim, mode), {}), label, color, style, marker, scale=1e3)
        for (access, keys), (color, style, marker) in cold_styles.items():
            data = cold.get((dim, access, keys))
            if data:
                ys += plot_series(ax, {b: v["mrows"] for b, v in data.items()}, cold_label(keys, access, data),
                                  color, style, marker, scale=1e3)
        batch_axis(ax)
        y_scale(ax, ys)
        ax.set_ylabel("K rows/s (positions delivered)")
        ax.set_title(f"tables on disk, no page cache, d = {dim} f16")
    axes[1][1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    fig.suptitle("H200 host, 2026-11-28: rows/s against batch size", fontsize=11)
    fig.tight_layout()
    out = os.path.join(DOCS, "gpu-batches-zipf-nvme.png")
    fig.savefig(out, dpi=100, bbox_inches="tight")
    plt.close(fig)
    print("wrote", out)


def main():
    ap = argparse.ArgumentParser(description="draws docs/gpu-batches.png and docs/gpu-batches-zipf-nvme.png")
    ap.add_argument("--python-cold", help="a log with the `cold` lines of bench/python/gpu_baseline.py --cold")
    ap.add_argument("--baseline-log", default=LOG, help="device log with `== scone` / `== python` sections")
    ap.add_argument("--dedup-log", default=DEDUP_LOG, help="gpu-pipeline log with the zipf-* modes")
    ap.add_argument("--nvme-log", default=NVME_LOG, help="gpu-pipeline --nvme-only log")
    args = ap.parse_args()
    figure_dram(args.baseline_log)
    figure_zipf_nvme(args.baseline_log, args.dedup_log, args.nvme_log, args.python_cold)


if __name__ == "__main__":
    main()
