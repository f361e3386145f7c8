"""Structured strong tickets: the MRSS heuristic against an exact MILP, and Conv-2 built from whole kernels.

Part ``mrss`` (D = 9, NSN candidates, targets uniform on [-1, 1]^9): on the same instances, the beam
search (``subsetsum.solve``, default width) and HiGHS (``subsetsum_milp.solve_milp``, a time limit
per instance): success rate within eps (``min_cardinality``), the l-infinity error each reaches
(``min_error``: the gap), time per instance, and the heuristic's throughput on 2,000 instances.

Part ``conv2`` (the construction benchmark's Conv-2, trained on MNIST, ``benchmarks/construct_cnn.py``):
a structured ticket (kernel granularity, paper mode, bias correction on 500 training images as the 2L
benchmark) and the unstructured ticket of the *same source* (granularity ``weight``); their
structure, parameters and multiply-accumulates beside the target's and the source's; accuracy and
top-1 agreement on the 10,000 test images; and forward times on a batch of test images, 1 thread,
interleaved, medians: the target, the structured compact network (only kept channels and kernels,
dense), the unstructured ticket as its compact network in CSR and dense (kept channels only), and
the unstructured ticket as the dense masked source.

    python benchmarks/structured.py [--part mrss throughput conv2] [--threads 2] [--reuse] [--masked]
Writes benchmarks/results/structured.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from lotterylab import subsetsum as ss  # noqa: E402
from lotterylab.io import read_json, write_json  # noqa: E402

SHAPE = (1, 28, 28)


def mrss_part(args) -> dict:
    from lotterylab.subsetsum_milp import solve_milp

    rows = []
    for n, eps, k, limit in ((64, 0.15, args.milp_instances, args.milp_limit),
                             (256, 0.05, max(1, args.milp_instances // 2), args.milp_limit)):
        v, t = ss.sample_instances("nsn", k, n, seed=21, d=9)
        torch.set_num_threads(args.threads)
        t0 = time.perf_counter()
        hc = ss.solve(v, t, eps, "min_cardinality")
        h_card_s = (time.perf_counter() - t0) / k
        he = ss.solve(v, t, 0.0, "min_error")
        torch.set_num_threads(1)
        mc = solve_milp(v, t, eps, "min_cardinality", time_limit=limit)
        me = solve_milp(v, t, 0.0, "min_error", time_limit=limit)
        torch.set_num_threads(args.threads)
        vb, tb = ss.sample_instances("nsn", 2000, n, seed=22, d=9)
        t0 = time.perf_counter()
        ss.solve(vb, tb, eps, "min_cardinality")
        rate = 2000 / (time.perf_counter() - t0)
        gap = (he.error.double() - me.error.double())
        milp_s = float(mc.info["seconds"].median())
        row = {"d": 9, "n": n, "eps": eps, "instances": k, "milp_time_limit_s": limit,
               "heuristic": {"success_rate": float(hc.ok.double().mean()), "mean_size": float(hc.size[hc.ok].double().mean())
                             if hc.ok.any() else None, "seconds_per_instance": h_card_s,
                             "instances_per_s_2000": rate, "min_error_median": float(he.error.double().median())},
               "milp": {"success_rate": float(mc.ok.double().mean()),
                        "proven_optimal": int(mc.info["proven_optimal"].sum()),
                        "seconds_per_instance_median": milp_s,
                        "min_error_median": float(me.error.double().median()),
                        "min_error_proven": int(me.info["proven_optimal"].sum())},
               "error_gap_median": float(gap.median()), "error_gap_max": float(gap.max()),
               "speedup_per_instance": milp_s / (1.0 / rate)}
        rows.append(row)
        print(f"D=9 n={n} eps={eps}: beam success {row['heuristic']['success_rate']:.0%} "
              f"({rate:,.0f} instances/s on {args.threads} threads), MILP success {row['milp']['success_rate']:.0%} "
              f"({milp_s:.1f} s/instance, limit {limit} s); min-error median beam "
              f"{row['heuristic']['min_error_median']:.4f} vs MILP {row['milp']['min_error_median']:.4f}; "
              f"{row['speedup_per_instance']:,.0f}x faster per instance", flush=True)
    return {"rows": rows}


def throughput_part(args) -> dict:
    """Beam-search instances per second at D = 9 on ``--threads`` threads, 2,000 instances, median of 3,
    at the default width (the quality measured above) and the constructions' width (256)."""
    torch.set_num_threads(args.threads)
    out = {"threads": args.threads}
    for n, eps in ((64, 0.15), (256, 0.05)):
        v, t = ss.sample_instances("nsn", 2000, n, seed=22, d=9)
        ss.solve(v[:8], t[:8], eps, "min_cardinality")  # compiled once, outside the timing
        for width in (ss.BEAM_WIDTH, 256):
            runs = []
            for _ in range(3):
                t0 = time.perf_counter()
                r = ss.solve(v, t, eps, "min_cardinality", beam_width=width)
                runs.append(time.perf_counter() - t0)
            out[f"n{n}_width{width}"] = {"n": n, "eps": eps, "width": width, "runs_s": runs,
                                         "instances_per_s": 2000 / statistics.median(runs),
                                         "success_rate": float(r.ok.double().mean())}
            print(f"D=9 n={n} eps={eps} width {width}: {2000 / statistics.median(runs):,.0f} instances/s on "
                  f"{args.threads} threads (median of 3), success {float(r.ok.double().mean()):.1%}", flush=True)
    return out


