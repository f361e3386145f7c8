"""Full run of the file mutation harness (lotterylab.fuzz): counts per file kind, mutation and outcome.

Every mutated ticket, mask, checkpoint and weights file must load identically or raise
FileFormatError (resigned edits may also load as the edited file); tracebacks, hangs and silent
changes are defects. Prints a markdown table and writes benchmarks/results/fuzz_files.json.

    python benchmarks/fuzz_files.py [--n 2000] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lotterylab import fuzz  # noqa: E402
from lotterylab.io import write_json  # noqa: E402

OUTCOMES = ("clear_error", "identical", "edited", "changed", "traceback", "hang")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ns = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        res = fuzz.run(ns.n, ns.seed, d, log=lambda s: print(s, file=sys.stderr))
    res["wall_s"] = time.perf_counter() - t0
    print(f"| file / mutation | {' | '.join(OUTCOMES)} |")
    print(f"|---|{'---|' * len(OUTCOMES)}")
    totals = dict.fromkeys(OUTCOMES, 0)
    for key in sorted(res["counts"]):
        per = res["counts"][key]
        print(f"| {key} | " + " | ".join(str(per.get(o, 0)) for o in OUTCOMES) + " |")
        for o in OUTCOMES:
            totals[o] += per.get(o, 0)
    print("| **all** | " + " | ".join(f"**{totals[o]}**" for o in OUTCOMES) + " |")
    print(f"\n{ns.n} mutations in {res['wall_s']:.0f} s; defects: {len(res['failures'])}")
    res["totals"] = totals
    write_json(Path(__file__).parent / "results" / "fuzz_files.json", res)


if __name__ == "__main__":
    main()
