"""Pruning at initialisation on Fashion-MNIST with Conv-2 (64-64-pool, 256-256-10, Glorot init):
SNIP, GraSP, SynFlow and random (uniform per-layer density) at 10 %, 1 % and 0.1 % density, each
mask trained with the same short schedule (Adam 1e-3, batch 60, ``--budget`` iterations); plus the
layer-collapse table: which layers each method (magnitude included) leaves empty, and whether any
input-output path survives.

    python benchmarks/pai_fashion.py [--budget 1500it] [--workers 2] [--densities 0.1 0.01 0.001]

Runs resume from ``--out``. Writes benchmarks/results/pai_fashion.json and docs/img/pai_fashion.png.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
METHODS = ["snip", "grasp", "synflow", "random"]


def _setup():
    import torch

    from lotterylab import data, models
    torch.set_num_threads(1)
    splits = data.load("fashion-mnist")
    return splits, models.create("conv2", input_shape=splits.input_shape, num_classes=10, seed=0)


def score_job(method, density):
    """Mask only (no training): density per layer, collapse and connectivity."""
    from lotterylab.find.pai import PaIConfig, prune_at_init
    from lotterylab.find.scores import collapsed_layers, connected_paths

    splits, model = _setup()
    t0 = time.perf_counter()
    mask = prune_at_init(model, splits, PaIConfig(method=method, density=density))
    return {"method": method, "density": density, "mask_density": mask.density, "scoring_s": time.perf_counter() - t0,
            "kept_per_layer": {n: int(m.sum()) for n, m in mask.items()}, "collapsed_layers": collapsed_layers(mask),
            "connected": connected_paths(model, mask, splits.input_shape) > 0}


def train_job(method, density, budget, out):
    from lotterylab.find.pai import PaIConfig, prune_at_init
    from lotterylab.training import TrainConfig, train

    splits, model = _setup()
    cfg = TrainConfig(optimizer="adam", lr=1e-3, batch_size=60, budget=budget, eval_every=budget)
    mask = None if method == "dense" else prune_at_init(model, splits, PaIConfig(method=method, density=density))
    r = train(model, splits, cfg, mask=mask, out=Path(out) / f"{method}_{density}", progress=False,
              extra_hash={"bench": "pai_fashion", "method": method, "density": density})
    return {"method": method, "density": density if mask is None else mask.density,
            "test_accuracy": r["final"]["test_accuracy"], "wall_time_s": r["wall_time_s"]}


def main() -> None:
    from lotterylab import plots
    from lotterylab.io import write_json

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", default="1500it")
    ap.add_argument("--densities", type=float, nargs="+", default=[0.1, 0.01, 0.001])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "runs/bench/pai_fashion"))
    ns = ap.parse_args()
    t0 = time.perf_counter()
    jobs = [("dense", 1.0)] + [(m, d) for d in ns.densities for m in METHODS]
    with ProcessPoolExecutor(ns.workers) as pool:
        collapse = list(pool.map(score_job, *zip(*[(m, d) for d in ns.densities for m in METHODS + ["magnitude"]])))
        rows = list(pool.map(train_job, [j[0] for j in jobs], [j[1] for j in jobs], [ns.budget] * len(jobs),
                             [ns.out] * len(jobs)))
    wall = time.perf_counter() - t0
    dense = rows[0]["test_accuracy"]
    print(f"dense Conv-2: {100 * dense:.2f}% after {ns.budget}")
    print(f"{'method':>10} " + " ".join(f"{100 * d:>8g}%" for d in ns.densities))
    for m in METHODS:
        accs = [next(r["test_accuracy"] for r in rows if r["method"] == m and abs(r["density"] - d) < 1e-3 * d + 1e-9)
                for d in ns.densities]
        print(f"{m:>10} " + " ".join(f"{100 * a:>8.2f}%" for a in accs))
    print("layer collapse (layers left empty / network still connected):")
    for c in collapse:
        print(f"  {c['method']:>10} {100 * c['density']:>6g}%: empty {c['collapsed_layers'] or '-'}; "
              f"connected {c['connected']}; kept {list(c['kept_per_layer'].values())}")
    write_json(ROOT / "benchmarks/results/pai_fashion.json",
               {"benchmark": "pai_fashion", "model": "conv2", "data": "fashion-mnist", "budget": ns.budget,
                "dense_test_accuracy": dense, "rows": rows, "collapse": collapse, "wall_time_s": wall,
                "threads_per_job": 1, "workers": ns.workers})
    plots.accuracy_vs_density({m: [(r["density"], r["test_accuracy"]) for r in rows if r["method"] == m]
                               for m in METHODS}, ROOT / "docs/img/pai_fashion.png",
                              title=f"Conv-2, Fashion-MNIST, pruned at init, {ns.budget} (dense {100 * dense:.2f}%)")


if __name__ == "__main__":
    main()
