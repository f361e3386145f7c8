"""Construction pipeline and ticket evaluation, this tree against a baseline revision in one run.

Constructions (each in its own process, alternating baseline / this tree so both see the same
machine state; medians of ``--repeats``): wall time, the solver's own time (``subset_sum``), their
ratio, and the mask digest, which must be the same for both versions (bit-identical tickets):

* ``lenet``: the demo — LeNet-300-100 (cached MNIST target) at depth L+1, paper mode
  (eps_param 0.01), biases corrected on 2,000 training images, copy layers at 0.3 of the largest
  weight (since session 17; the demo's setting since session 15, so baselines before then fail);
* ``mlp500``: the 784-500-10 ReLU network of Pensia et al. (397k weights; trained here with Adam,
  cached under runs/) at depth 2L, paper mode;
* ``resnet20``: ResNet-20 (width 16, cached MNIST target of benchmarks/construct_cnn.py) at depth
  2L, paper mode, bias correction and compensation on 500 training images.

Evaluations on the 10,000 MNIST test images (this tree; medians of ``--repeats``, the masked
source once): the L+1 LeNet ticket and a Conv-2 2L ticket as compact networks (float64 and
float32) beside the masked source network (float32, as evaluated before compact networks), with
parameter counts, and ``verification.compare`` (target and ticket in float64).

    python benchmarks/pipeline.py [--baseline f60d521] [--repeats 3] [--threads 2] [--cases lenet mlp500 resnet20 eval]
Writes benchmarks/results/pipeline.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from lotterylab.io import write_json  # noqa: E402

CHILD = r"""
import hashlib, json, sys, time
tree, case, threads, here = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
sys.path.insert(0, tree); sys.path.insert(0, tree + "/benchmarks"); sys.path.append(here)  # (mlp500: this file)
import torch
torch.set_num_threads(threads)
import lotterylab as ll
from lotterylab import data
splits = data.load("mnist")
if case == "lenet":
    from lotterylab.cli.targets import TargetConfig, load_target
    target, splits = load_target(TargetConfig(target="lenet_300_100"), need_data=True, progress=False)
    kw = dict(mode="L+1", eps_param=0.01, calibration=splits.train.take(2000, seed=0).x, copy_scale=0.3)
elif case == "mlp500":
    from pipeline import mlp500
    target = mlp500(splits, threads)
    kw = dict(mode="2L", eps_param=0.01)
else:
    from construct_cnn import SHAPE, trained
    target = trained("resnet20", splits, 500, threads)
    kw = dict(mode="2L", eps_param=0.01, input_shape=SHAPE, calibration=splits.train.take(500, seed=0).x,
              compensate=True)
t0 = time.perf_counter()
ticket = ll.construct(target, seed=0, domain=splits.test.x, **kw)
wall = time.perf_counter() - t0
h = hashlib.sha256()
for name in sorted(ticket.masks):
    h.update(name.encode() + ticket.masks[name].numpy().tobytes())
print(json.dumps({"wall_s": wall, "subset_sum_s": ticket.report["timings_s"]["subset_sum"],
                  "instances": ticket.report["subset_sum"]["instances"], "mask": h.hexdigest(),
                  "certificate": ticket.report["certificate"], "code": ll.__file__}))
"""


def mlp500(splits, threads: int):
    """Pensia et al.'s 784-500-10 ReLU target (here with biases), trained once and cached."""
    from lotterylab import models
    from lotterylab.training import TrainConfig, train

    model = models.create("mlp", "relu", input_shape=(1, 28, 28), widths=(500,), seed=0)
    cfg = TrainConfig(budget="6000it", optimizer="adam", lr=1e-3, eval_every="6000it")
    train(model, splits, cfg, out=ROOT / "runs" / "bench-mlp500-mnist", threads=threads, progress=False)
    return model.eval()


