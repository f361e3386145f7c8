"""Fingerprints of constructed tickets: the guard for refactoring the construction code.

Every case builds a target (seeded; small ones here, the benchmark targets trained on MNIST),
constructs its ticket and hashes the mask bytes and the report (timings left out). ``--record``
writes them to ``benchmarks/results/construct_fingerprints.json``; without it the script
recomputes them and compares: any difference in a mask bit or a report figure fails (exit 1).
The target's own hash is recorded too, so a target that trained differently (another machine or
torch) is reported as "target changed" rather than as a construction change.

    python benchmarks/construct_fingerprints.py [--record] [--cases small|large|all|NAME...] [--threads 2]

``small`` (about a minute): the test suite's kinds of target and every mode, first layer, objective
and refinement. ``large`` (about 15 minutes on a 2-core VM, 9 GiB): LeNet-300-100 L+1 and 2L in the
papers' mode as in the demo, Conv-2 and ResNet-20 2L with bias correction and compensation.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import lotterylab as ll  # noqa: E402
from lotterylab import models  # noqa: E402
from lotterylab.io import write_json  # noqa: E402

from targets import small_cnn, small_resnet, trained_mlp  # noqa: E402  (the test suite's targets)

RESULTS = Path(__file__).parent / "results" / "construct_fingerprints.json"
IMG = (1, 12, 12)


def digest_tensors(tensors: dict) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(f"{name}{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def fingerprint(ticket) -> dict:
    # the construction's own figures. Left out, so the recorded fingerprints still apply: where the work
    # ran (executor, session 10) and the checks run on the finished ticket (its sampled error, the
    # pure-pruning label, session 11; the first layer's scale and orders and the float32 check, session 14)
    checks = ("timings_s", "executor", "sampled_error", "calibration_check", "far_from_target", "pure_pruning",
              "first_layer_s1", "matched_orders", "float32_check")
    rep = {k: v for k, v in ticket.report.items() if k not in checks}
    return {"mask": digest_tensors(dict(ticket.masks)),
            "report": hashlib.sha256(json.dumps(rep, sort_keys=True).encode()).hexdigest(),
            "certificate": rep.get("certificate"), "parameters": rep.get("parameters")}


def mlp(act: str, widths=(4, 8, 6, 3), seed: int = 0) -> nn.Module:
    return trained_mlp(act, widths, seed, steps=0)  # the tests' MLP, untrained: weights 0.5 N(0, 1)


def cnn(act: str, seed: int = 0, batch_norm: bool = False) -> nn.Module:
    net = small_cnn(act, seed, steps=0, batch_norm=batch_norm)
    if batch_norm:
        with torch.no_grad():  # non-trivial statistics
            net[4].running_mean.uniform_(-0.5, 0.5)
            net[4].running_var.uniform_(0.5, 2.0)
    return net.eval()


def resnet(act: str, seed: int = 0) -> nn.Module:
    return small_resnet(act, seed, steps=0)


def _calib(shape, n=64, seed=5):
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed))


BOX = {"domain": (0.0, 1.0), "input_shape": IMG}
SMALL = {
    "mlp-relu-L+1-guarantee": (lambda: mlp("relu"), {"mode": "L+1", "eps": 0.02, "seed": 1}),
    "mlp-relu-2L-guarantee": (lambda: mlp("relu"), {"mode": "2L", "eps": 0.02, "seed": 1}),
    "mlp-leaky-L+1-guarantee": (lambda: mlp("leaky_relu"), {"mode": "L+1", "eps": 0.02, "seed": 1}),
    "mlp-tanh-2L-linearize": (lambda: mlp("tanh"), {"mode": "2L", "eps": 0.02, "seed": 1}),
    "mlp-sigmoid-2L-linearize": (lambda: mlp("sigmoid"), {"mode": "2L", "eps": 0.02, "seed": 1}),
    "mlp-gelu-L+1-identity": (lambda: mlp("gelu"), {"mode": "L+1", "eps": 0.02, "seed": 1,
                                                    "first_layer": "identity"}),
    "mlp-tanh-L+1-identity": (lambda: mlp("tanh"), {"mode": "L+1", "eps": 0.02, "seed": 1,
                                                    "first_layer": "identity"}),
    "mlp-relu-L+1-paper": (lambda: mlp("relu"), {"mode": "L+1", "eps_param": 0.01, "seed": 0}),
    "mlp-relu-2L-paper-growth": (lambda: mlp("relu"), {"mode": "2L", "eps_param": 0.002, "seed": 0,
                                                       "rho_first": 12}),
    "mlp-relu-L+1-min-error": (lambda: mlp("relu"), {"mode": "L+1", "eps_param": 0.01, "seed": 0,
                                                     "objective": "min_error", "copy_objective": "min_l1"}),
    "mlp-relu-L+1-calibrated-compensated": (lambda: mlp("relu", (5, 16, 12, 3)), {
        "mode": "L+1", "eps_param": 0.05, "seed": 0, "calibration": _calib((5,), 200).mul(2).sub(1),
        "compensate": True}),
    "mlp-tanh-2L-calibrated-compensated": (lambda: mlp("tanh", (5, 16, 12, 3)), {
        "mode": "2L", "eps_param": 0.05, "seed": 0, "calibration": _calib((5,), 200).mul(2).sub(1),
        "compensate": True}),
    "mlp-constant-inputs": (lambda: mlp("relu"), {"mode": "L+1", "eps": 0.02, "seed": 0,
                                                  "domain": (torch.tensor([-1.0, 0.5, -1.0, 0.0]),
                                                             torch.tensor([1.0, 0.5, 1.0, 1.0]))}),
    "cnn-relu-L+1-guarantee": (lambda: cnn("relu"), {"mode": "L+1", "eps": 0.05, "seed": 0, **BOX}),
    "cnn-relu-2L-guarantee": (lambda: cnn("relu"), {"mode": "2L", "eps": 0.05, "seed": 0, **BOX}),
    "cnn-tanh-L+1-guarantee": (lambda: cnn("tanh"), {"mode": "L+1", "eps": 0.05, "seed": 0, **BOX}),
    "cnn-bn-2L-paper": (lambda: cnn("relu", batch_norm=True), {"mode": "2L", "eps_param": 0.01, "seed": 0, **BOX}),
    "cnn-relu-2L-calibrated-compensated": (lambda: cnn("relu"), {
        "mode": "2L", "eps_param": 0.02, "seed": 0, "calibration": _calib(IMG), "compensate": True, **BOX}),
    "resnet-relu-2L-guarantee": (lambda: resnet("relu"), {"mode": "2L", "eps": 0.1, "seed": 0, **BOX}),
    "resnet-relu-L+1-paper": (lambda: resnet("relu"), {"mode": "L+1", "eps_param": 0.01, "seed": 0, **BOX}),
    "resnet-relu-2L-calibrated-compensated": (lambda: resnet("relu"), {
        "mode": "2L", "eps_param": 0.02, "seed": 0, "calibration": _calib(IMG), "compensate": True, **BOX}),
}
LARGE = ["lenet-L+1-paper-demo", "lenet-2L-paper", "conv2-2L-compensated", "resnet20-2L-compensated"]


def _mnist_target(name: str, threads: int):
    """The benchmark targets: LeNet-300-100 as the demo trains it (cached), Conv-2 / ResNet-20 as
    benchmarks/construct_cnn.py trains them (500 Adam iterations, cached under runs/)."""
    from lotterylab import data
    from lotterylab.cli.targets import TargetConfig, load_target
    from lotterylab.training import TrainConfig, train

    if name == "lenet":
        target, splits = load_target(TargetConfig(target="lenet_300_100"), need_data=True, progress=False)
        return target, splits
    splits = data.load("mnist")
    kw = {"width": 16} if name == "resnet20" else {}
    model = models.create(name, "relu", input_shape=(1, 28, 28), seed=0, **kw)
    cfg = TrainConfig(budget="500it", optimizer="adam", lr=2e-4 if name == "conv2" else 1e-3, eval_every="500it")
    train(model, splits, cfg, out=Path("runs") / f"bench-{name}-mnist-500", threads=threads, progress=False)
    return model.eval(), splits


def large_case(name: str, threads: int):
    model = name.split("-")[0]
    target, splits = _mnist_target(model, threads)
    if model == "lenet":  # the demo's call (scripts/demo) with the library's default copy objective
        # (the demo adds copy_objective='min_l1' since session 14; benchmarks/pipeline.py times this one)
        kw = {"mode": name.split("-")[1], "eps_param": 0.01, "seed": 0, "domain": splits.test.x,
              "calibration": splits.train.take(2000, seed=0).x}
    else:  # benchmarks/construct_cnn.py --calibration 500 --compensate
        kw = {"mode": "2L", "eps_param": 0.01, "seed": 0, "domain": splits.test.x, "input_shape": (1, 28, 28),
              "calibration": splits.train.take(500, seed=0).x, "compensate": True}
    return target, kw


def run_case(name: str, threads: int) -> dict:
    if name in SMALL:
        make, kw = SMALL[name]
        target = make()
    else:
        target, kw = large_case(name, threads)
    t0 = time.perf_counter()
    ticket = ll.construct(target, **kw)
    wall = time.perf_counter() - t0
    return {"target": digest_tensors(target.state_dict()), **fingerprint(ticket), "seconds": wall}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--record", action="store_true", help="write the fingerprints instead of comparing")
    ap.add_argument("--cases", nargs="*", default=["small"], help="small, large, all or case names")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--file", default=str(RESULTS))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    names: list[str] = []
    for c in args.cases:
        names += {"small": list(SMALL), "large": LARGE, "all": list(SMALL) + LARGE}.get(c, [c])
    unknown = [n for n in names if n not in SMALL and n not in LARGE]
    if unknown:
        ap.error(f"unknown cases {unknown}; choose from small, large, all, {list(SMALL) + LARGE}")
    path = Path(args.file)
    recorded = json.loads(path.read_text())["cases"] if path.exists() else {}
    if not args.record and not any(n in recorded for n in names):
        ap.error(f"{path} holds none of these cases; run with --record first (before the change)")
    bad = 0
    for name in names:
        got = run_case(name, args.threads)
        if args.record:
            recorded[name] = got
            write_json(path, {"benchmark": "construct_fingerprints", "torch": torch.__version__, "cases": recorded})
            print(f"{name}: recorded (mask {got['mask'][:12]}, {got['seconds']:.1f} s)", flush=True)
            continue
        want = recorded.get(name)
        if want is None:
            verdict = "not recorded"
        elif want["target"] != got["target"]:
            verdict = "TARGET CHANGED (trained differently here; not comparable)"
        elif (want["mask"], want["report"]) == (got["mask"], got["report"]):
            verdict = "identical"
        else:
            verdict = "DIFFERENT " + ", ".join(k for k in ("mask", "report") if want[k] != got[k])
            bad += 1
        print(f"{name}: {verdict} ({got['seconds']:.1f} s, recorded {want['seconds'] if want else 0:.1f} s)",
              flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
