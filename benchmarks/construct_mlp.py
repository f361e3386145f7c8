"""Strong tickets for LeNet-300-100 trained on MNIST, in the papers' per-parameter mode.

Trains LeNet-300-100 (Frankle & Carbin protocol, cached under runs/), then for each requested
(mode, activation) constructs the ticket with ``eps_param`` (default 0.01, as the papers), and
records: construction time (total and subset sum), peak memory, parameter counts, subset-sum
statistics, the certificate over the data's domain (per-pixel min/max of the test set), the
largest output difference on the test set, test accuracy of target and ticket, and top-1
agreement. The ticket is evaluated with sparse matrices (it keeps a few % of a very wide source).

    python benchmarks/construct_mlp.py [--modes L+1 2L] [--acts relu tanh] [--threads 2]
Writes benchmarks/results/construct_mlp.json.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import lotterylab as ll  # noqa: E402
from lotterylab import data, models  # noqa: E402
from lotterylab.io import write_json  # noqa: E402
from lotterylab.training import TrainConfig, train  # noqa: E402


def trained_lenet(act: str, splits, threads: int):
    model = models.create("lenet_300_100", act, init="glorot_normal", seed=0)
    train(model, splits, TrainConfig(budget="50000it"), out=Path("runs") / f"bench-lenet-{act}", threads=threads,
          progress=False)
    return model.eval()


@torch.no_grad()
def sparse_forward(ticket: ll.Ticket, x: torch.Tensor) -> torch.Tensor:
    net = ticket.network()
    h = x.reshape(x.shape[0], -1).double()
    for k, lin in enumerate(net.linears):
        W = lin.weight.double().to_sparse_csr()
        h = (W @ h.T).T + lin.bias.double()
        if k < len(net.acts):
            h = net.acts[k].double()(h)
    return h


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--modes", nargs="*", default=["L+1", "2L"])
    ap.add_argument("--acts", nargs="*", default=["relu", "tanh"])
    ap.add_argument("--eps-param", type=float, default=0.01)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "construct_mlp.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    splits = data.load("mnist")
    x, y = splits.test.x, splits.test.y
    rows = []
    for act in args.acts:
        target = trained_lenet(act, splits, args.threads)
        with torch.no_grad():
            out_t = target.double()(x.double())
        target = target.float()
        for mode in args.modes:
            t0 = time.perf_counter()
            ticket = ll.construct(target, mode=mode, eps_param=args.eps_param, seed=0, domain=x)
            wall = time.perf_counter() - t0
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
            out_k = sparse_forward(ticket, x)
            rep = ticket.report
            row = {"activation": act, "mode": mode, "eps_param": args.eps_param, "construct_seconds": wall,
                   "subset_sum_seconds": rep["timings_s"]["subset_sum"], "peak_rss_gib_so_far": peak,
                   "parameters": rep["parameters"], "subset_sum": rep["subset_sum"], "rho": rep["rho"],
                   "rho_first": rep["rho_first"], "certificate_data_domain": rep["certificate"],
                   "max_output_error_test": float((out_t - out_k).abs().max()),
                   "target_accuracy": float((out_t.argmax(1) == y).float().mean()),
                   "ticket_accuracy": float((out_k.argmax(1) == y).float().mean()),
                   "agreement": float((out_t.argmax(1) == out_k.argmax(1)).float().mean())}
            rows.append(row)
            print(f"{act} {mode}: {wall:.1f} s (subset sum {row['subset_sum_seconds']:.1f} s), source "
                  f"{rep['parameters']['source']:,} ticket {rep['parameters']['ticket']:,} target "
                  f"{rep['parameters']['target']:,}; acc {row['target_accuracy']:.4f} -> {row['ticket_accuracy']:.4f}, "
                  f"agree {row['agreement']:.4f}, max err {row['max_output_error_test']:.3g}, "
                  f"unresolved {rep['subset_sum']['unresolved']}", flush=True)
            del ticket
    write_json(args.out, {"benchmark": "construct_mlp", "threads": args.threads, "rows": rows, "torch": torch.__version__})
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
