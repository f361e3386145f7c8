"""Strong tickets for whole convolutional targets (Conv-2, ResNet-20) trained on MNIST, paper mode.

Trains the targets once (cached under runs/), constructs each ticket with ``eps_param`` (default
0.01 per parameter, as the papers) in the requested modes over the data's domain (per-channel
min/max of the normalised test set), and records: construction time (total, subset sum),
instances per second of the whole pipeline against the subset-sum engine's own rate, peak memory,
parameter counts, the certificate, and on the test set the largest output difference, both
accuracies and top-1 agreement. The ticket is evaluated in float32 in batches through its compact
network (session 14; equal to the masked source ``ticket.network()``, tested, and 26x faster on
Conv-2); every layer, the Linear head included, is constructed.

    python benchmarks/construct_cnn.py [--models conv2 resnet20] [--modes 2L] [--threads 2] [--train-its 500]
        [--calibration N] [--compensate] [--copy-objective min_l1] [--copy-scale C] [--eval N] [--out FILE]
Writes benchmarks/results/construct_cnn.json.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import lotterylab as ll  # noqa: E402
from lotterylab import data, models  # noqa: E402
from lotterylab.io import write_json  # noqa: E402
from lotterylab.training import TrainConfig, evaluate, train  # noqa: E402

SHAPE = (1, 28, 28)


def trained(name: str, splits, its: int, threads: int):
    kw = {"width": 16} if name == "resnet20" else {}
    model = models.create(name, "relu", input_shape=SHAPE, seed=0, **kw)
    cfg = TrainConfig(budget=f"{its}it", optimizer="adam", lr=2e-4 if name == "conv2" else 1e-3, eval_every=f"{its}it")
    train(model, splits, cfg, out=Path("runs") / f"bench-{name}-mnist-{its}", threads=threads, progress=False)
    return model.eval()


@torch.no_grad()
def outputs(net, x, batch: int) -> torch.Tensor:
    return torch.cat([net(x[i:i + batch]).double() for i in range(0, len(x), batch)])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="*", default=["conv2", "resnet20"])
    ap.add_argument("--modes", nargs="*", default=["2L"])
    ap.add_argument("--eps-param", type=float, default=0.01)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--train-its", type=int, default=500)
    ap.add_argument("--eval", type=int, default=10_000, help="test images evaluated (first N)")
    ap.add_argument("--calibration", type=int, default=0,
                    help="bias correction on this many training images (0: off; the papers have none)")
    ap.add_argument("--compensate", action="store_true", help="with --calibration: GPTQ-style error compensation")
    ap.add_argument("--copy-objective", default=None, choices=["min_cardinality", "min_error", "min_l1"],
                    help="subsets of the L+1 copy layers (default: the construction's objective)")
    ap.add_argument("--copy-scale", type=float, default=1.0,
                    help="L+1 rows only (2L has no copy layers; its rows record copy_scale 1): copy layers' "
                         "weights at this fraction of each layer's largest target weight")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "construct_cnn.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    splits = data.load("mnist")
    x, y = splits.test.x[:args.eval], splits.test.y[:args.eval]
    calib = None
    if args.calibration:  # training images (never the test set the ticket is scored on), a seeded draw
        calib = splits.train.take(args.calibration, seed=0).x
    rows = []
    for name in args.models:
        target = trained(name, splits, args.train_its, args.threads)
        acc = evaluate(target, splits.test)["accuracy"]
        out_t = outputs(target, x, 500)
        print(f"{name}: target test accuracy {acc:.4f}", flush=True)
        for mode in args.modes:
            t0 = time.perf_counter()
            ticket = ll.construct(target, mode=mode, eps_param=args.eps_param, seed=0, domain=splits.test.x,
                                  input_shape=SHAPE, calibration=calib, compensate=args.compensate,
                                  copy_objective=args.copy_objective,
                                  **({"copy_scale": args.copy_scale} if mode == "L+1" else {}))
            wall = time.perf_counter() - t0
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
            rep = ticket.report
            t1 = time.perf_counter()
            net = ticket.compact(dtype=torch.float32)
            out_k = outputs(net, x, 100)
            eval_s = time.perf_counter() - t1
            del net
            n_inst = rep["subset_sum"]["instances"]
            row = {"model": name, "mode": mode, "eps_param": args.eps_param, "train_iterations": args.train_its,
                   "copy_objective": rep.get("copy_objective"), "copy_scale": rep.get("copy_scale"),
                   "sampled_error": rep.get("sampled_error"), "calibration_check": rep.get("calibration_check"),
                   "far_from_target": rep.get("far_from_target"),
                   "calibration": args.calibration, "bias_correction": rep.get("bias_correction"),
                   "compensation": rep.get("compensation"),
                   "construct_seconds": wall, "subset_sum_seconds": rep["timings_s"]["subset_sum"],
                   "instances": n_inst, "instances_per_s_pipeline": n_inst / wall,
                   "instances_per_s_engine": n_inst / max(rep["timings_s"]["subset_sum"], 1e-9),
                   "peak_rss_gib_so_far": peak, "parameters": rep["parameters"], "subset_sum": rep["subset_sum"],
                   "depth": rep["depth"], "rho": rep["rho"], "rho_first": rep["rho_first"],
                   "certificate_data_domain": rep["certificate"],
                   "max_output_error_test": float((out_t - out_k).abs().max()),
                   "target_accuracy": float((out_t.argmax(1) == y).float().mean()),
                   "ticket_accuracy": float((out_k.argmax(1) == y).float().mean()),
                   "agreement": float((out_t.argmax(1) == out_k.argmax(1)).float().mean()),
                   "evaluated": len(x), "eval_seconds": eval_s}
            rows.append(row)
            print(f"{name} {mode}: {wall:.1f} s (subset sum {row['subset_sum_seconds']:.1f} s; {n_inst:,} instances, "
                  f"{row['instances_per_s_pipeline']:,.0f}/s pipeline vs {row['instances_per_s_engine']:,.0f}/s engine), "
                  f"peak {peak:.1f} GiB; source {rep['parameters']['source']:,} ticket {rep['parameters']['ticket']:,} "
                  f"target {rep['parameters']['target']:,}; acc {row['target_accuracy']:.4f} -> "
                  f"{row['ticket_accuracy']:.4f}, agree {row['agreement']:.4f}, max err "
                  f"{row['max_output_error_test']:.3g}, cert {rep['certificate']:.3g} (eval {eval_s:.0f} s)", flush=True)
            del ticket
            write_json(args.out, {"benchmark": "construct_cnn", "threads": args.threads, "rows": rows,
                                  "torch": torch.__version__})
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
