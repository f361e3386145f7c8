"""Sparse-kernel convolution against torch's dense one: where each wins (the constants of
``lotterylab/sparse_conv.py``'s cost model come from here).

Layers of the shapes an L+1 ResNet-20 ticket has (hundreds of copy channels at 28x28, 14x14 and
7x7, 3x3 kernels, stride 1) at kept densities from 1 % to 15 %, 32 float64 (and float32) maps, and
the bias correction's typical call during growth: one row reading 40 of 553 channels. Each
configuration: median of ``--repeats`` runs, in one process, 2 threads; the largest difference
between the two results is recorded (rounding only). Also what the cost model predicts.

    python benchmarks/sparse_conv.py [--threads 2] [--repeats 3] [--out FILE]
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
from lotterylab.io import write_json  # noqa: E402
from lotterylab.sparse_conv import conv2d_entries, csr_entries, sparse_wins  # noqa: E402

# (in, out, side, densities): the ticket's layers' sizes; the widest only at its own density (~5 %)
SHAPES = [(553, 415, 28, None), (923, 966, 14, None), (1818, 1777, 7, None), (1200, 1200, 28, [0.045])]


def timed(f, repeats: int):
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        y = f()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs), y


def case(x, w, repeats: int, rows_gather=None) -> dict:
    entries = csr_entries(w)
    if rows_gather is None:
        dense = lambda: F.conv2d(x, w, None, 1, 1)  # noqa: E731
    else:  # bias correction's dense route: the used channels gathered, then convolved
        dense = lambda: F.conv2d(x[:, rows_gather], w[:, rows_gather], None, 1, 1)  # noqa: E731
    td, yd = timed(dense, repeats)
    ts, ys = timed(lambda: conv2d_entries(x, *entries, (3, 3), (1, 1)), repeats)
    used = int(w.ne(0).any(3).any(2).any(0).sum())
    return {"dense_s": td, "sparse_s": ts, "dense_over_sparse": td / ts, "entries": int(w.count_nonzero()),
            "max_abs_difference": float((yd - ys).abs().max()),
            "model_says_sparse": sparse_wins(int(w.count_nonzero()), w.shape[0], used, 9, dtype=x.dtype)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--densities", nargs="*", type=float, default=[0.01, 0.03, 0.045, 0.07, 0.1, 0.15])
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "sparse_conv.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    w0 = torch.randn(2, 2, 3, 3, dtype=torch.float64)
    for dt in (torch.float64, torch.float32):  # numba compiles (or loads) its kernel once per dtype
        conv2d_entries(torch.randn(1, 2, 5, 5, dtype=dt), *csr_entries(w0.to(dt)), (3, 3), (1, 1))
    rows = []
    for dtype in (torch.float64, torch.float32):
        for cin, cout, side, densities in SHAPES:
            x = torch.randn(32, cin, side, side, generator=g, dtype=dtype)
            for d in densities or (args.densities if dtype == torch.float64 else [0.01, 0.03, 0.045]):
                w = (torch.randn(cout, cin, 3, 3, generator=g) * (torch.rand(cout, cin, 3, 3, generator=g) < d)).to(dtype)
                r = {"dtype": str(dtype).replace("torch.", ""), "in": cin, "out": cout, "side": side, "density": d,
                     **case(x, w, args.repeats)}
                rows.append(r)
                print(f"{r['dtype']} {cin}->{cout} @{side} density {d:.3f}: dense {r['dense_s']:.3f} s, sparse "
                      f"{r['sparse_s']:.3f} s ({r['dense_over_sparse']:.2f}x; model: "
                      f"{'sparse' if r['model_says_sparse'] else 'dense'})", flush=True)
    # growth's call: one row reading 40 of 553 channels (~30 % of their taps)
    x = torch.randn(32, 553, 28, 28, generator=g, dtype=torch.float64)
    cols = torch.randperm(553, generator=g)[:40].sort().values
    w = torch.zeros(1, 553, 3, 3, dtype=torch.float64)
    w[:, cols] = torch.randn(1, 40, 3, 3, generator=g, dtype=torch.float64) * (torch.rand(1, 40, 3, 3, generator=g) < 0.3)
    r = {"dtype": "float64", "in": 553, "out": 1, "side": 28, "case": "one row reading 40 channels",
         **case(x, w, max(args.repeats, 10), rows_gather=cols)}
    rows.append(r)
    print(f"one row, 40 of 553 channels: dense (gathered) {1e3 * r['dense_s']:.1f} ms, sparse "
          f"{1e3 * r['sparse_s']:.1f} ms ({r['dense_over_sparse']:.1f}x)")
    write_json(args.out, {"threads": args.threads, "repeats": args.repeats, "maps": 32, "rows": rows})


if __name__ == "__main__":
    main()
