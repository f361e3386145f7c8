"""LeNet-300-100 on MNIST: lotterylab's loop (unmasked and masked) against a bare PyTorch loop.

Part 1, speed: seconds per epoch (Adam 1.2e-3, batch 60, no evaluation inside the timed span) for
  (a) a bare PyTorch loop (index a batch, forward, backward, step), with torch's default Adam,
      with its fused Adam (which lotterylab uses), and with that Adam stepped by
      ``lotterylab.optimizers.LeanStep`` (the same update without ``step()``'s per-call work),
  (b) lotterylab.train without a mask,
  (c) lotterylab.train with a 20%-density mask (grads masked, weights re-zeroed every step),
run interleaved, ``--repeats`` times each; medians and ratios are printed and saved.
With ``--baseline REV``, also (b) and (c) of revision REV against this tree, each run 3 epochs in its own
process (a git worktree of REV), alternating, with the final weights' digest of each (the same
training must give the same weights).
Part 2, accuracy: the Frankle & Carbin protocol (Glorot init, 50k iterations) per seed.

    python benchmarks/train_lenet.py [--repeats 5] [--seeds 0] [--threads 1] [--skip-full] [--baseline REV]
Writes benchmarks/results/train_lenet.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lotterylab import Mask, data, models  # noqa: E402
from lotterylab.io import write_json  # noqa: E402
from lotterylab.optimizers import LeanStep  # noqa: E402
from lotterylab.training import TrainConfig, epoch_order, train  # noqa: E402


def bare_epoch(splits, seed: int, fused: bool = False, lean: bool = False) -> float:
    """The reference: the plainest correct PyTorch loop over the same batches (``lean``: its fused
    Adam stepped by lotterylab's LeanStep, the one difference)."""
    model = models.create("lenet_300_100", seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr=1.2e-3, fused=fused or lean)
    step = LeanStep(opt) if lean else opt.step
    x_all, y_all = splits.train.x, splits.train.y
    n = len(splits.train) // 60
    order = epoch_order(0, 0, len(splits.train))
    t0 = time.perf_counter()
    for i in range(n):
        idx = order[i * 60:(i + 1) * 60]
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x_all[idx]), y_all[idx]).backward()
        step()
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


CHILD = r"""
import hashlib, json, sys
sys.path.insert(0, sys.argv[1])
import torch
torch.set_num_threads(int(sys.argv[2]))
from lotterylab import Mask, data, models
from lotterylab.training import TrainConfig, train
seed, density = int(sys.argv[3]), float(sys.argv[4])
splits = data.load("mnist")
model = models.create("lenet_300_100", seed=seed)
mask = None
if density < 1:
    g = torch.Generator().manual_seed(seed)
    mask = Mask({n: torch.rand(p.shape, generator=g) < density for n, p in model.named_parameters() if p.dim() == 2})
res = train(model, splits, TrainConfig(budget="3ep", eval_every="3ep"), mask=mask, progress=False)
digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in model.parameters())).hexdigest()
print(json.dumps({"s": res["seconds_per_epoch"], "weights": digest, "code": sys.modules["lotterylab"].__file__}))
"""


