"""Subset-sum engine throughput against batched brute force and the research-code baseline.

Same random instances for every method: candidates U[-1, 1], targets U[-1, 1], eps = 0.01.

* lotterylab: ``solve`` per objective, median of ``--repeats`` timed calls, ``--threads`` threads;
* brute force: all 2**n subsets, batched in torch (``backend="brute_force"``), on a sample;
* research code (LT-existence): Python enumeration of combinations by increasing size up to 9,
  stopping at the first subset within eps, on a sample, per-instance time extrapolated.

Also: error median / p99 / max, failure rate and mean subset size; float32 vs float64; and the
peak memory of one 10M-instance call (in a subprocess, input included).

    python benchmarks/subsetsum.py [--threads 2] [--repeats 5] [--quick]
Writes benchmarks/results/subsetsum.json.
"""

from __future__ import annotations

import argparse
import itertools
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lotterylab import subsetsum as ss  # noqa: E402
from lotterylab.io import write_json  # noqa: E402

EPS = 0.01
SIZES = {12: 400_000, 15: 400_000, 20: 40_000, 24: 8_000}  # instances per timed call
BRUTE = {12: 20_000, 15: 2_000, 20: 60, 24: 4}
RESEARCH = {12: 300, 15: 300, 20: 200, 24: 100}
OBJECTIVES = [("min_error", None), ("min_cardinality", None), ("min_l1", None), ("fixed_size", 3)]


def research_first_hit(values, target, eps, k_max=9):
    """LT-existence's solver, re-implemented: for sizes 1..9, index combinations into a numpy
    array, sum with numpy, stop at the first subset within eps."""
    numbers = np.asarray(values)
    for k in range(1, min(k_max, len(numbers)) + 1):
        for combo in itertools.combinations(range(len(numbers)), k):
            diff = np.abs(target - np.sum(numbers[np.array(combo, dtype=int)]))
            if diff <= eps:
                return k, float(diff)
    return None, None


