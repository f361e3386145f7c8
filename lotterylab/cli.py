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