def construct_once(tree: Path, case: str, threads: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(tree), case, str(threads), str(ROOT / "benchmarks")],
                         capture_output=True,
                         text=True, cwd=str(ROOT), check=False)
    if out.returncode != 0:
        raise SystemExit(f"{case} with {tree} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def constructions(cases: list[str], baseline: str, repeats: int, threads: int) -> dict:
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "baseline"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(base), baseline], check=True)
        try:
            for case in cases:
                runs: dict[str, list] = {"baseline": [], "this": []}
                for r in range(repeats):
                    for name, tree in (("baseline", base), ("this", ROOT)):
                        row = construct_once(tree, case, threads)
                        runs[name].append(row)
                        print(f"{case} repeat {r + 1} {name}: {row['wall_s']:.1f} s (subset sum "
                              f"{row['subset_sum_s']:.1f} s), mask {row['mask'][:12]}", flush=True)
                med = {k: {"wall_s": statistics.median(x["wall_s"] for x in v),
                           "subset_sum_s": statistics.median(x["subset_sum_s"] for x in v)} for k, v in runs.items()}
                for k in med:
                    med[k]["wall_over_subset_sum"] = med[k]["wall_s"] / med[k]["subset_sum_s"]
                    med[k]["instances_per_s_pipeline"] = runs[k][0]["instances"] / med[k]["wall_s"]
                same = len({x["mask"] for v in runs.values() for x in v}) == 1
                res[case] = {"median": med, "speedup": med["baseline"]["wall_s"] / med["this"]["wall_s"],
                             "masks_identical": same, "instances": runs["this"][0]["instances"], "runs": runs}
                print(f"{case}: median baseline {med['baseline']['wall_s']:.1f} s, this tree "
                      f"{med['this']['wall_s']:.1f} s ({res[case]['speedup']:.1f}x; subset sum "
                      f"{med['this']['subset_sum_s']:.1f} s, wall/subset sum {med['this']['wall_over_subset_sum']:.2f}); "
                      f"masks identical: {same}", flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False)
    return res


@torch.no_grad()
def timed_eval(net, x: torch.Tensor, batch: int) -> float:
    t0 = time.perf_counter()
    for i in range(0, len(x), batch):
        net(x[i:i + batch])
    return time.perf_counter() - t0


def evaluations(repeats: int, threads: int) -> dict:
    from construct_cnn import SHAPE, trained

    import lotterylab as ll
    from lotterylab import data
    from lotterylab.cli.targets import TargetConfig, load_target
    from lotterylab.verification import compare

    torch.set_num_threads(threads)
    out = {}
    lenet, splits = load_target(TargetConfig(target="lenet_300_100"), need_data=True, progress=False)
    conv2 = trained("conv2", data.load("mnist"), 500, threads)
    tickets = {
        "lenet L+1": (lenet, ll.construct(lenet, mode="L+1", eps_param=0.01, seed=0, domain=splits.test.x,
                                          calibration=splits.train.take(2000, seed=0).x), 2000),
        "conv2 2L": (conv2, ll.construct(conv2, mode="2L", eps_param=0.01, seed=0, domain=splits.test.x,
                                         input_shape=SHAPE), 500),
    }
    x = splits.test.x
    for name, (target, ticket, batch) in tickets.items():
        row = {"source_parameters": ticket.report["parameters"]["source"],
               "ticket_parameters": ticket.masks.num_kept(), "target_parameters": ticket.report["parameters"]["target"]}
        t0 = time.perf_counter()
        c64 = ticket.compact()
        row["compact_build_s"] = time.perf_counter() - t0
        c32 = ticket.compact(dtype=torch.float32)
        row["compact_parameters"] = c64.num_parameters()
        row["compact64_eval_s"] = statistics.median(timed_eval(c64, x.double(), batch) for _ in range(repeats))
        row["compact32_eval_s"] = statistics.median(timed_eval(c32, x, batch) for _ in range(repeats))
        row["target32_eval_s"] = statistics.median(timed_eval(target, x, batch) for _ in range(repeats))
        t0 = time.perf_counter()
        row["compare"] = compare(target, ticket, splits.test)
        row["compare_s"] = time.perf_counter() - t0
        net = ticket.network().eval()  # the masked source, float32: what evaluation used before compact networks
        row["masked_source_eval_s"] = timed_eval(net, x, min(batch, 500))
        del net
        out[name] = row
        print(f"{name}: compact {row['compact_parameters']:,} params (ticket {row['ticket_parameters']:,}, source "
              f"{row['source_parameters']:,}); 10k images: compact float64 {row['compact64_eval_s']:.1f} s, float32 "
              f"{row['compact32_eval_s']:.1f} s, masked source float32 {row['masked_source_eval_s']:.1f} s, target "
              f"float32 {row['target32_eval_s']:.1f} s; compare() {row['compare_s']:.1f} s", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", default="f60d521", help="git revision to compare with (before this work)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cases", nargs="*", default=["lenet", "mlp500", "resnet20", "eval"])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "pipeline.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if "mlp500" in args.cases:  # train (or find cached) once, outside the timed children
        from lotterylab import data

        mlp500(data.load("mnist"), args.threads)
    res = {"benchmark": "pipeline", "baseline": args.baseline, "threads": args.threads, "repeats": args.repeats,
           "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
           "torch": torch.__version__}
    res["constructions"] = constructions([c for c in args.cases if c != "eval"], args.baseline, args.repeats,
                                         args.threads)
    write_json(args.out, res)
    if "eval" in args.cases:
        res["evaluations"] = evaluations(args.repeats, args.threads)
    write_json(args.out, res)
    print(f"saved {args.out}")
    return 0 if all(v["masks_identical"] for v in res["constructions"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
