"""Early-bird tickets (You et al. 2020) on Fashion-MNIST with Conv-2 + BatchNorm: channel masks
from BN scaling factors (L1 penalty 1e-4), 50 % of channels kept, a check every 0.1 epoch, window
5, threshold 0.1. One dense run (the detector watches it without stopping it, so the same run
gives the dense accuracy and the draw point), then the drawn ticket retrained from the original
initialisation with the same schedule (SGD 0.05, momentum 0.9, weight decay 1e-4, cosine).

    python benchmarks/early_bird_conv2.py [--epochs 3] [--scope global|layerwise]

Writes benchmarks/results/early_bird_conv2_<scope>.json and docs/img/early_bird_distance_<scope>.png.
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

    from lotterylab import data, models, plots
    from lotterylab.find.early_bird import EarlyBird
    from lotterylab.io import write_json
    from lotterylab.masks import Mask
    from lotterylab.training import TrainConfig, train

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--density", type=float, default=0.5, help="fraction of channels kept")
    ap.add_argument("--scope", default="global", choices=["global", "layerwise"],
                    help="channel ranking: global (network slimming) or per layer")
    ap.add_argument("--out", default=str(ROOT / "runs/bench/early_bird_conv2"))
    ns = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(ns.out) / ns.scope
    t0 = time.perf_counter()
    splits = data.load("fashion-mnist")
    per_epoch = len(splits.train) // 128
    cfg = TrainConfig(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=1e-4, batch_size=128,
                      budget=f"{ns.epochs}ep", schedule="cosine", eval_every=f"{ns.epochs}ep")

    def fresh():
        return models.create("conv2", input_shape=splits.input_shape, seed=0, batch_norm=True)

    model = fresh()
    eb = EarlyBird(model, density=ns.density, kind="channel", window=5, threshold=0.1, l1=1e-4, stop=False,
                   every=max(1, per_epoch // 10), scope=ns.scope)
    search_dir = out / "dense_with_detector"
    if (search_dir / "result.json").exists():  # the detector's state is not checkpointed: rerun from scratch
        import shutil
        shutil.rmtree(search_dir)
    dense = train(model, splits, cfg, out=search_dir, callbacks=[eb], progress=False, extra_hash={"bench": "eb"})
    if eb.drawn is None:
        raise SystemExit("no early-bird ticket drawn within the budget; raise --epochs or the threshold")
    mask: Mask = eb.drawn["mask"]
    mask.save(out / "early_bird_mask.safetensors")
    ticket = train(fresh(), splits, cfg, mask=mask, out=out / "ticket_retrain", progress=False,
                   extra_hash={"bench": "eb", "mask": mask.fingerprint()})
    channels = {n: int(m.sum()) for n, m in eb.selection().items()}
    res = {"benchmark": "early_bird_conv2", "epochs": ns.epochs, "scope": ns.scope, "iterations": dense["iterations"],
           "drawn_iteration": eb.drawn["iteration"], "drawn_fraction_of_budget": eb.drawn["fraction_of_budget"],
           "drawn_epoch": eb.drawn["epoch"], "channels_kept": channels, "weight_density_of_masked": mask.density,
           "dense_test_accuracy": dense["final"]["test_accuracy"],
           "ticket_test_accuracy": ticket["final"]["test_accuracy"],
           "checks": eb.checks, "wall_time_s": time.perf_counter() - t0, "threads": 1}
    res["gap_points"] = 100 * (res["dense_test_accuracy"] - res["ticket_test_accuracy"])
    write_json(ROOT / f"benchmarks/results/early_bird_conv2_{ns.scope}.json", res)
    plots.mask_distance_matrix(eb.distance_matrix(), ROOT / f"docs/img/early_bird_distance_{ns.scope}.png",
                               labels=[f"{c['epoch']:.1f}" for c in eb.checks],
                               title="Conv-2+BN, Fashion-MNIST: channel-mask distance between checks")
    print(f"drawn at iteration {res['drawn_iteration']} of {res['iterations']} "
          f"({100 * res['drawn_fraction_of_budget']:.1f}% of the budget); channels kept {channels}")
    print(f"dense {100 * res['dense_test_accuracy']:.2f}%  early-bird ticket retrained {100 * res['ticket_test_accuracy']:.2f}%"
          f"  gap {res['gap_points']:.2f} points; {res['wall_time_s']:.0f} s")


if __name__ == "__main__":
    main()
