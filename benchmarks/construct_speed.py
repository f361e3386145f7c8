"""The demo's construction, this tree against a baseline revision, side by side in one run.

LeNet-300-100 (the demo's cached target) at depth L+1 in the papers' mode (eps_param 0.01, biases
corrected on 2,000 training images), constructed by each version in its own process, alternating
(baseline, this tree, baseline, ...) so that both see the same machine state. Records every run's
wall time, subset-sum time and mask digest; prints medians and the ratio; the masks of both
versions must be identical.

    python benchmarks/construct_speed.py [--baseline a80930d] [--repeats 3] [--threads 2]
Writes benchmarks/results/construct_speed.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from lotterylab.io import write_json  # noqa: E402

CHILD = r"""
import hashlib, json, sys, time
sys.path.insert(0, sys.argv[1])
import torch
torch.set_num_threads(int(sys.argv[2]))
import lotterylab as ll
from lotterylab.cli.targets import TargetConfig, load_target
target, splits = load_target(TargetConfig(target="lenet_300_100"), need_data=True, progress=False)
calib = splits.train.take(2000, seed=0).x
t0 = time.perf_counter()
ticket = ll.construct(target, mode="L+1", eps_param=0.01, seed=0, domain=splits.test.x, calibration=calib)
wall = time.perf_counter() - t0
h = hashlib.sha256()
for name in sorted(ticket.masks):
    h.update(name.encode() + ticket.masks[name].numpy().tobytes())
print(json.dumps({"wall_s": wall, "subset_sum_s": ticket.report["timings_s"]["subset_sum"],
                  "instances": ticket.report["subset_sum"]["instances"], "mask": h.hexdigest(),
                  "certificate": ticket.report["certificate"], "code": ll.__file__}))
"""


def run_once(tree: Path, threads: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(tree), str(threads)], capture_output=True, text=True,
                         cwd=str(ROOT), check=False)
    if out.returncode != 0:
        raise SystemExit(f"construction with {tree} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", default="a80930d", help="git revision to compare with (before the construct/ move)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "construct_speed.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "baseline"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(base), args.baseline],
                       check=True)
        try:
            runs: dict[str, list] = {"baseline": [], "this": []}
            for r in range(args.repeats):
                for name, tree in (("baseline", base), ("this", ROOT)):
                    row = run_once(tree, args.threads)
                    runs[name].append(row)
                    print(f"repeat {r + 1} {name}: {row['wall_s']:.1f} s (subset sum {row['subset_sum_s']:.1f} s), "
                          f"mask {row['mask'][:12]}", flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False)
    med = {k: statistics.median(r["wall_s"] for r in v) for k, v in runs.items()}
    same = len({r["mask"] for v in runs.values() for r in v}) == 1
    res = {"benchmark": "construct_speed", "baseline": args.baseline, "threads": args.threads,
           "repeats": args.repeats, "median_wall_s": med, "ratio_this_over_baseline": med["this"] / med["baseline"],
           "instances_per_s_pipeline": {k: runs[k][0]["instances"] / med[k] for k in runs},
           "masks_identical": same, "runs": runs}
    write_json(args.out, res)
    print(f"median of {args.repeats}: baseline {med['baseline']:.1f} s, this tree {med['this']:.1f} s "
          f"(ratio {res['ratio_this_over_baseline']:.3f}); masks identical: {same}; saved {args.out}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
