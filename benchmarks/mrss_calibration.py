"""Multidimensional random subset sum on NSN vectors: failure rate vs n, and the n each dimension needs.

Candidates are normally-scaled-normal vectors z*Z (z ~ N(0, 1), Z ~ N(0, I_D)), targets uniform on
[-1, 1]^D (``lotterylab.subsetsum.sample_instances("nsn")``), l-infinity error, the solver the
constructions use (``subsetsum.solve`` with ``min_cardinality``: exact enumeration while
``2**n * D <= 2**22``, the beam search with the construction's width beyond). For every (D, eps) it
records the failure rate (no subset within eps) with a 95 % Wilson interval for each n, the smallest n
whose upper bound is <= delta (0.01), and a least-squares fit ``n_needed ~ c * D**alpha`` per eps, set
beside the base MRSS rate ``O(D^3 log(1/eps) (log(1/eps) + log D))`` (Becchetti et al. 2022).
Structured constructions read their candidate counts from the JSON this writes
(``lotterylab/construct/mrss_n.json``, see ``lotterylab.construct.sizes.kernel_rho``).

    python benchmarks/mrss_calibration.py [--trials 500] [--threads 2] [--width 256]
Writes benchmarks/results/mrss_calibration.json, docs/img/mrss_calibration.png and
lotterylab/construct/mrss_n.json.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from lotterylab import subsetsum as ss  # noqa: E402
from lotterylab.io import write_json  # noqa: E402

DIMS = [1, 4, 9, 25]
EPSS = [0.1, 0.05, 0.01]
NS = [4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512]


def wilson(fails: int, trials: int) -> tuple[float, float]:
    z = 1.959964
    p = fails / trials
    den = 1 + z * z / trials
    c = (p + z * z / (2 * trials)) / den
    h = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / den
    return max(0.0, c - h), min(1.0, c + h)


def fit_power(ds, ns):
    """Least squares of log n = log c + alpha log D."""
    xs, ys = [math.log(d) for d in ds], [math.log(n) for n in ns]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    alpha = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return math.exp(my - alpha * mx), alpha


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=500)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--width", type=int, default=256, help="beam width (the constructions' default)")
    ap.add_argument("--delta", type=float, default=0.01)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "mrss_calibration.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows, needed = [], []
    t0 = time.perf_counter()
    for d in DIMS:
        for eps in EPSS:
            found = None
            for n in NS:
                v, t = ss.sample_instances("nsn", args.trials, n, seed=11, d=d)
                t1 = time.perf_counter()
                r = ss.solve(v, t, eps, "min_cardinality", beam_width=args.width)
                sec = time.perf_counter() - t1
                fails = int((~r.ok).sum())
                lo, hi = wilson(fails, args.trials)
                rows.append({"d": d, "eps": eps, "n": n, "trials": args.trials, "failures": fails,
                             "failure_rate": fails / args.trials, "ci95": [lo, hi], "exact": r.exact,
                             "mean_size": float(r.size.double().mean()), "seconds_per_instance": sec / args.trials})
                print(f"D={d:2d} eps={eps:<5} n={n:3d}  failure {fails / args.trials:7.2%}  [{lo:.3f}, {hi:.3f}]  "
                      f"size {rows[-1]['mean_size']:5.1f}  {'exact' if r.exact else 'beam'}  "
                      f"{sec / args.trials * 1e3:.2f} ms/instance", flush=True)
                if hi <= args.delta:
                    found = n
                    break
            needed.append({"d": d, "eps": eps, "n_needed": found})
    fits = []
    for eps in EPSS:
        pts = [(r["d"], r["n_needed"]) for r in needed if r["eps"] == eps and r["n_needed"] is not None]
        if len(pts) >= 2:
            c, alpha = fit_power([p[0] for p in pts], [p[1] for p in pts])
            fits.append({"eps": eps, "c": c, "alpha": alpha, "points": len(pts)})
    result = {"trials": args.trials, "delta": args.delta, "beam_width": args.width, "threads": args.threads,
              "distribution": "nsn", "targets": "uniform [-1, 1]^D", "rows": rows, "n_needed": needed, "fits": fits,
              "paper_rate": "O(D^3 log(1/eps) (log(1/eps) + log D)) (Becchetti et al. 2022): exponent 3 in D",
              "wall_s": time.perf_counter() - t0}
    write_json(args.out, result)
    table = {f"{r['d']}:{r['eps']}": r["n_needed"] for r in needed}
    write_json(ROOT / "lotterylab" / "construct" / "mrss_n.json",
               {"about": "n (NSN candidates) for failure <= delta per (D, eps), written by benchmarks/mrss_calibration.py",
                "delta": args.delta, "beam_width": args.width, "trials": args.trials, "n_needed": table})
    print("\n| D | " + " | ".join(f"eps={e}" for e in EPSS) + " |")
    print("|---|" + "---|" * len(EPSS))
    for d in DIMS:
        cells = [next(r["n_needed"] for r in needed if r["d"] == d and r["eps"] == e) for e in EPSS]
        print(f"| {d} | " + " | ".join("> 512" if c is None else str(c) for c in cells) + " |")
    for f in fits:
        print(f"eps={f['eps']}: n_needed ~ {f['c']:.2f} * D^{f['alpha']:.2f}")
    _plot(rows, needed, fits, ROOT / "docs" / "img" / "mrss_calibration.png")


def _plot(rows, needed, fits, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for d in DIMS:
        for eps, ls in zip(EPSS, ("-", "--", ":")):
            pts = [(r["n"], r["failure_rate"]) for r in rows if r["d"] == d and r["eps"] == eps]
            axes[0].plot([p[0] for p in pts], [max(p[1], 1e-3) for p in pts], ls, marker=".", label=f"D={d}, eps={eps}")
    axes[0].set_xscale("log", base=2)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("n (NSN candidates)")
    axes[0].set_ylabel("failure rate (floored at 1e-3)")
    axes[0].axhline(0.01, color="grey", lw=0.8)
    axes[0].legend(fontsize=6, ncol=2)
    axes[0].set_title("MRSS failure rate vs n")
    for eps, m in zip(EPSS, ("o", "s", "^")):
        pts = [(r["d"], r["n_needed"]) for r in needed if r["eps"] == eps and r["n_needed"] is not None]
        if pts:
            axes[1].plot([p[0] for p in pts], [p[1] for p in pts], marker=m, label=f"eps={eps}")
    for f in fits:
        ds = [1, 25]
        axes[1].plot(ds, [f["c"] * x ** f["alpha"] for x in ds], lw=0.7, color="grey")
    axes[1].set_xscale("log")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("D (kernel entries)")
    axes[1].set_ylabel("n for failure <= 1 %")
    axes[1].legend()
    axes[1].set_title("n needed vs D (fits in grey)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
