"""Plots the training loss curves and the held-out perplexities of the full
trainer configuration (docs/TRAINING.md) from the files `scone train --preset
full` writes, copied into docs/results/training-full/ (results.json and
<run>/loss.csv).

    pip install matplotlib && python3 docs/plots/training.py [RESULTS_DIR [PNG]]
writes docs/training-loss.png (or PNG) from docs/results/training-full (or
RESULTS_DIR) and prints the results table of docs/TRAINING.md in Markdown.
Earlier figures: RESULTS_DIR docs/results/training-full-session4, PNG
docs/training-loss-session4.png (the f-gram model at the LM's learning rate);
docs/results/training-full-session3, docs/training-loss-session3.png (the
previous method).
"""
import csv
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DOCS = os.path.dirname(HERE)
RES = sys.argv[1] if len(sys.argv) > 1 else os.path.join(DOCS, "results", "training-full")
PNG = sys.argv[2] if len(sys.argv) > 2 else os.path.join(DOCS, "training-loss.png")


def smooth(xs, k=25):
    out, acc = [], []
    for x in xs:
        acc.append(x)
        if len(acc) > k:
            acc.pop(0)
        out.append(sum(acc) / len(acc))
    return out


def main():
    cfg, runs = json.load(open(os.path.join(RES, "results.json")))
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 4.8))
    for r in runs:
        path = os.path.join(RES, r["name"], "loss.csv")
        with open(path) as f:
            rows = list(csv.DictReader(f))
        steps = [int(x["step"]) for x in rows]
        loss = smooth([float(x["loss"]) for x in rows])
        style = "-" if r["k"] == 0 else ("--" if r["name"].endswith("f0") else ":")
        width = 2.5 if r["k"] == 0 else 1.4
        color = {"baseline": "black", "baseline-tied": "dimgray"}.get(r["name"])
        ax.plot(steps, loss, style, linewidth=width, label=r["name"], color=color)
    ax.set_xlabel("step (%d windows of %d tokens)" % (cfg["batch_size"], cfg["context"]))
    ax.set_ylabel("training loss (nats/token, 25-step mean)")
    ax.set_title("training loss, KJV, byte-level BPE %d" % cfg["bpe_vocab"])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)

    base = [r for r in runs if r["name"] == "baseline"][0]
    bx.axhline(base["ppl_model"], color="black", linewidth=2,
               label="(a) baseline (%.2f M accelerator params)" % (base["accelerator_params"] / 1e6))
    tied = [r for r in runs if r["name"] == "baseline-tied"]
    if tied:
        bx.axhline(tied[0]["ppl_model"], color="dimgray", linewidth=2, linestyle="-.",
                   label="(a) baseline, tied embeddings (%.2f M, as SCONE's LM)" % (tied[0]["accelerator_params"] / 1e6))
    for fi, marker in ((0, "o"), (1, "s")):
        pts = sorted((r["k"], r["ppl_table"], r["fgram_params"]) for r in runs if r["name"].endswith("f%d" % fi))
        if pts:
            bx.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker,
                    label="(c) SCONE from the table, f-gram model %d (%.2f M params)" % (fi, pts[0][2] / 1e6))
    bx.set_xscale("log")
    bx.set_xlabel("f-grams in the table (K)")
    bx.set_ylabel("held-out perplexity")
    bx.set_title("held-out perplexity; same accelerator FLOPs/token")
    bx.grid(alpha=0.3)
    bx.legend(fontsize=8)
    fig.tight_layout()
    out = PNG
    fig.savefig(out, dpi=110)
    print("wrote", out)
    print_table(runs)


def print_table(runs):
    base = [r for r in runs if r["name"] == "baseline"][0]
    tied = ([r for r in runs if r["name"] == "baseline-tied"] or [None])[0]
    print("| run | K | f-gram model | f-gram params | accelerator params | FLOPs/token | final train loss | held-out ppl (a)/(b) | (c) from the table | (c) / (a) | (c) / (a) tied | positions with an f-gram | table MB | train tokens/s |")
    print("| --- | --: | --- | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: |")
    for r in runs:
        f = r["fgram_model"]
        fm = "-" if f is None else "d %d, %d layer%s" % (f["d_model"], f["n_layers"], "" if f["n_layers"] == 1 else "s")
        c = r["ppl_table"]
        print("| %s | %s | %s | %s | %s | %s | %.3f | %.2f | %s | %s | %s | %s | %s | %.0f |" % (
            r["name"], f"{r['k']:,}" if r["k"] else "-", fm,
            f"{r['fgram_params']:,}" if r["fgram_params"] else "-",
            f"{r['accelerator_params']:,}", f"{r['inference_flops_per_token']:,}",
            r["final_train_loss"], r["ppl_model"],
            "-" if c is None else "%.2f" % c,
            "-" if c is None else "%.3f" % (c / base["ppl_model"]),
            "-" if c is None or tied is None else "%.3f" % (c / tied["ppl_model"]),
            "-" if r["fgram_coverage"] is None else "%.0f %%" % (100 * r["fgram_coverage"]),
            "-" if r["table_bytes"] is None else "%.1f" % (r["table_bytes"] / 1e6),
            r["train_tokens_per_s"]))


if __name__ == "__main__":
    main()