class CSRNet(torch.nn.Module):
    """A compact network's conv and Linear layers as CSR matrices (unfold + sparse matmul)."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.mats = [m.weight.detach().reshape(m.weight.shape[0], -1).to_sparse_csr() for m in net.layers]

    def forward(self, x):
        from lotterylab.models import run_plan

        layers = []
        for m, W in zip(self.net.layers, self.mats):
            if isinstance(m, torch.nn.Conv2d):
                def conv(h, m=m, W=W):
                    B, _, H, Wd = h.shape
                    cols = F.unfold(h, m.kernel_size, padding=m.padding, stride=m.stride)  # [B, C*k*k, P]
                    Ho = (H + 2 * m.padding[0] - m.kernel_size[0]) // m.stride[0] + 1
                    Wo = (Wd + 2 * m.padding[1] - m.kernel_size[1]) // m.stride[1] + 1
                    flat = cols.permute(1, 0, 2).reshape(cols.shape[1], -1)
                    out = torch.sparse.mm(W, flat).reshape(W.shape[0], B, Ho * Wo).permute(1, 0, 2)
                    return (out + m.bias.view(1, -1, 1)).reshape(B, W.shape[0], Ho, Wo)
                layers.append(conv)
            else:
                layers.append(lambda h, m=m, W=W: torch.sparse.mm(W, h.T).T + m.bias)
        x0 = x.reshape(x.shape[0], *self.net.input_shape).to(self.net.layers[0].weight.dtype)
        added = {i: getattr(self.net, f"add_{i}") for i, op in enumerate(self.net.plan) if "add" in op}
        return run_plan(self.net.plan, x0, layers, self.net.acts, added)[-1]


def timed(fn, x, reps: int) -> list[float]:
    out = []
    with torch.no_grad():
        for _ in range(reps):
            t0 = time.perf_counter()
            fn(x)
            out.append(time.perf_counter() - t0)
    return out


def conv2_part(args) -> dict:
    from construct_cnn import outputs, trained

    import lotterylab as ll
    from lotterylab import data
    from lotterylab.structured import cost, structure

    torch.set_num_threads(args.threads)
    splits = data.load("mnist")
    target = trained("conv2", splits, 500, args.threads)
    calib = splits.train.take(500, seed=0).x
    x, y = splits.test.x, splits.test.y
    res = {"target": {"cost": cost(target, SHAPE)}}
    out_t = outputs(target, x, 500)
    res["target"]["accuracy"] = float((out_t.argmax(1) == y).double().mean())
    tickets = {}
    cache = ROOT / "runs" / "bench-structured"
    cache.mkdir(parents=True, exist_ok=True)
    for gran in ("kernel", "weight"):
        path = cache / f"conv2-{gran}-{args.eps_param}.safetensors"
        t0 = time.perf_counter()
        if path.exists() and args.reuse:  # the tickets of an earlier run: its construction times are kept
            tk = ll.load_ticket(path)
            before = (args.previous.get("conv2") or {}).get(gran) or {}
            wall = before.get("construct_s")
            tk.report.setdefault("timings_s", {"subset_sum": before.get("subset_sum_s")})
        else:
            tk = ll.construct(target, mode="structured", granularity=gran, eps_param=args.eps_param, seed=0,
                              domain=x, input_shape=SHAPE, calibration=calib)
            wall = time.perf_counter() - t0
            tk.save(path)
        tickets[gran] = tk
        folded = tk.compact(dtype=torch.float32, fold=True)
        o = outputs(folded, x, 500)
        rep = tk.report
        res[gran] = {"construct_s": wall, "subset_sum_s": rep["timings_s"]["subset_sum"],
                     "unresolved": rep["subset_sum"]["unresolved"], "structure": structure(tk),
                     "parameters": rep["parameters"], "compact_cost": cost(tk.compact(torch.float32, False, sparse=False), SHAPE),
                     "folded_cost": cost(folded, SHAPE), "accuracy": float((o.argmax(1) == y).double().mean()),
                     "agreement": float((o.argmax(1) == out_t.argmax(1)).double().mean()),
                     "max_output_error": float((o - out_t).abs().max())}
        built = "?" if wall is None else f"{wall:.0f}"
        print(f"{gran}: built in {built} s, accuracy {res['target']['accuracy']:.4f} -> {res[gran]['accuracy']:.4f}, "
              f"agreement {res[gran]['agreement']:.4f}, structured {res[gran]['structure']['structured']}, "
              f"compact MACs {res[gran]['compact_cost']['macs']:,}", flush=True)
    # forward times, 1 thread, interleaved
    torch.set_num_threads(1)
    xb = x[:args.batch]
    dense_structured = tickets["kernel"].compact(torch.float32, fold=False, sparse=False)
    nets = {"target": target.eval(), "structured compact (dense)": dense_structured}
    unstructured = tickets["weight"].compact(torch.float32, fold=False, sparse=False)
    nets["unstructured compact (CSR)"] = CSRNet(unstructured)
    nets["unstructured compact (dense)"] = unstructured
    if args.masked:
        nets["unstructured masked source (dense)"] = tickets["weight"].network().eval()
    times = {k: [] for k in nets}
    for _ in range(args.reps):
        for k, net in nets.items():
            times[k] += timed(net, xb, 1)
    res["forward_s_per_batch"] = {k: {"median": statistics.median(v), "runs": v} for k, v in times.items()}
    res["forward_batch"] = args.batch
    for k, v in res["forward_s_per_batch"].items():
        print(f"forward, {args.batch} images, 1 thread: {k}: {v['median'] * 1e3:.1f} ms (median of {args.reps})")
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", nargs="*", default=["mrss", "throughput", "conv2"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--milp-instances", type=int, default=20)
    ap.add_argument("--milp-limit", type=float, default=20.0, help="HiGHS time limit per instance (s)")
    ap.add_argument("--eps-param", type=float, default=0.01)
    ap.add_argument("--batch", type=int, default=16, help="test images per timed forward pass")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--masked", action="store_true", help="also time the dense masked source (slow)")
    ap.add_argument("--reuse", action="store_true", help="load the tickets an earlier run saved under runs/")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "structured.json"))
    args = ap.parse_args()
    out = Path(args.out)
    result = read_json(out) if out.exists() else {}
    args.previous = dict(result)
    result["machine"] = {"threads": args.threads, "torch": torch.__version__}
    if "mrss" in args.part:
        result["mrss"] = mrss_part(args)
        write_json(out, result)
    if "throughput" in args.part:
        result["throughput"] = throughput_part(args)
        write_json(out, result)
    if "conv2" in args.part:
        result["conv2"] = conv2_part(args)
        write_json(out, result)


if __name__ == "__main__":
    main()
