"""Greedy forward selection on a trained LeNet-300-100 (MNIST, Frankle & Carbin protocol, seed 0;
the same cached target as benchmarks/construct_mlp.py): neurons kept per hidden layer at
fractions 0.5 / 0.25 / 0.1, against magnitude (|w_in| * |w_out|) and random neuron pruning at
the same budgets, no fine-tuning; and the forward-pass speed of the physically smaller network.

    python benchmarks/gfs_lenet.py [--fractions 0.5 0.25 0.1] [--batch 4096] [--threads 1]

Writes benchmarks/results/gfs_lenet.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    import torch

    from lotterylab import data, models
    from lotterylab.find.gfs import GFSConfig, forward_time, gfs, neuron_baseline
    from lotterylab.io import write_json
    from lotterylab.training import TrainConfig, evaluate, train

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.5, 0.25, 0.1])
    ap.add_argument("--batch", type=int, default=4096, help="GFS selection examples")
    ap.add_argument("--steps", nargs="+", default=["1/k", "line"])
    ap.add_argument("--threads", type=int, default=1)
    ns = ap.parse_args()
    torch.set_num_threads(ns.threads)
    splits = data.load("mnist")
    model = models.create("lenet_300_100", seed=0)
    train(model, splits, TrainConfig(budget="50000it"), out=ROOT / "runs/bench-lenet-relu", progress=False)
    model.eval()
    dense = evaluate(model, splits.test)
    print(f"dense LeNet-300-100: test accuracy {100 * dense['accuracy']:.2f}%")
    rows = []
    x = splits.test.x
    t_dense = forward_time(model, x)
    for frac in ns.fractions:
        row = {"fraction": frac, "neurons": [round(frac * 300), round(frac * 100)]}
        for step in ns.steps:
            t0 = time.perf_counter()
            small, rec = gfs(model, splits, GFSConfig(fraction=frac, batch=ns.batch, step=step))
            row[f"gfs_{step}"] = {"test_accuracy": evaluate(small, splits.test)["accuracy"],
                                  "widths": rec["widths"], "seconds": time.perf_counter() - t0,
                                  "picks": [len(layer["picks"]) for layer in rec["layers"]],
                                  "forward_s": forward_time(small, x)}
            row[f"gfs_{step}"]["speedup"] = t_dense / row[f"gfs_{step}"]["forward_s"]
        for kind in ("magnitude", "random"):
            row[kind] = {"test_accuracy": evaluate(neuron_baseline(model, kind, frac), splits.test)["accuracy"]}
        rows.append(row)
        print(f"kept {frac:.2f} of the neurons ({row['neurons']}): " + ", ".join(
            f"GFS {s} {100 * row[f'gfs_{s}']['test_accuracy']:.2f}% ({row[f'gfs_{s}']['seconds']:.0f} s, "
            f"forward {row[f'gfs_{s}']['speedup']:.2f}x faster)" for s in ns.steps)
            + f", magnitude {100 * row['magnitude']['test_accuracy']:.2f}%, random {100 * row['random']['test_accuracy']:.2f}%")
    write_json(ROOT / "benchmarks/results/gfs_lenet.json",
               {"benchmark": "gfs_lenet", "dense_test_accuracy": dense["accuracy"], "dense_forward_s": t_dense,
                "forward_batch": len(x), "threads": ns.threads, "selection_batch": ns.batch, "rows": rows})


if __name__ == "__main__":
    main()
