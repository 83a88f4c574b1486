#!/usr/bin/env python3
"""Draws a soak CSV (scripts/soak.sh) as a PNG: hirehook's RSS, the store's size and the
outbox backlog over time, one panel each.

    python3 scripts/plot_soak.py SOAK.csv [OUT.png]   # needs matplotlib (pip install matplotlib)

Prints, for RSS and store size, the mean of the last half of the run and how far the
samples of that half stray from it (the soak's "levels off" criterion is within ±10 %).
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def column(rows, name, scale=1.0):
    out = []
    for row in rows:
        value = row.get(name, "")
        out.append(float(value) * scale if value not in ("", None) else float("nan"))
    return out


def level(name, values):
    half = [v for v in values[len(values) // 2 :] if v == v]
    if not half:
        return
    mean = sum(half) / len(half)
    low, high = min(half), max(half)
    print(
        f"{name}: last-half mean {mean:.1f}, range {low:.1f}..{high:.1f} "
        f"({(low / mean - 1) * 100:+.1f} % .. {(high / mean - 1) * 100:+.1f} %)"
    )


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: plot_soak.py SOAK.csv [OUT.png]")
    source = sys.argv[1]
    target = sys.argv[2] if len(sys.argv) > 2 else source.rsplit(".", 1)[0] + ".png"
    with open(source, newline="") as f:
        rows = list(csv.DictReader(f))
    minutes = column(rows, "elapsed_s", 1 / 60)
    rss = column(rows, "hirehook_rss_kb", 1 / 1024)
    store = column(rows, "store_bytes", 1 / 1024 / 1024)
    pending = column(rows, "outbox_pending")
    level("hirehook RSS (MiB)", rss)
    level("store size (MiB)", store)
    print(f"outbox pending: max {max(p for p in pending if p == p):.0f}")

    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    for axis, values, label, colour in (
        (axes[0], rss, "hirehook RSS (MiB)", "tab:blue"),
        (axes[1], store, "store size on disk (MiB)", "tab:green"),
        (axes[2], pending, "outbox pending (deliveries)", "tab:red"),
    ):
        axis.plot(minutes, values, color=colour, linewidth=1.5)
        axis.set_ylabel(label)
        axis.set_ylim(bottom=0)
        axis.grid(True, alpha=0.3)
    axes[-1].set_xlabel("minutes")
    fig.suptitle(source.rsplit("/", 1)[-1])
    fig.tight_layout()
    fig.savefig(target, dpi=100)
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
