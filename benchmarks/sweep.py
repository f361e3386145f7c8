"""Executors side by side in one run: serial vs a local process pool vs a local Ray cluster.

* ``pai``: a 16-cell pruning-at-init grid (SNIP, GraSP, SynFlow, random x densities 20/10/5/2 %)
  of LeNet-300-100 on MNIST, each cell a short training run (``--budget``), one thread per cell;
  wall time per executor (the processes and Ray pools started inside the timing: that is what a
  user waits for), speed-up over serial, and whether the three result tables are identical;
* ``construct``: the LeNet-300-100 target (trained once, cached) at depth 2L in paper mode
  (eps_param 0.01): in this process on ``--threads`` threads vs the subset sums split across the
  pool / Ray workers (one thread each); medians of ``--repeats``, the solver's own time, and the
  mask digests (which must be identical);
* ``construct-l1``: the same target at depth L+1 (the demo's construction without bias correction:
  ~7M instances, ten times the solver work of 2L);
* ``overhead``: the cost per task of each executor, from 2,000 no-op calls (after warm-up).

    python benchmarks/sweep.py [--workers 2] [--threads 2] [--repeats 3] [--budget 100it]
                               [--cases pai construct construct-l1 overhead]
Writes benchmarks/results/sweep.json.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from lotterylab import executors  # noqa: E402
from lotterylab.io import write_json  # noqa: E402

EXECUTORS = ("serial", "processes", "ray")


def pai(workers: int, budget: str) -> dict:
    from lotterylab import sweep

    grid = {"method": ["snip", "grasp", "synflow", "random"], "density": ["0.2", "0.1", "0.05", "0.02"]}
    args = ["--budget", budget, "--eval-every", budget, "--val-size", "5000", "--batches", "1"]
    res, tables = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in EXECUTORS:
            t0 = time.perf_counter()
            out = sweep.sweep("pai", grid, args, out=Path(tmp) / name, executor=name,
                              workers=None if name == "serial" else workers, threads=1, progress=False,
                              log=lambda *_: None)
            wall = time.perf_counter() - t0
            if out["failed"]:
                raise SystemExit(f"pai sweep on {name}: failed cells {out['failed']}")
            tables[name] = [{k: v for k, v in r.items() if k != "status"} for r in out["rows"]]
            res[name] = {"wall_s": wall, "cells": len(out["rows"]),
                         "cell_s_median": statistics.median(_cell_seconds(Path(tmp) / name))}
            print(f"pai grid on {name}: {wall:.1f} s for {len(out['rows'])} cells", flush=True)
    for name in EXECUTORS:
        res[name]["speedup_over_serial"] = res["serial"]["wall_s"] / res[name]["wall_s"]
    res["tables_identical"] = all(tables[n] == tables["serial"] for n in EXECUTORS)
    res["grid"], res["args"] = grid, args
    return res


def _cell_seconds(folder: Path) -> list[float]:
    from lotterylab.io import read_json

    return [read_json(p)["wall_time_s"] for p in folder.glob("cells/*/result.json")]


def construct(workers: int, threads: int, repeats: int, mode: str = "2L") -> dict:
    import lotterylab as ll
    from lotterylab.cli.targets import TargetConfig, load_target

    target, splits = load_target(TargetConfig(target="lenet_300_100"), need_data=True, progress=False)
    res = {}
    for name in EXECUTORS:
        torch.set_num_threads(threads)  # the driver keeps its threads (gathering, growth); workers get one each
        t0 = time.perf_counter()
        ex = None if name == "serial" else executors.create(name, workers, threads=1)
        start = time.perf_counter() - t0
        runs = []
        try:
            for r in range(repeats):
                t0 = time.perf_counter()
                ticket = ll.construct(target, mode=mode, eps_param=0.01, seed=0, domain=splits.test.x, executor=ex)
                wall = time.perf_counter() - t0
                h = hashlib.sha256()
                for k in sorted(ticket.masks):
                    h.update(k.encode() + ticket.masks[k].numpy().tobytes())
                runs.append({"wall_s": wall, "subset_sum_s": ticket.report["timings_s"]["subset_sum"],
                             "mask": h.hexdigest()})
                print(f"construct {mode} on {name} repeat {r + 1}: {wall:.1f} s (subset sum {runs[-1]['subset_sum_s']:.1f} s)"
                      f", mask {runs[-1]['mask'][:12]}", flush=True)
        finally:
            if ex is not None:
                ex.close()
        # (the first construction on fresh workers also loads the compiled kernels there: reported apart)
        res[name] = {"executor_start_s": start, "first_run_s": runs[0]["wall_s"],
                     "wall_s": statistics.median(x["wall_s"] for x in runs),
                     "subset_sum_s": statistics.median(x["subset_sum_s"] for x in runs), "runs": runs,
                     "threads": f"driver {threads}" + ("" if name == "serial" else f", {workers} workers x 1")}
        res["instances"] = ticket.report["subset_sum"]["instances"]
    for name in EXECUTORS:
        res[name]["speedup_over_serial"] = res["serial"]["wall_s"] / res[name]["wall_s"]
    res["masks_identical"] = len({x["mask"] for n in EXECUTORS for x in res[n]["runs"]}) == 1
    return res


def overhead(workers: int, calls: int = 2000) -> dict:
    res = {}
    for name in EXECUTORS:
        with executors.create(name, None if name == "serial" else workers, threads=1) as ex:
            ex.map(int, [()] * (4 * ex.workers))  # warm: the workers are started (int() is the no-op call)
            t0 = time.perf_counter()
            ex.map(int, [()] * calls)
            per = (time.perf_counter() - t0) / calls
        res[name] = {"per_task_ms": 1e3 * per, "calls": calls}
        print(f"{name}: {1e3 * per:.3f} ms per no-op task ({calls} calls)", flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="threads of the in-process construction")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--budget", default="100it", help="training budget of each pai cell")
    ap.add_argument("--cases", nargs="+", default=["pai", "construct", "construct-l1", "overhead"])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sweep.json"))
    a = ap.parse_args()
    import ray

    res = {"machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                       "torch": torch.__version__, "ray": ray.__version__, "python": platform.python_version()},
           "workers": a.workers}
    if "overhead" in a.cases:
        res["overhead"] = overhead(a.workers)
    if "pai" in a.cases:
        res["pai"] = pai(a.workers, a.budget)
    if "construct" in a.cases:
        res["construct"] = construct(a.workers, a.threads, a.repeats, "2L")
    if "construct-l1" in a.cases:
        res["construct_L+1"] = construct(a.workers, a.threads, a.repeats, "L+1")
    write_json(Path(a.out), res)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