def child_epoch(tree: Path, threads: int, seed: int, density: float) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(tree), str(threads), str(seed), str(density)],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"the epoch with {tree} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def against_baseline(baseline: str, repeats: int, threads: int) -> dict:
    """lotterylab's loop at revision ``baseline`` and in this tree, unmasked and masked, alternating."""
    root = Path(__file__).resolve().parents[1]
    runs: dict[str, list] = {f"{who}_{kind}": [] for kind in ("unmasked", "masked") for who in ("baseline", "this")}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "baseline"
        subprocess.run(["git", "-C", str(root), "worktree", "add", "--detach", "-q", str(base), baseline], check=True)
        try:
            for r in range(repeats):
                for kind, density in (("unmasked", 1.0), ("masked", 0.2)):
                    for who, tree in (("baseline", base), ("this", root)):
                        runs[f"{who}_{kind}"].append(child_epoch(tree, threads, r, density))
                print(f"repeat {r}: " + ", ".join(f"{k} {v[-1]['s']:.3f}s" for k, v in runs.items()), flush=True)
        finally:
            subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", str(base)], check=False)
    med = {k: statistics.median(x["s"] for x in v) for k, v in runs.items()}
    same = all(a["weights"] == b["weights"] for kind in ("unmasked", "masked")
               for a, b in zip(runs[f"baseline_{kind}"], runs[f"this_{kind}"]))
    res = {"baseline": baseline, "seconds_per_epoch_median": med, "runs": runs, "weights_identical": same,
           "speedup_unmasked": med["baseline_unmasked"] / med["this_unmasked"],
           "speedup_masked": med["baseline_masked"] / med["this_masked"]}
    _print_medians(f"against {baseline} (seconds per epoch, median of {repeats}, {threads} thread(s)):", med)
    print(f"  speedup unmasked {res['speedup_unmasked']:.2f}x, masked {res['speedup_masked']:.2f}x; "
          f"weights identical: {same}")
    return res


def _print_medians(title: str, med: dict) -> None:
    print(f"\n{title}")
    for k, v in med.items():
        print(f"  {k:<26} {v:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seeds", type=int, nargs="*", default=[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-full", action="store_true")
    ap.add_argument("--baseline", default="", help="also time lotterylab's loop at this git revision against this tree")
    ap.add_argument("--skip-speed", action="store_true", help="skip part 1's in-process variants")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_lenet.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    splits = data.load("mnist")

    times = {"bare": [], "bare_fused_adam": [], "bare_fused_adam_lean_step": [], "lotterylab": [],
             "lotterylab_masked": []}
    for r in range(0 if args.skip_speed else args.repeats):
        times["bare"].append(bare_epoch(splits, r))
        times["bare_fused_adam"].append(bare_epoch(splits, r, fused=True))
        times["bare_fused_adam_lean_step"].append(bare_epoch(splits, r, lean=True))
        times["lotterylab"].append(lotterylab_epoch(splits, r, None))
        times["lotterylab_masked"].append(lotterylab_epoch(splits, r, 0.2))
        print(f"repeat {r}: " + ", ".join(f"{k} {v[-1]:.3f}s" for k, v in times.items()), flush=True)
    speed = None if args.skip_speed else speed_table(times, args)
    baseline = against_baseline(args.baseline, args.repeats, args.threads) if args.baseline else None
    _write(args, speed, baseline, _full(args, splits))


def speed_table(times: dict, args) -> dict:
    med = {k: statistics.median(v) for k, v in times.items()}
    speed = {
        "seconds_per_epoch_median": med,
        "seconds_per_epoch_all": times,
        "ratio_lotterylab_vs_bare": med["lotterylab"] / med["bare"],
        "ratio_lotterylab_vs_bare_fused": med["lotterylab"] / med["bare_fused_adam"],
        "ratio_lean_step_vs_optimizer_step": med["bare_fused_adam_lean_step"] / med["bare_fused_adam"],
        "ratio_masked_vs_unmasked": med["lotterylab_masked"] / med["lotterylab"],
        "ratio_masked_vs_bare": med["lotterylab_masked"] / med["bare"],
    }
    _print_medians(f"seconds per epoch (median of {args.repeats}, {args.threads} thread(s)):", med)
    print(f"  masked / unmasked  {speed['ratio_masked_vs_unmasked']:.3f}   masked / bare {speed['ratio_masked_vs_bare']:.3f}"
          f"   LeanStep / optimizer.step() {speed['ratio_lean_step_vs_optimizer_step']:.3f}")
    return speed


def _full(args, splits) -> list:
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
    return full


def _write(args, speed, baseline, full) -> None:
    out = {"benchmark": "train_lenet", "machine": platform.machine(), "processor": platform.processor(),
           "cpu_count": torch.get_num_threads(), "threads": args.threads, "torch": torch.__version__,
           "speed": speed, "against_baseline": baseline, "frankle_carbin": full, "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    write_json(args.out, out)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
