"""A small residual BN CNN on MNIST at depth L+1, paper mode: which copy subsets and refinements help.

The kind of target #18 names: a Conv + BN + ReLU stem, max pooling, a residual block
(``out += identity``), a strided convolution, a second residual block, ``AdaptiveAvgPool2d`` and a
Linear head (7.3k parameters), trained on MNIST with lotterylab's loop (Adam 1e-3, 2,000
iterations, seed 0; cached under runs/). Each variant constructs its ticket with ``eps_param``
(default 0.01) over the data's domain and records construction time, kept parameters, accuracy and
top-1 agreement on the first ``--eval`` test images (compact network, float32), the largest output
difference there, and whether the construction flagged the ticket as far from its target.
Variants: the default (smallest copy subsets), least-l1 copy subsets, + bias correction on 500
training images; copy layers drawn at ``copy_scale`` (0.3) of the layer's largest weight, alone,
with least-l1 subsets, with bias correction and with a 10x smaller ``eps_param``; and 2L beside them.

    python benchmarks/residual_lplus1.py [--threads 2] [--eval 2000] [--copy-scale 0.3] [--only I ...] [--out FILE]
Writes benchmarks/results/residual_lplus1.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
import lotterylab as ll  # noqa: E402
from lotterylab import data, threads  # noqa: E402
from lotterylab.io import write_json  # noqa: E402
from lotterylab.training import TrainConfig, evaluate, train  # noqa: E402

from targets import Block  # noqa: E402  (the tests' ResNet basic block: BN after each conv)

SHAPE = (1, 28, 28)


def target_net(splits, threads_: int) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                        Block(8, 8, 1, "relu"), Block(8, 16, 2, "relu"), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(16, 10))
    cfg = TrainConfig(budget="2000it", optimizer="adam", lr=1e-3, eval_every="2000it")
    train(net, splits, cfg, out=ROOT / "runs" / "bench-residual-bn-mnist-2000", threads=threads_, progress=False)
    return net.eval()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval", type=int, default=2000, help="test images evaluated (first N)")
    ap.add_argument("--eps-param", type=float, default=0.01)
    ap.add_argument("--copy-scale", type=float, default=0.3, help="the copy_scale of the copy_scale variants")
    ap.add_argument("--only", type=int, nargs="*", default=None, help="run only these variants (indices)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "residual_lplus1.json"))
    a = ap.parse_args()
    threads.set_threads(a.threads)
    splits = data.load("mnist")
    target = target_net(splits, a.threads)
    acc = evaluate(target, splits.test)["accuracy"]
    n_params = sum(p.numel() for p in target.parameters())
    print(f"target: {n_params:,} parameters, test accuracy {acc:.4f}")
    x, y = splits.test.x[:a.eval], splits.test.y[:a.eval]
    with torch.no_grad():
        out_t = target(x).double()
    calib = splits.train.take(500, seed=0).x
    ep = a.eps_param
    cs = a.copy_scale
    variants = [("L+1", "smallest copies (default)", {}),
                ("L+1", "least-l1 copies", {"copy_objective": "min_l1"}),
                ("L+1", "least-l1 copies + bias correction", {"copy_objective": "min_l1", "calibration": calib}),
                ("L+1", f"copy_scale {cs:g}", {"copy_scale": cs}),
                ("L+1", f"copy_scale {cs:g}, least-l1 copies", {"copy_scale": cs, "copy_objective": "min_l1"}),
                ("L+1", f"copy_scale {cs:g} + bias correction", {"copy_scale": cs, "calibration": calib}),
                ("L+1", f"copy_scale {cs:g} + bias correction, eps_param {ep / 10:g}",
                 {"copy_scale": cs, "calibration": calib, "eps_param": ep / 10}),
                ("2L", "bias correction", {"calibration": calib})]
    rows = []
    print("| mode | variant | construct | kept params | accuracy target → ticket | agreement | max output error | flagged |")
    print("|---|---|---|---|---|---|---|---|")
    for i, (mode, name, kw) in enumerate(variants):
        if a.only is not None and i not in a.only:
            continue
        kw = {"eps_param": ep, **kw}
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # (the far-from-target flag is recorded below)
            ticket = ll.construct(target, mode=mode, seed=0, domain=splits.test.x, input_shape=SHAPE, **kw)
        wall = time.perf_counter() - t0
        net = ticket.compact(dtype=torch.float32)
        with torch.no_grad():
            out_k = torch.cat([net(x[i:i + 500]).double() for i in range(0, len(x), 500)])
        row = {"mode": mode, "variant": name, "eps_param": kw["eps_param"], "copy_scale": kw.get("copy_scale", 1.0),
               "copy_objective": ticket.report.get("copy_objective"), "construct_seconds": wall,
               "kept": ticket.report["parameters"]["ticket"], "source": ticket.report["parameters"]["source"],
               "target_accuracy": float((out_t.argmax(1) == y).float().mean()),
               "ticket_accuracy": float((out_k.argmax(1) == y).float().mean()),
               "agreement": float((out_t.argmax(1) == out_k.argmax(1)).float().mean()),
               "max_output_error": float((out_t - out_k).abs().max()),
               "far_from_target": ticket.report["far_from_target"],
               "certificate_per_layer": ticket.report["certificate_per_layer"]}
        rows.append(row)
        print(f"| {mode} | {name} | {wall:.1f} s | {row['kept']:,} | {100 * row['target_accuracy']:.2f} → "
              f"{100 * row['ticket_accuracy']:.2f} % | {100 * row['agreement']:.2f} % | {row['max_output_error']:.3g} | "
              f"{'yes' if row['far_from_target'] else 'no'} |", flush=True)
    write_json(a.out, {"benchmark": "residual_lplus1", "threads": a.threads, "evaluated": a.eval,
                       "target_parameters": n_params, "target_test_accuracy": acc, "rows": rows})
    print(f"saved {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
