"""Does ``--threads`` hold? Subset-sum throughput and training speed at 1 and 2 requested threads.

Before session 6 numba's first parallel launch (drawing a model's weights) reset torch to the core
count, so every "1 thread" figure measured after a model was built ran on 2. This script builds a
model first, as the benchmarks do, then measures, and records the thread count torch reports
afterwards. Same instances for every setting (min_cardinality, n = 15, eps 0.01, 1M instances;
LeNet-300-100 training steps, Adam, batch 60, 300 steps). Medians of ``--repeats``.

    python benchmarks/threads.py [--repeats 5]
Writes benchmarks/results/threads.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lotterylab import models  # noqa: E402
from lotterylab import subsetsum as ss  # noqa: E402
from lotterylab.io import write_json  # noqa: E402


def subset_sum_rate(repeats: int) -> float:
    g = torch.Generator().manual_seed(0)
    X = torch.rand(1_000_000, 15, generator=g) * 2 - 1
    T = torch.rand(1_000_000, generator=g) * 2 - 1
    ss.solve(X[:1000], T[:1000], 0.01, "min_cardinality")
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        ss.solve(X, T, 0.01, "min_cardinality")
        ts.append(time.perf_counter() - t)
    return 1e6 / statistics.median(ts)


def training_steps(repeats: int, steps: int = 300) -> float:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(60 * steps, 1, 28, 28, generator=g), torch.randint(0, 10, (60 * steps,), generator=g)
    ts = []
    for r in range(repeats):
        model = models.create("lenet_300_100", seed=r)
        opt = torch.optim.Adam(model.parameters(), lr=1.2e-3, fused=True)
        t = time.perf_counter()
        for i in range(steps):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[60 * i:60 * (i + 1)]), y[60 * i:60 * (i + 1)]).backward()
            opt.step()
        ts.append((time.perf_counter() - t) / steps)
    return statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ns = ap.parse_args()
    rows = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        models.create("lenet_300_100", seed=0)  # the numba launch that used to reset the count
        rate = subset_sum_rate(ns.repeats)
        step = training_steps(ns.repeats)
        rows.append({"requested": threads, "torch_threads_after": torch.get_num_threads(),
                     "subset_sum_per_s": rate, "train_step_ms": 1000 * step})
        print(f"--threads {threads}: torch reports {rows[-1]['torch_threads_after']}; subset sum {rate:,.0f}/s; "
              f"LeNet-300-100 step {1000 * step:.2f} ms")
    write_json(Path(__file__).parent / "results" / "threads.json",
               {"benchmark": "threads", "repeats": ns.repeats, "rows": rows, "torch": torch.__version__})


if __name__ == "__main__":
    main()