def timed(fn, repeats):
    times = []
    out = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def memory_probe(n_instances: int, n: int) -> dict:
    code = f"""
import time, torch, sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
torch.set_num_threads({torch.get_num_threads()})
from lotterylab import subsetsum as ss
hwm = lambda: int([l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1])
rss = lambda: int([l for l in open("/proc/self/status") if l.startswith("VmRSS")][0].split()[1])
ss.solve(*ss.sample_instances("uniform", 64, {n}), {EPS})  # imports and kernels loaded
base = rss()
v, t = ss.sample_instances("uniform", {n_instances}, {n}, seed=9)
with_input = rss()
sampling_peak = hwm()
open("/proc/self/clear_refs", "w").write("5")  # reset the peak: what follows is the solver's own
t0 = time.perf_counter()
r = ss.solve(v, t, {EPS}, "min_error")
dt = time.perf_counter() - t0
print(hwm(), dt, float((~r.ok).float().mean()), base, with_input, rss(), sampling_peak)
"""
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from this (large) parent process
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    rss_kb, dt, fail, base, with_input, after, sampling_peak = int(out[0]), float(out[1]), float(out[2]), *map(int, out[3:])
    return {"instances": n_instances, "n": n, "peak_rss_during_solve_gib": rss_kb / 2**20,
            "peak_rss_while_generating_input_gib": sampling_peak / 2**20,
            "rss_after_imports_gib": base / 2**20, "rss_with_input_gib": with_input / 2**20,
            "rss_with_input_and_result_gib": after / 2**20,
            "input_gib": n_instances * n * 4 / 2**30, "seconds": dt, "instances_per_s": n_instances / dt,
            "failure_rate": fail}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="smaller samples (smoke run)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "subsetsum.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    scale = 0.05 if args.quick else 1.0
    rows = []
    for n, B in SIZES.items():
        B = max(100, int(B * scale))
        values, targets = ss.sample_instances("uniform", B, n, seed=n)
        ss.solve(values[:64], targets[:64], EPS)  # compile / warm up outside the timing
        # research-code baseline on a sample
        m = max(20, int(RESEARCH[n] * scale))
        vl, tl = values[:m].double().tolist(), targets[:m].double().tolist()
        t0 = time.perf_counter()
        hits = [research_first_hit(v, t, EPS) for v, t in zip(vl, tl)]
        research_s = (time.perf_counter() - t0) / m
        found = [h for h in hits if h[0] is not None]
        research = {"sample": m, "seconds_per_instance": research_s, "instances_per_s": 1 / research_s,
                    "failure_rate": 1 - len(found) / m, "mean_size": statistics.mean(h[0] for h in found) if found else None}
        # batched brute force on a sample
        mb = max(2, int(BRUTE[n] * scale))
        for obj, k in OBJECTIVES:
            ss.solve(values[:64], targets[:64], EPS, obj, k=k)
            sec, res = timed(lambda obj=obj, k=k: ss.solve(values, targets, EPS, obj, k=k), args.repeats)
            bsec, bres = timed(lambda obj=obj, k=k: ss.solve(values[:mb], targets[:mb], EPS, obj, k=k,
                                                               backend="brute_force"), 1)
            agree_sample = res.error[:mb].double() <= bres.error.double() + 1e-6
            summ = res.summary()
            row = {"n": n, "objective": obj, "k": k, "instances": B, "seconds_median": sec,
                   "instances_per_s": B / sec, "brute_force_instances_per_s": mb / bsec,
                   "speedup_vs_brute_force": (B / sec) / (mb / bsec),
                   "brute_force_sample": mb, "objective_equal_or_better_than_brute_force": bool(agree_sample.all()),
                   "speedup_vs_research": (B / sec) * research_s, **{k2: summ[k2] for k2 in
                   ("failure_rate", "mean_size", "error_median", "error_p99", "error_max", "fallbacks")}}
            if obj == "min_cardinality":
                # same instances as the research sample, compared as (size, error): smaller size wins
                # (we may return the empty set, which the research code never tries), equal size needs
                # an error no worse; where the research code found nothing, we must not be worse off
                sub = ss.solve(values[:m], targets[:m], EPS, obj)
                ok_vs = all(h[0] is None or int(sub.size[i]) < h[0] or
                            (int(sub.size[i]) == h[0] and float(sub.error[i]) <= h[1] + 1e-7)
                            for i, h in enumerate(hits))
                row["objective_equal_or_better_than_research"] = ok_vs
            rows.append(row)
            print(f"n={n:2d} {obj:<16} {row['instances_per_s']:>12,.0f}/s  brute {row['brute_force_instances_per_s']:>10,.0f}/s"
                  f"  research {research['instances_per_s']:>8,.0f}/s  x{row['speedup_vs_research']:>8,.0f}"
                  f"  fail {row['failure_rate']:.4f}  size {row['mean_size']:.2f}  err med {row['error_median']:.2e}"
                  f" p99 {row['error_p99']:.2e} max {row['error_max']:.2e}", flush=True)
        rows.append({"n": n, "objective": "research_first_hit", **research})
        print(f"n={n:2d} research first-hit: {research['instances_per_s']:,.0f}/s, fail {research['failure_rate']:.4f}, "
              f"size {research['mean_size']}", flush=True)

    # one thread, n = 15 (the per-core figure)
    torch.set_num_threads(1)
    v, t = ss.sample_instances("uniform", max(1000, int(200_000 * scale)), 15, seed=15)
    one = {}
    for obj in ("min_error", "min_cardinality"):
        sec, _ = timed(lambda obj=obj: ss.solve(v, t, EPS, obj), args.repeats)
        one[obj] = len(t) / sec
    torch.set_num_threads(args.threads)
    # float32 vs float64 on the same numbers
    a = ss.solve(v, t, EPS, "min_error")
    b = ss.solve(v.double(), t.double(), EPS, "min_error")
    fp = {"same_masks": bool(torch.equal(a.mask, b.mask)), "max_sum_difference": float((a.sum.double() - b.sum).abs().max())}
    mem = memory_probe(10_000_000 if not args.quick else 500_000, 15)
    print(f"1 thread n=15: {one}; fp32 vs fp64: {fp}; memory: {mem}")
    write_json(args.out, {"benchmark": "subsetsum", "eps": EPS, "threads": args.threads, "repeats": args.repeats,
                          "machine": platform.machine(), "torch": torch.__version__, "rows": rows,
                          "one_thread_n15": one, "fp32_vs_fp64": fp, "memory_10M": mem,
                          "date": time.strftime("%Y-%m-%d %H:%M:%S")})
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
