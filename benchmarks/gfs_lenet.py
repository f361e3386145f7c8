"""Greedy forward selection on a trained LeNet-300-100 (MNIST, Frankle & Carbin protocol, seed 0;
the same cached target as benchmarks/construct_mlp.py): neurons kept per hidden layer at the
given fractions, against magnitude (|w_in| * |w_out|) and random neuron pruning at the same
budgets; each without fine-tuning and with a short fine-tuning (GFS: ``--finetune`` after each
of the two layers; the baselines: twice that after pruning, the same total); and the forward-pass
speed of the physically smaller network against the dense one (interleaved, median).

    python benchmarks/gfs_lenet.py [--fractions 0.5 0.25] [--batch 1024] [--finetune 1ep] [--threads 1]

Writes benchmarks/results/gfs_lenet.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def interleaved_speed(a, b, x, repeats: int = 30) -> tuple[float, float]:
    """Median forward time of a and b on x, alternating so machine noise hits both alike."""
    import torch

    ta, tb = [], []
    with torch.no_grad():
        a(x), b(x)
        for _ in range(repeats):
            for net, out in ((a, ta), (b, tb)):
                t0 = time.perf_counter()
                net(x)
                out.append(time.perf_counter() - t0)
    return statistics.median(ta), statistics.median(tb)


def main() -> None:
    import copy

    import torch

    from lotterylab import data, models
    from lotterylab.find.gfs import GFSConfig, gfs, neuron_baseline
    from lotterylab.hparams import parse_steps
    from lotterylab.io import write_json
    from lotterylab.training import TrainConfig, evaluate, train

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.5, 0.25])
    ap.add_argument("--batch", type=int, default=1024, help="GFS selection examples")
    ap.add_argument("--steps", nargs="+", default=["1/k"], help="1/k, line (~9x the picks cost) and/or add")
    ap.add_argument("--pool", type=int, default=0, help="random candidate pool per pick (0: all neurons)")
    ap.add_argument("--steps-per-neuron", type=float, default=2.0)
    ap.add_argument("--finetune", default="1ep", help="fine-tuning after each GFS layer (Adam 1.2e-3, batch 60)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ft-schedule", default="constant", choices=["constant", "cosine"],
                    help="learning-rate schedule of every fine-tuning (GFS and baselines alike)")
    ap.add_argument("--out", default="benchmarks/results/gfs_lenet.json")
    ns = ap.parse_args()
    torch.set_num_threads(ns.threads)
    splits = data.load("mnist")
    model = models.create("lenet_300_100", seed=0)
    train(model, splits, TrainConfig(budget="50000it"), out=ROOT / "runs/bench-lenet-relu", progress=False)
    model.eval()
    dense = evaluate(model, splits.test)["accuracy"]
    print(f"dense LeNet-300-100: test accuracy {100 * dense:.2f}%", flush=True)
    per_epoch = len(splits.train) // 60
    ft_twice = f"{2 * parse_steps(ns.finetune, per_epoch)}it"
    rows = []
    x = splits.test.x
    for frac in ns.fractions:
        row = {"fraction": frac, "neurons": [round(frac * 300), round(frac * 100)]}
        for step in ns.steps:
            for ft in ("0it", ns.finetune):
                t0 = time.perf_counter()
                ft_cfg = None if ft == "0it" else TrainConfig(budget=ft, schedule=ns.ft_schedule)
                small, rec = gfs(model, splits, GFSConfig(fraction=frac, batch=ns.batch, step=step, finetune=ft,
                                                          pool=ns.pool, steps_per_neuron=ns.steps_per_neuron),
                                 finetune_cfg=ft_cfg)
                key = f"gfs_{step}" + ("_finetuned" if ft != "0it" else "")
                t_dense, t_small = interleaved_speed(model, small.eval(), x)
                row[key] = {"test_accuracy": evaluate(small, splits.test)["accuracy"], "widths": rec["widths"],
                            "seconds": time.perf_counter() - t0, "picks": [len(la["picks"]) for la in rec["layers"]],
                            "forward_s": t_small, "dense_forward_s": t_dense, "speedup": t_dense / t_small}
                print(f"  {frac:.2f} {key}: {100 * row[key]['test_accuracy']:.2f}% widths {rec['widths']} "
                      f"({row[key]['seconds']:.0f} s; forward {row[key]['speedup']:.2f}x faster)", flush=True)
        for kind in ("magnitude", "random"):
            net = neuron_baseline(model, kind, frac)
            row[kind] = {"test_accuracy": evaluate(net, splits.test)["accuracy"]}
            tuned = copy.deepcopy(net).train()
            train(tuned, splits, TrainConfig(budget=ft_twice, schedule=ns.ft_schedule), progress=False)
            row[kind + "_finetuned"] = {"test_accuracy": evaluate(tuned.eval(), splits.test)["accuracy"]}
            print(f"  {frac:.2f} {kind}: {100 * row[kind]['test_accuracy']:.2f}%, fine-tuned "
                  f"{100 * row[kind + '_finetuned']['test_accuracy']:.2f}%", flush=True)
        rows.append(row)
    write_json(ROOT / ns.out,
               {"benchmark": "gfs_lenet", "dense_test_accuracy": dense, "pool": ns.pool,
                "steps_per_neuron": ns.steps_per_neuron, "forward_batch": len(x), "threads": ns.threads,
                "selection_batch": ns.batch, "finetune_per_layer": ns.finetune, "finetune_baselines": ft_twice,
                "finetune_schedule": ns.ft_schedule,
                "rows": rows})


if __name__ == "__main__":
    main()
