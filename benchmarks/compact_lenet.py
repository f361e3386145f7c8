"""Compact ticket network against the masked source, on the demo's LeNet-300-100 L+1 ticket.

Loads ``runs/demo/ticket.safetensors`` (run ``./scripts/demo`` first) and the demo's cached
target, then for each way of evaluating the ticket: the time to build it, its parameter count,
a verification (``--samples`` box points, ``--attack-steps``) and the first ``--test`` test images
(accuracy, agreement, largest output difference), each in its own process (peak memory per way).

    python benchmarks/compact_lenet.py [--ticket runs/demo/ticket.safetensors] [--threads 2]
Writes benchmarks/results/compact_lenet.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from lotterylab.io import write_json  # noqa: E402

CHILD = r"""
import json, resource, sys, time
import torch
way, path, threads, samples, steps, n_test = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), \
    int(sys.argv[5]), int(sys.argv[6])
torch.set_num_threads(threads)
import lotterylab as ll
from lotterylab.cli.targets import TargetConfig, load_target
from lotterylab.verification import compare
target, splits = load_target(TargetConfig(target="lenet_300_100"), need_data=True, progress=False)
ticket = ll.load_ticket(path)
t0 = time.perf_counter()
net = ticket.compact() if way == "compact" else ticket.network()
build = time.perf_counter() - t0
params = net.num_parameters() if way == "compact" else sum(p.numel() for p in net.parameters())
t1 = time.perf_counter()
v = ll.verify(target, net, domain=splits.test.x, samples=samples, attack_steps=steps)
t2 = time.perf_counter()
c = compare(target, net, splits.test.take(n_test, seed=0) if n_test < len(splits.test) else splits.test)
t3 = time.perf_counter()
print(json.dumps({"way": way, "build_s": build, "parameters": params, "verify_s": t2 - t1,
                  "sup_error": v["sup_error"], "test_s": t3 - t2, "test": c,
                  "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ticket", default=str(ROOT / "runs" / "demo" / "ticket.safetensors"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--attack-steps", type=int, default=2)
    ap.add_argument("--test", type=int, default=2000)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "compact_lenet.json"))
    args = ap.parse_args()
    if not Path(args.ticket).exists():
        ap.error(f"{args.ticket} not found: run ./scripts/demo first (or pass --ticket)")
    rows = []
    for way in ("masked_source", "compact"):
        out = subprocess.run([sys.executable, "-c", CHILD, way, args.ticket, str(args.threads), str(args.samples),
                              str(args.attack_steps), str(args.test)], capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise SystemExit(f"{way} failed:\n{out.stderr[-2000:]}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"{way}: build {r['build_s']:.1f} s, {r['parameters']:,} parameters, verify {r['verify_s']:.1f} s "
              f"(sup error {r['sup_error']:.4g}), {args.test} test images {r['test_s']:.1f} s "
              f"(agreement {r['test']['agreement']:.4f}), peak {r['peak_rss_gib']:.1f} GiB", flush=True)
    write_json(args.out, {"benchmark": "compact_lenet", "threads": args.threads, "samples": args.samples,
                          "attack_steps": args.attack_steps, "test_images": args.test, "rows": rows})
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
