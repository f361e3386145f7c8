"""Frankle & Carbin (2019), LeNet-300-100 on MNIST: IMP with rewinding to initialisation, down to
3.6 % density, and the random re-initialisation control at every density, for several seeds.

Protocol: Glorot-normal init, Adam 1.2e-3, batch 60, 50k iterations per round, layerwise pruning
of 20 % of the hidden layers' and 10 % of the output layer's surviving weights per round,
evaluation every 500 iterations (learning speed = iteration of minimum validation loss).

    python benchmarks/frankle_carbin_lenet.py [--seeds 0 1 2] [--workers 2] [--report-only]

Each (seed, IMP or control) is one job on one torch thread; ``--workers`` jobs run side by side.
Runs live in ``--out`` and resume; rerunning after an interruption recomputes nothing finished.
Writes benchmarks/results/frankle_carbin_lenet.json and docs/img/fc_lenet_*.png.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def job(kind: str, seed: int, args: dict) -> tuple[str, int, float]:
    import torch

    from lotterylab import data, models
    from lotterylab.find.imp import IMP, IMPConfig
    from lotterylab.training import TrainConfig

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    splits = data.load("mnist")
    model = models.create("lenet_300_100", seed=seed)
    run = IMP(model, splits, TrainConfig(budget=args["budget"], eval_every=args["eval_every"], seed=seed),
              IMPConfig(target_density=args["density"]), out=Path(args["out"]) / f"seed{seed}", progress=False)
    if kind == "imp":
        run.run()
    else:
        run.control("reinit", seed=1000 + seed)
    return kind, seed, time.perf_counter() - t0


def collect(out: Path, seeds) -> dict:
    from lotterylab.io import read_json

    rows = {"ticket": {}, "reinit": {}}
    for s in seeds:
        imp_path = out / f"seed{s}" / "imp.json"
        ctl_path = out / f"seed{s}" / f"control_reinit_seed{1000 + s}" / "control.json"
        for label, path in (("ticket", imp_path), ("reinit", ctl_path)):
            if path.exists():
                for row in read_json(path)["rounds"]:
                    rows[label].setdefault(row["round"], []).append(row)
    table = []
    for r in sorted(rows["ticket"]):
        t = rows["ticket"][r]
        c = rows["reinit"].get(r, [])
        entry = {"round": r, "density": t[0]["density"], "seeds": len(t),
                 "ticket_test_acc": [x["test_accuracy"] for x in t],
                 "ticket_test_acc_at_early_stop": [x["test_accuracy_at_min_val_loss"] for x in t],
                 "ticket_early_stop_iteration": [x["min_val_loss_iteration"] for x in t],
                 "reinit_test_acc": [x["test_accuracy"] for x in c],
                 "reinit_test_acc_at_early_stop": [x["test_accuracy_at_min_val_loss"] for x in c],
                 "reinit_early_stop_iteration": [x["min_val_loss_iteration"] for x in c],
                 "wall_time_s": sum(x["wall_time_s"] for x in t + c)}
        table.append(entry)
    return {"rows": table}


def mean(xs):
    return statistics.fmean(xs) if xs else float("nan")


def report(out: Path, seeds, wall: float | None) -> dict:
    from lotterylab import plots
    from lotterylab.io import read_json, write_json

    res = collect(out, seeds)
    rows = res["rows"]
    print(f"{'round':>5} {'density':>8} {'ticket acc':>11} {'reinit acc':>11} {'ticket ES it':>13} {'reinit ES it':>13}")
    for e in rows:
        print(f"{e['round']:>5} {100 * e['density']:>7.2f}% {100 * mean(e['ticket_test_acc_at_early_stop']):>10.2f}% "
              f"{100 * mean(e['reinit_test_acc_at_early_stop']):>10.2f}% {mean(e['ticket_early_stop_iteration']):>13.0f} "
              f"{mean(e['reinit_early_stop_iteration']):>13.0f}")
    checks = {}
    if rows:
        dense = rows[0]
        near21 = min(rows, key=lambda e: abs(e["density"] - 0.211))
        last = rows[-1]
        checks = {
            "dense_acc": mean(dense["ticket_test_acc_at_early_stop"]),
            "density_21": near21["density"],
            "early_stop_it_dense": mean(dense["ticket_early_stop_iteration"]),
            "early_stop_it_21": mean(near21["ticket_early_stop_iteration"]),
            "learns_faster_at_21": mean(near21["ticket_early_stop_iteration"]) < mean(dense["ticket_early_stop_iteration"]),
            "density_last": last["density"],
            "ticket_acc_last": mean(last["ticket_test_acc_at_early_stop"]),
            "reinit_acc_last": mean(last["reinit_test_acc_at_early_stop"]),
            "ticket_within_0.5_at_last": mean(last["ticket_test_acc_at_early_stop"])
            >= mean(dense["ticket_test_acc_at_early_stop"]) - 0.005,
            "reinit_below_ticket_at_last": bool(last["reinit_test_acc_at_early_stop"]) and
            max(last["reinit_test_acc_at_early_stop"]) < min(last["ticket_test_acc_at_early_stop"]),
        }
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in checks.items()})
    prev = read_json(ROOT / "benchmarks/results/frankle_carbin_lenet.json") if (
        ROOT / "benchmarks/results/frankle_carbin_lenet.json").exists() else {}
    res.update({"benchmark": "frankle_carbin_lenet", "seeds": list(seeds), "checks": checks,
                "wall_time_s": wall if wall is not None else prev.get("wall_time_s"),
                "sum_of_run_times_s": sum(e["wall_time_s"] for e in rows), "threads_per_job": 1})
    write_json(ROOT / "benchmarks/results/frankle_carbin_lenet.json", res)
    series = {"IMP, rewind to init": [(e["density"], e["ticket_test_acc_at_early_stop"]) for e in rows],
              "random re-init": [(e["density"], e["reinit_test_acc_at_early_stop"]) for e in rows if e["reinit_test_acc"]]}
    plots.accuracy_vs_density(series, ROOT / "docs/img/fc_lenet_accuracy.png",
                              title="LeNet-300-100, MNIST: test accuracy at early stopping")
    speed = {"IMP, rewind to init": [(e["density"], e["ticket_early_stop_iteration"]) for e in rows],
             "random re-init": [(e["density"], e["reinit_early_stop_iteration"]) for e in rows if e["reinit_test_acc"]]}
    plots.learning_speed_vs_density(speed, ROOT / "docs/img/fc_lenet_speed.png",
                                    title="LeNet-300-100, MNIST: iteration of minimum validation loss")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--density", type=float, default=0.036)
    ap.add_argument("--budget", default="50000it")
    ap.add_argument("--eval-every", default="500it")
    ap.add_argument("--out", default=str(ROOT / "runs/bench/frankle_carbin_lenet"))
    ap.add_argument("--report-only", action="store_true")
    ns = ap.parse_args()
    out = Path(ns.out)
    args = {"budget": ns.budget, "eval_every": ns.eval_every, "density": ns.density, "out": str(out)}
    wall = None
    if not ns.report_only:
        t0 = time.perf_counter()
        with ProcessPoolExecutor(ns.workers) as pool:
            pending = {pool.submit(job, "imp", s, args) for s in ns.seeds}
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in finished:
                    kind, seed, dt = f.result()
                    print(f"{kind} seed {seed} done in {dt:.0f} s", flush=True)
                    if kind == "imp":
                        pending.add(pool.submit(job, "control", seed, args))
        wall = time.perf_counter() - t0
        print(f"total wall time {wall:.0f} s with {ns.workers} workers")
    report(out, ns.seeds, wall)


if __name__ == "__main__":
    main()
