"""Failure rate of random subset sum vs n: the table constructions use to pick widths.

For candidate distributions uniform, product and product_masked (see
``lotterylab.subsetsum.sample_instances``), eps in {1e-2, 1e-3}, targets U[-1, 1], exact
minimum-error solver: the fraction of instances with no subset within eps, with a 95% Wilson
interval. Prints a markdown table and writes benchmarks/results/subsetsum_calibration.json.

    python benchmarks/subsetsum_calibration.py [--trials 20000] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lotterylab import subsetsum as ss  # noqa: E402
from lotterylab.io import write_json  # noqa: E402

NS = [8, 10, 12, 14, 15, 16, 18, 20, 22, 24, 28, 32]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=20000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "subsetsum_calibration.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    t0 = time.perf_counter()
    for dist in ("uniform", "product", "product_masked"):
        for eps in (1e-2, 1e-3):
            for n in NS:
                trials = args.trials if n <= 24 else args.trials // 4
                r = ss.calibrate(dist, n, eps, "min_error", trials=trials, seed=1)
                rows.append(r)
                print(f"{dist:<15} eps {eps:g} n {n:2d}: failure {r['failure_rate']:.4f} "
                      f"[{r['ci95'][0]:.4f}, {r['ci95'][1]:.4f}] ({trials} trials)", flush=True)
    wall = time.perf_counter() - t0
    # markdown: one row per (distribution, eps), one column per n
    lines = ["| candidates | eps | " + " | ".join(f"n={n}" for n in NS) + " |",
             "|---|---|" + "---|" * len(NS)]
    for dist in ("uniform", "product", "product_masked"):
        for eps in (1e-2, 1e-3):
            cells = [f"{100 * r['failure_rate']:.2f}%" for r in rows if r["distribution"] == dist and r["eps"] == eps]
            lines.append(f"| {dist} | {eps:g} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    write_json(args.out, {"benchmark": "subsetsum_calibration", "rows": rows, "markdown": table,
                          "trials": args.trials, "threads": args.threads, "wall_time_s": wall})


if __name__ == "__main__":
    main()
