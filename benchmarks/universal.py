"""Universal tickets against UniversalLT's published sizes, a 1,000-task batch, and a real task.

Part ``sizes`` (theory §6.5; UniversalLT's ``subsetsum.py``, rerun figures from the peers' notes):

* polynomials ``((1+x)/2)^k``, k = 1..4 on [0, 1]: theirs 1,126 kept of 431,800 source parameters
  (1,074 in a rerun) with sup errors 6.0e-4, 5.8e-4, 9.1e-4, 1.1e-3; about 10 minutes on one core;
* ``sin(2 pi x)`` on [0, 1]: theirs 436 kept of 68,292, sup error 1.1e-2.

lotterylab: ``construct_universal("poly", 1, degree=4, eps=...)`` and ``("fourier", 1, frequencies=1,
eps=...)`` (which also carries cos(2 pi x), through the same shared sin block); kept parameters, source
parameters, sup error per basis function on 100,001 points, build time (median of ``--repeats``
runs, ``--threads`` threads). Beside them, the exp block of the same basis built by the general
construction (``lotterylab.construct``, 2L, guarantee mode at the same stage budget): why the
universal pruning absorbs output weights instead.

Part ``tasks``: one ticket per family, 1,000 random tasks of its unit ball, one least-squares solve;
fraction within eps, median and max sup error on a fresh grid, readout time per task.

Part ``classification``: MNIST and Fashion-MNIST projected by PCA onto 4, 6 and 8 components, a
degree-3 polynomial ticket; test accuracy of a linear readout on the ticket, the raw projection, the
unpruned source and random features of the ticket's parameter count (``lotterylab.universal.demo``).

    python benchmarks/universal.py [--part sizes tasks classification] [--threads 1] [--repeats 3]
Writes benchmarks/results/universal.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from lotterylab import threads  # noqa: E402
from lotterylab.io import read_json, write_json  # noqa: E402
from lotterylab.universal import construct_universal  # noqa: E402
from lotterylab.universal.basis import grid  # noqa: E402

UNIVERSALLT = {
    "poly": {"kept": 1126, "kept_rerun": 1074, "source": 431_800, "sup_errors": [6.0e-4, 5.8e-4, 9.1e-4, 1.1e-3],
             "time_s": 600.0, "what": "((1+x)/2)^k, k=1..4, x in [0,1]"},
    "sin": {"kept": 436, "source": 68_292, "sup_errors": [1.1e-2], "what": "sin(2 pi x), x in [0,1]"},
}


def _build(repeats, *args, **kw):
    times, ut = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        ut = construct_universal(*args, **kw)
        times.append(time.perf_counter() - t0)
    x = grid(ut.basis, points=100_001)
    err = (ut.features(x) - ut.basis.exact(x)).abs().amax(0).tolist()
    c = ut.counts()
    return ut, {"kept": c["ticket_parameters"], "source": c["source_parameters"], "sup_errors": err,
                "certificate": ut.report["certificate"], "features": ut.basis.features,
                "build_s_median": statistics.median(times), "build_s_all": times,
                "neurons": [s.get("neurons") for s in ut.report["stages"]]}


def _engine_exp_block(ut) -> dict:
    """The poly ticket's exp block (a 1-hidden-layer ReLU net) built by the general construction in
    guarantee mode at the construction budget the universal pruning had for it."""
    from lotterylab.construct import construct

    u = ut.basis.stages[2][1]
    net = u.module()
    budget = ut.report["stages"][2]["budget"]  # what the universal pruning was allowed for this block
    out = {"construction_budget": budget}
    for mode in ("2L", "L+1"):
        t0 = time.perf_counter()
        tk = construct(net.float(), mode=mode, eps=budget, seed=0, domain=u.domain)
        out[mode] = {"kept": tk.counts()["ticket_parameters"], "seconds": time.perf_counter() - t0,
                     "certificate": tk.report["certificate"]}
    out["universal_exp_block_kept"] = int(sum(int(m.sum()) for n, m in ut.ticket.masks.items()
                                              if n.startswith("stages.2.")))
    return out


def part_sizes(repeats: int) -> dict:
    res = {"universalLT": UNIVERSALLT}
    for eps in (1e-3, 5e-4):
        ut, rec = _build(repeats, "poly", 1, degree=4, eps=eps)
        rec["no_larger"] = rec["kept"] <= UNIVERSALLT["poly"]["kept_rerun"]
        rec["errors_no_larger"] = all(a <= b for a, b in zip(rec["sup_errors"], UNIVERSALLT["poly"]["sup_errors"]))
        res[f"poly_eps{eps:g}"] = rec
        if eps == 1e-3:
            res["engine_exp_block"] = _engine_exp_block(ut)
        print(f"poly eps={eps:g}: kept {rec['kept']} of {rec['source']} (UniversalLT {UNIVERSALLT['poly']['kept']} of "
              f"{UNIVERSALLT['poly']['source']}), sup errors {[f'{e:.2e}' for e in rec['sup_errors']]}, "
              f"{rec['build_s_median']:.2f} s")
    for eps in (1e-2, 5e-3):
        _, rec = _build(repeats, "fourier", 1, frequencies=1, eps=eps)
        rec["sin_sup_error"] = rec["sup_errors"][0]
        rec["no_larger"] = rec["kept"] <= UNIVERSALLT["sin"]["kept"]
        res[f"sin_eps{eps:g}"] = rec
        print(f"sin+cos eps={eps:g}: kept {rec['kept']} of {rec['source']} (UniversalLT sin alone "
              f"{UNIVERSALLT['sin']['kept']} of {UNIVERSALLT['sin']['source']}), sup errors "
              f"{[f'{e:.2e}' for e in rec['sup_errors']]}, {rec['build_s_median']:.2f} s")
    print("general construction on the exp block:", res["engine_exp_block"])
    return res


def part_tasks(n: int) -> dict:
    from lotterylab.universal.demo import task_batch

    res = {}
    for fam, dim, kw in (("poly", 2, {"degree": 4, "eps": 0.01}), ("fourier", 2, {"frequencies": 2, "eps": 0.01}),
                         ("poly", 4, {"degree": 3, "eps": 0.01}), ("lipschitz", 1, {"eps": 0.05}),
                         ("lipschitz", 2, {"eps": 0.05})):
        t0 = time.perf_counter()
        ut = construct_universal(fam, dim, seed=0, **kw)
        build = time.perf_counter() - t0
        tb = task_batch(ut, n, seed=0)
        key = f"{fam}_d{dim}_" + "_".join(f"{k}{v:g}" for k, v in kw.items())
        res[key] = {**{k: v for k, v in tb.items() if k != "errors"}, "kept": ut.counts()["ticket_parameters"],
                    "source": ut.counts()["source_parameters"], "features": len(ut.basis.features),
                    "build_s": build}
        print(f"{key}: {100 * tb['within_eps']:.1f}% of {n} within eps, median {tb['median']:.2e}, max "
              f"{tb['max']:.2e}, {tb['fit_us_per_task']:.0f} us/task; kept {res[key]['kept']}")
    return res


def part_classification(dims) -> dict:
    from lotterylab import data
    from lotterylab.universal.demo import classification

    res = {}
    for name in ("mnist", "fashion-mnist"):
        splits = data.load(name)
        for d in dims:
            ut = construct_universal("poly", d, degree=3, eps=0.01, seed=0)
            r = classification(ut, splits, seed=0)
            r["kept"] = ut.counts()["ticket_parameters"]
            r["source"] = ut.counts()["source_parameters"]
            res[f"{name}_pca{d}"] = r
            print(f"{name} PCA-{d}: " + ", ".join(f"{k} {100 * v['test_accuracy']:.2f}% ({v['features']} features)"
                                                 for k, v in r["readouts"].items()))
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", nargs="+", default=["sizes", "tasks", "classification"],
                    choices=["sizes", "tasks", "classification"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--dims", default="4,6,8")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "universal.json"))
    a = ap.parse_args()
    threads.set_threads(a.threads)
    out = Path(a.out)
    result = read_json(out) if out.exists() else {}
    result["machine"] = {"threads": a.threads, "torch": torch.__version__, "repeats": a.repeats}
    if "sizes" in a.part:
        result["sizes"] = part_sizes(a.repeats)
        write_json(out, result)
    if "tasks" in a.part:
        result["tasks"] = part_tasks(a.tasks)
        write_json(out, result)
    if "classification" in a.part:
        result["classification"] = part_classification([int(v) for v in a.dims.split(",")])
        write_json(out, result)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
