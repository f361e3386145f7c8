"""Edge-popup (Ramanujan et al. 2020) on MNIST: LeNet-300-100 and a 2x wider variant, weights never
trained (signed Kaiming constant, scaled by 1/sqrt(k)), per-layer density k; SGD 0.1, momentum
0.9, weight decay 5e-4, cosine, batch 128.

    python benchmarks/edge_popup_mnist.py [--epochs 20] [--densities 0.5 0.3] [--workers 2]

Writes benchmarks/results/edge_popup_mnist.json; each run's ticket file lies in its run directory,
and the script reloads it and re-evaluates the regenerated network to confirm the figure.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def job(widths, density, epochs, out):
    import torch

    from lotterylab import data, load_ticket
    from lotterylab.find.edge_popup import EdgePopupConfig, edge_popup
    from lotterylab.training import TrainConfig, evaluate

    torch.set_num_threads(1)
    splits = data.load("mnist")
    cfg = TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4, batch_size=128,
                      budget=f"{epochs}ep", schedule="cosine", eval_every="1ep")
    run_dir = Path(out) / f"mlp{'-'.join(map(str, widths))}_k{density}"
    t0 = time.perf_counter()
    ticket, result = edge_popup("mlp", splits, EdgePopupConfig(density=density), cfg, out=run_dir, progress=False,
                                widths=list(widths))
    reloaded = load_ticket(run_dir / "ticket.safetensors")
    acc = evaluate(reloaded.network(), splits.test)["accuracy"]
    counts = reloaded.counts()
    return {"widths": list(widths), "density": density, "epochs": epochs,
            "test_accuracy": result["final"]["test_accuracy"], "test_accuracy_reloaded_ticket": acc,
            "best_val_accuracy": max(h["val_accuracy"] for h in result["history"]),
            "source_parameters": counts["source_parameters"], "ticket_parameters": counts["ticket_parameters"],
            "ticket_file_bytes": (run_dir / "ticket.safetensors").stat().st_size,
            "wall_time_s": time.perf_counter() - t0, "seconds_per_epoch": result["seconds_per_epoch"]}


def main() -> None:
    from lotterylab.io import write_json

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--densities", type=float, nargs="+", default=[0.5])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "runs/bench/edge_popup_mnist"))
    ns = ap.parse_args()
    configs = [(w, d) for w in ((300, 100), (600, 200)) for d in ns.densities]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(ns.workers) as pool:
        rows = list(pool.map(job, [c[0] for c in configs], [c[1] for c in configs], [ns.epochs] * len(configs),
                             [ns.out] * len(configs)))
    print(f"{'widths':>10} {'k':>5} {'test acc':>9} {'reloaded':>9} {'ticket params':>14} {'s/epoch':>8}")
    for r in rows:
        print(f"{'-'.join(map(str, r['widths'])):>10} {r['density']:>5} {100 * r['test_accuracy']:>8.2f}% "
              f"{100 * r['test_accuracy_reloaded_ticket']:>8.2f}% {r['ticket_parameters']:>14,} {r['seconds_per_epoch']:>8.2f}")
    write_json(ROOT / "benchmarks/results/edge_popup_mnist.json",
               {"benchmark": "edge_popup_mnist", "rows": rows, "wall_time_s": time.perf_counter() - t0,
                "threads_per_job": 1, "workers": ns.workers})


if __name__ == "__main__":
    main()
