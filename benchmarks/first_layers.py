"""Faithful first layers: guarantee mode on every activation in both modes, against the idealised layer.

The targets are the tests' trained 4-8-6-3 MLPs (``tests/targets.py: trained_mlp``), eps = 0.01,
seed 1, the box [-1, 1]^4. For each (activation, mode) the default faithful scheme runs (sign trick,
moment matching, or the scalar linearisation for tanh / sigmoid in 2L), plus ``first_layer="moments"``
for tanh / sigmoid in L+1 and the idealised ``first_layer="identity"`` beside every smooth case.
Recorded: the scheme, whether the ticket is a pure pruning, the certificate, the sup error found by
``lotterylab.verify`` (100,000 points + 100 attack steps), the float32 forward's error on 512 points
(``report["float32_check"]``, scaled first layers only), kept / source parameters, construction
seconds (one run), or the error a construction stopped with.

    python benchmarks/first_layers.py [--threads 2] [--acts gelu silu ...]
Writes benchmarks/results/first_layers.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
import lotterylab as ll  # noqa: E402
from lotterylab import threads  # noqa: E402
from lotterylab.construct import ConstructionError  # noqa: E402
from lotterylab.io import write_json  # noqa: E402

from targets import trained_mlp  # noqa: E402

ACTS = ("relu", "leaky_relu", "tanh", "sigmoid", "gelu", "silu", "elu", "softplus")


def cases(acts):
    for act in acts:
        for mode in ("L+1", "2L"):
            yield act, mode, None
            if act in ("tanh", "sigmoid"):
                yield act, mode, "moments" if mode == "L+1" else None
            if act not in ("relu", "leaky_relu"):
                yield act, mode, "identity"


def run(act, mode, first_layer):
    target = trained_mlp(act)
    rec = {"activation": act, "mode": mode, "first_layer_asked": first_layer}
    t0 = time.perf_counter()
    try:
        t = ll.construct(target, mode=mode, eps=0.01, seed=1, first_layer=first_layer)
    except ConstructionError as e:
        rec.update(error=str(e), seconds=time.perf_counter() - t0)
        return rec
    rec["seconds"] = time.perf_counter() - t0
    v = ll.verify(target, t, samples=100_000, attack_steps=100)
    p = t.report["parameters"]
    f32 = t.report["float32_check"]
    rec.update(scheme=t.report["first_layer"], pure_pruning=t.report["pure_pruning"],
               certificate=t.report["certificate"], sup_error=v["sup_error"], kept=p["ticket"], source=p["source"],
               float32_check=f32)
    return rec


def f32_cell(c) -> str:
    """The float32 forward's error (report["float32_check"], 512 points), flagged where it needs float64."""
    if c is None:
        return "(not scaled)"
    return f"{c['sup_error']:.1e}" + (" **needs float64**" if c["needs_float64"] else "")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--acts", nargs="*", default=list(ACTS))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "first_layers.json"))
    a = ap.parse_args()
    threads.set_threads(a.threads)
    rows = []
    print("| activation | mode | first layer | pure pruning | certificate | sup error | float32 error | kept / source | s |")
    print("|---|---|---|---|---|---|---|---|---|")
    seen = set()
    for act, mode, fl in cases(a.acts):
        if (act, mode, fl) in seen:
            continue
        seen.add((act, mode, fl))
        r = run(act, mode, fl)
        rows.append(r)
        if "error" in r:
            print(f"| {act} | {mode} | {fl or 'default'} | | stopped: {r['error'][:60]}... | | | | {r['seconds']:.1f} |")
        else:
            print(f"| {act} | {mode} | {r['scheme']} | {'yes' if r['pure_pruning'] else 'no'} | "
                  f"{r['certificate']:.2e} | {r['sup_error']:.1e} | {f32_cell(r['float32_check'])} | "
                  f"{r['kept']:,} / {r['source']:,} | "
                  f"{r['seconds']:.1f} |", flush=True)
    write_json(a.out, {"eps": 0.01, "seed": 1, "threads": a.threads, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
