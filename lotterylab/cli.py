"""``lotterylab`` command line: a thin layer over the library API."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import data as data_mod
from . import models
from .hparams import add_arguments, from_namespace, run_hash, to_dict
from .io import FileFormatError, load_tensors, read_json, write_json
from .training import TrainConfig, train


@dataclass
class ModelDataConfig:
    model: str = field(default="lenet_300_100", metadata={"help": f"zoo model: {', '.join(models.names())}"})
    activation: str = field(default="relu", metadata={"help": "activation", "choices": list(models.ACTIVATIONS)})
    init: str = field(default="", metadata={"help": "init scheme (empty: the model's literature default)"})
    model_seed: int = field(default=0, metadata={"help": "seed of the initial weights"})
    dataset: str = field(default="mnist", metadata={"help": "data set", "choices": list(data_mod.DATASETS)})
    data_root: str = field(default="", metadata={"help": "directory of the data set files (CIFAR-10, other copies)"})
    view: str = field(default="", metadata={"help": "'32x32x3' to pad and repeat MNIST-type images"})
    val_size: int = field(default=5000, metadata={"help": "training examples held out for validation"})
    split_seed: int = field(default=0, metadata={"help": "seed of the validation split"})


def _load_data(md: ModelDataConfig, device):
    return data_mod.load(md.dataset, root=md.data_root or None, val_size=md.val_size, seed=md.split_seed,
                         view=md.view or None, device=device)


def cmd_train(ns) -> int:
    md, cfg = from_namespace(ModelDataConfig, ns), from_namespace(TrainConfig, ns)
    torch.set_num_threads(ns.threads)
    splits = _load_data(md, ns.device)
    model = models.create(md.model, md.activation, splits.input_shape, splits.num_classes,
                          init=md.init or None, seed=md.model_seed, device=ns.device)
    out = Path(ns.out) if ns.out else Path("runs") / f"train-{md.model}-{md.dataset}-{run_hash(md, cfg)}"
    print(f"{md.model} ({md.activation}) on {md.dataset}: {sum(p.numel() for p in model.parameters()):,} parameters; "
          f"{cfg.optimizer} lr {cfg.lr}, batch {cfg.batch_size}, {cfg.budget}; {ns.threads} thread(s); out {out}")
    result = train(model, splits, cfg, out=out, device=ns.device, progress=not ns.quiet,
                   extra_hash={"model_data": to_dict(md)})
    final = result["final"]
    if result.pop("loaded_from", None):
        print(f"test accuracy {final['test_accuracy']:.4f} (finished run loaded from {out}; nothing recomputed)")
        return 0
    result["model_data"] = to_dict(md)
    result["data"] = splits.describe()
    write_json(out / "result.json", result)
    print(f"test accuracy {final['test_accuracy']:.4f} (val {final['val_accuracy']:.4f}) after "
          f"{result['iterations']} iterations; min val loss at iteration {result['min_val_loss_iteration']}; "
          f"{result['seconds_per_epoch']:.2f} s per training epoch")
    return 0


def _load_target(ns):
    """A zoo name (trained once on MNIST with the default protocol, cached under runs/) or a
    safetensors state dict of a Linear chain (layers in file order, --activation between them)."""
    from torch import nn

    from .io import FileFormatError as _FFE

    path = Path(ns.target)
    if path.exists():
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            sd = load_file(str(path))
        except (SafetensorError, OSError) as e:
            raise _FFE(f"{path}: not a readable safetensors state dict ({e})") from None
        ws = [k for k, v in sd.items() if k.endswith("weight") and v.dim() == 2]
        if not ws:
            raise _FFE(f"{path}: no 2-D '*.weight' tensors; expected the state dict of a chain of nn.Linear layers")
        layers = []
        for k, name in enumerate(ws):
            w = sd[name]
            lin = nn.Linear(w.shape[1], w.shape[0])
            lin.weight.data.copy_(w)
            b = sd.get(name[: -len("weight")] + "bias")
            lin.bias.data.copy_(b if b is not None else torch.zeros(w.shape[0]))
            layers.append(lin)
            if k < len(ws) - 1:
                layers.append(models.make_activation(ns.activation))
        return nn.Sequential(*layers), None
    if ns.target not in models.names():
        raise ValueError(f"--target {ns.target!r} is neither a file nor a zoo model ({', '.join(models.names())})")
    splits = data_mod.load("mnist")
    model = models.create(ns.target, ns.activation, splits.input_shape, splits.num_classes, seed=0)
    train(model, splits, TrainConfig(), out=Path("runs") / f"target-{ns.target}-{ns.activation}", progress=not ns.quiet)
    return model.eval(), splits


def cmd_construct(ns) -> int:
    from . import construct, verify

    torch.set_num_threads(ns.threads)
    target, splits = _load_target(ns)
    domain = splits.test.x if splits is not None else (ns.low, ns.high)
    kwargs = {"eps_param": ns.eps_param} if ns.eps_param else {"eps": ns.eps}
    ticket = construct(target, mode=ns.mode, seed=ns.seed, domain=domain, first_layer=ns.first_layer or None, **kwargs)
    out = Path(ns.out)
    ticket.save(out / "ticket.safetensors")
    rep = dict(ticket.report)
    if ns.verify_samples:
        rep["verify"] = verify(target, ticket, domain=domain, samples=ns.verify_samples, attack_steps=ns.attack_steps)
    rep["file"] = ticket.file_report(out / "ticket.safetensors")
    write_json(out / "result.json", {"kind": "construct", "target": ns.target, "args": {k: v for k, v in vars(ns).items()
                                                                                        if k != "func"}, "report": rep})
    p = rep["parameters"]
    print(f"{ns.mode} ticket: source {p['source']:,} params, ticket {p['ticket']:,} ({p['ticket_per_target']:.1f}x the "
          f"target's {p['target']:,}); certificate {rep['certificate']:.3g}"
          + (f"; sampled+attacked error {rep['verify']['sup_error']:.3g}" if "verify" in rep else "")
          + f"; {rep['timings_s']['total']:.1f} s; written to {out}")
    return 0


def cmd_fetch(ns) -> int:
    data_mod.fetch(ns.name)
    return 0


def cmd_info(ns) -> int:
    path = Path(ns.path)
    if path.is_dir():
        path = path / "result.json"
    if path.suffix == ".json":
        r = read_json(path)
        print(json.dumps({k: v for k, v in r.items() if k != "history"}, indent=2))
        return 0
    _, meta = load_tensors(path)
    kind = meta.get("kind")
    if kind == "ticket":
        from .tickets import load_ticket
        t = load_ticket(path)
        print(f"ticket {path}: {t.arch['name']} ({t.arch.get('activation')}), seed {t.seed}, generator {meta['generator']}")
        print(json.dumps({**t.counts(), **t.file_report(path)}, indent=2))
        print(t.masks.report())
    elif kind == "mask":
        from .masks import Mask
        m = Mask.load(path)
        print(f"mask {path}: density {m.density:.4f}, sparsity {m.sparsity:.4f}")
        print(m.report())
    elif kind == "checkpoint":
        print(f"checkpoint {path}: iteration {meta['iteration']}, lotterylab {meta.get('lotterylab')}")
        if meta["history"]:
            print(json.dumps(meta["history"][-1], indent=2))
    else:
        raise FileFormatError(f"{path}: unknown lotterylab file kind {kind!r}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lotterylab", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("data", help="data sets")
    dsub = d.add_subparsers(dest="data_command", required=True)
    f = dsub.add_parser("fetch", help="make a data set available offline")
    f.add_argument("name", choices=["mnist", "fashion-mnist", "cifar10"])
    f.set_defaults(func=cmd_fetch)

    t = sub.add_parser("train", help="train a zoo model (default: LeNet-300-100 on MNIST, Frankle & Carbin protocol)")
    add_arguments(t, ModelDataConfig)
    add_arguments(t, TrainConfig)
    t.add_argument("--out", default="", help="run directory (default: runs/train-<model>-<data>-<hash>); reruns resume")
    t.add_argument("--threads", type=int, default=1, help="torch threads (default 1: steady on shared machines)")
    t.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)

    c = sub.add_parser("construct", help="construct a strong ticket of a fully connected target (partial: see docs)")
    c.add_argument("--target", default="lenet_300_100", help="zoo model (trained on MNIST once, cached) or a "
                                                              "safetensors state dict of a Linear chain")
    c.add_argument("--activation", default="relu", help="the target's activation")
    c.add_argument("--mode", default="L+1", choices=["L+1", "2L"])
    c.add_argument("--eps", type=float, default=0.01, help="bound on the output error over the domain")
    c.add_argument("--eps-param", type=float, default=0.0, help="per-parameter tolerance (papers' mode) instead of --eps")
    c.add_argument("--first-layer", default="", choices=["", "sign_trick", "linearize", "identity"])
    c.add_argument("--low", type=float, default=-1.0, help="domain box (state-dict targets)")
    c.add_argument("--high", type=float, default=1.0)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--verify-samples", type=int, default=100_000, help="0: skip verification")
    c.add_argument("--attack-steps", type=int, default=200)
    c.add_argument("--threads", type=int, default=1)
    c.add_argument("--quiet", action="store_true")
    c.add_argument("--out", default="runs/construct", help="directory for ticket.safetensors and result.json")
    c.set_defaults(func=cmd_construct)

    i = sub.add_parser("info", help="summarise a ticket, mask, checkpoint or result file")
    i.add_argument("path")
    i.set_defaults(func=cmd_info)
    return p


def main(argv=None) -> int:
    ns = build_parser().parse_args(argv)
    try:
        return ns.func(ns)
    except (data_mod.DataError, FileFormatError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
