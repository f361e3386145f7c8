"""LeNet-300-100 on MNIST: lotterylab's loop (unmasked and masked) against a bare PyTorch loop.

Part 1, speed: seconds per epoch (Adam 1.2e-3, batch 60, no evaluation inside the timed span) for
  (a) a bare PyTorch loop (index a batch, forward, backward, step), with torch's default Adam
      and with its fused Adam (which lotterylab uses),
  (b) lotterylab.train without a mask,
  (c) lotterylab.train with a 20%-density mask (grads masked, weights re-zeroed every step),
run interleaved, ``--repeats`` times each; medians and ratios are printed and saved.
Part 2, accuracy: the Frankle & Carbin protocol (Glorot init, 50k iterations) per seed.

    python benchmarks/train_lenet.py [--repeats 5] [--seeds 0] [--threads 1] [--skip-full]
Writes benchmarks/results/train_lenet.json.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lotterylab import Mask, data, models  # noqa: E402
from lotterylab.io import write_json  # noqa: E402
from lotterylab.training import TrainConfig, epoch_order, train  # noqa: E402


def bare_epoch(splits, seed: int, fused: bool = False) -> float:
    """The reference: the plainest correct PyTorch loop over the same batches."""
    model = models.create("lenet_300_100", seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr=1.2e-3, fused=fused)
    x_all, y_all = splits.train.x, splits.train.y
    n = len(splits.train) // 60
    order = epoch_order(0, 0, len(splits.train))
    t0 = time.perf_counter()
    for i in range(n):
        idx = order[i * 60:(i + 1) * 60]
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x_all[idx]), y_all[idx]).backward()
        opt.step()
    return time.perf_counter() - t0


def lotterylab_epoch(splits, seed: int, mask_density: float | None) -> float:
    model = models.create("lenet_300_100", seed=seed)
    mask = None
    if mask_density is not None:
        g = torch.Generator().manual_seed(seed)
        mask = Mask({n: torch.rand(p.shape, generator=g) < mask_density for n, p in model.named_parameters()
                     if p.dim() == 2})
    res = train(model, splits, TrainConfig(budget="1ep"), mask=mask, progress=False)
    return res["wall_time_s"] - res["eval_time_s"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seeds", type=int, nargs="*", default=[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-full", action="store_true")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_lenet.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    splits = data.load("mnist")

    times = {"bare": [], "bare_fused_adam": [], "lotterylab": [], "lotterylab_masked": []}
    for r in range(args.repeats):
        times["bare"].append(bare_epoch(splits, r))
        times["bare_fused_adam"].append(bare_epoch(splits, r, fused=True))
        times["lotterylab"].append(lotterylab_epoch(splits, r, None))
        times["lotterylab_masked"].append(lotterylab_epoch(splits, r, 0.2))
        print(f"repeat {r}: " + ", ".join(f"{k} {v[-1]:.3f}s" for k, v in times.items()), flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    speed = {
        "seconds_per_epoch_median": med,
        "seconds_per_epoch_all": times,
        "ratio_lotterylab_vs_bare": med["lotterylab"] / med["bare"],
        "ratio_lotterylab_vs_bare_fused": med["lotterylab"] / med["bare_fused_adam"],
        "ratio_masked_vs_unmasked": med["lotterylab_masked"] / med["lotterylab"],
        "ratio_masked_vs_bare": med["lotterylab_masked"] / med["bare"],
    }
    print(f"\nseconds per epoch (median of {args.repeats}, {args.threads} thread(s)):")
    for k, v in med.items():
        print(f"  {k:<18} {v:.3f}")
    print(f"  masked / unmasked  {speed['ratio_masked_vs_unmasked']:.3f}   masked / bare {speed['ratio_masked_vs_bare']:.3f}")

    full = []
    if not args.skip_full:
        for seed in args.seeds:
            model = models.create("lenet_300_100", init="glorot_normal", seed=seed)
            t0 = time.perf_counter()
            res = train(model, splits, TrainConfig(budget="50000it", seed=seed), progress=False)
            wall = time.perf_counter() - t0
            full.append({"seed": seed, "test_accuracy": res["final"]["test_accuracy"],
                         "min_val_loss_iteration": res["min_val_loss_iteration"],
                         "test_accuracy_at_min_val_loss": res["min_val_loss"]["test_accuracy"],
                         "wall_time_s": wall, "seconds_per_epoch": res["seconds_per_epoch"]})
            print(f"F&C protocol seed {seed}: test accuracy {full[-1]['test_accuracy']:.4f}, "
                  f"{wall:.1f} s for 50k iterations ({res['seconds_per_epoch']:.2f} s/epoch of training)")

    out = {"benchmark": "train_lenet", "machine": platform.machine(), "processor": platform.processor(),
           "cpu_count": torch.get_num_threads(), "threads": args.threads, "torch": torch.__version__,
           "speed": speed, "frankle_carbin": full, "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    write_json(args.out, out)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
