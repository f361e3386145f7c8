"""Targets and user models for the CLI: zoo names (trained once, cached), your own model files.

``--target`` accepts

* a zoo name: trained on ``--dataset`` for ``--target-budget`` iterations (printed before it
  starts; defaults per model finish in minutes on two cores) and cached in one user cache
  directory, never the working directory (``$LOTTERYLAB_TARGETS``, default
  ``~/.cache/lotterylab/targets``);
* a safetensors state dict with ``--arch`` (a zoo name, or ``path/to/file.py:factory``); a state
  dict of a plain ``nn.Linear`` chain needs no ``--arch`` (layers in the numeric order of their
  names, ``--activation`` between them); convolutional weights without ``--arch`` are refused;
* a TorchScript file (``torch.jit.save``) of an ``nn.Sequential`` of standard layers, rebuilt as
  an eager module (what construction and GFS read); other TorchScript modules are refused with
  the way out.
"""

from __future__ import annotations

import importlib.util
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .. import data as data_mod
from .. import models
from ..hparams import run_hash, to_dict
from ..io import FileFormatError, exclusive
from ..training import TrainConfig, train

# training budgets of zoo targets: the Frankle & Carbin protocol for LeNet-300-100 (a few minutes),
# shorter Adam runs for the conv and residual models (the construction benchmarks' targets)
TARGET_BUDGETS = {"lenet_300_100": "50000it", "mlp": "10000it", "lenet5": "3000it", "conv1": "2000it",
                  "conv2": "2000it", "conv4": "2000it", "conv6": "2000it", "resnet20": "2000it",
                  "vgg11": "2000it", "vgg16": "2000it"}


@dataclass
class TargetConfig:
    target: str = field(default="lenet_300_100", metadata={
        "help": "zoo model (trained once on --dataset, cached), a safetensors state dict (with --arch), or a "
                "TorchScript file"})
    arch: str = field(default="", metadata={"help": "architecture of a state-dict target: zoo name or "
                                                    "path/to/file.py:factory"})
    activation: str = field(default="relu", metadata={"help": "the target's activation (zoo and Linear-chain "
                                                                "targets)", "choices": list(models.ACTIVATIONS)})
    target_budget: str = field(default="", metadata={"help": "training budget of a zoo target (default per model: "
                                                             + ", ".join(f"{k} {v}" for k, v in TARGET_BUDGETS.items())
                                                             + ")", "check": "steps"})
    dataset: str = field(default="mnist", metadata={"help": "data the target is trained / evaluated on",
                                                    "choices": list(data_mod.DATASETS)})
    data_root: str = field(default="", metadata={"help": "directory of the data set files"})
    val_size: int = field(default=5000, metadata={"help": "training examples held out for validation",
                                                  "check": "positive"})
    verify: bool = field(default=True, metadata={"help": "check the data files' SHA-256 (--no-verify: your own "
                                                         "files in the standard format)"})


def target_cache() -> Path:
    """Where trained zoo targets are cached: ``$LOTTERYLAB_TARGETS`` or ``~/.cache/lotterylab/targets``."""
    return Path(os.environ.get("LOTTERYLAB_TARGETS", Path.home() / ".cache" / "lotterylab" / "targets"))


def is_factory(spec: str) -> bool:
    return bool(re.fullmatch(r".+\.py:[A-Za-z_][A-Za-z0-9_]*", spec or ""))


def load_factory(spec: str):
    """``path/to/file.py:name`` -> the callable ``name`` of that file (a function or class)."""
    if not is_factory(spec):
        raise ValueError(f"{spec!r}: give your model as path/to/file.py:factory")
    path, name = spec.rsplit(":", 1)
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{spec}: no file {p}")
    mod_spec = importlib.util.spec_from_file_location(f"lotterylab_user_{p.stem}", p)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ValueError(f"{spec}: {p} defines no function or class {name!r}")

    def make():
        m = fn()
        if not isinstance(m, nn.Module):
            raise ValueError(f"{spec}: {name}() returned {type(m).__name__}, not a torch.nn.Module")
        return m
    return make


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _linear_chain(sd: dict, path: Path, activation: str) -> nn.Module:
    conv = [k for k, v in sd.items() if k.endswith("weight") and v.dim() > 2]
    if conv:
        raise FileFormatError(f"{path}: holds convolutional weights ({conv[0]}, {sd[conv[0]].dim()}-D); a state dict "
                              f"alone cannot say how they connect. Pass --arch ZOO_NAME or --arch file.py:factory")
    ws = sorted((k for k, v in sd.items() if k.endswith("weight") and v.dim() == 2), key=_natural_key)
    if not ws:
        raise FileFormatError(f"{path}: no 2-D '*.weight' tensors; pass --arch for other architectures")
    layers: list[nn.Module] = [nn.Flatten()]
    for k, name in enumerate(ws):
        w = sd[name]
        if k and w.shape[1] != sd[ws[k - 1]].shape[0]:
            raise FileFormatError(f"{path}: {name} takes {w.shape[1]} inputs but {ws[k - 1]} gives "
                                  f"{sd[ws[k - 1]].shape[0]}; not a Linear chain. Pass --arch")
        lin = nn.Linear(w.shape[1], w.shape[0])
        b = sd.get(name[: -len("weight")] + "bias")
        with torch.no_grad():
            lin.weight.copy_(w)
            lin.bias.copy_(b if b is not None else torch.zeros(w.shape[0]))
        layers.append(lin)
        if k < len(ws) - 1:
            layers.append(models.make_activation(activation))
    return nn.Sequential(*layers)


_SCRIPT_LAYERS = {
    "Linear": lambda m: nn.Linear(m.in_features, m.out_features, bias=m.bias is not None),
    "Conv2d": lambda m: nn.Conv2d(m.in_channels, m.out_channels, tuple(m.kernel_size), tuple(m.stride),
                                  tuple(m.padding) if not isinstance(m.padding, str) else m.padding,
                                  tuple(m.dilation), m.groups, m.bias is not None),
    "BatchNorm2d": lambda m: nn.BatchNorm2d(m.num_features, m.eps, m.momentum),
    "BatchNorm1d": lambda m: nn.BatchNorm1d(m.num_features, m.eps, m.momentum),
    "Flatten": lambda m: nn.Flatten(m.start_dim, m.end_dim),
    "MaxPool2d": lambda m: nn.MaxPool2d(m.kernel_size, m.stride, m.padding),
    "AvgPool2d": lambda m: nn.AvgPool2d(m.kernel_size, m.stride, m.padding),
    "AdaptiveAvgPool2d": lambda m: nn.AdaptiveAvgPool2d(m.output_size),
    "LeakyReLU": lambda m: nn.LeakyReLU(m.negative_slope),
    "ELU": lambda m: nn.ELU(m.alpha),
    "Softplus": lambda m: nn.Softplus(m.beta, m.threshold),
    **{k: (lambda m, k=k: getattr(nn, k)()) for k in ("ReLU", "Tanh", "Sigmoid", "GELU", "SiLU", "Identity")},
}


def _from_script(sm, path: Path) -> nn.Module:
    """An eager copy of a scripted ``nn.Sequential`` of standard layers (same parameters, buffers)."""
    kind = getattr(sm, "original_name", type(sm).__name__)
    if kind == "Sequential":
        return nn.Sequential(*[_from_script(c, path) for _, c in sm.named_children()])
    if kind not in _SCRIPT_LAYERS:
        raise FileFormatError(f"{path}: TorchScript module {kind!r} with its own forward cannot be read layer by "
                              f"layer; save its state dict (safetensors) and pass --arch file.py:factory")
    m = _SCRIPT_LAYERS[kind](sm)
    m.load_state_dict(sm.state_dict())
    return m


def load_target_file(path: Path, arch: str, activation: str) -> nn.Module:
    if not path.is_file():
        raise FileFormatError(f"{path}: not a regular file")
    if zipfile.is_zipfile(path):
        try:
            sm = torch.jit.load(str(path), map_location="cpu")
        except (RuntimeError, ValueError) as e:
            raise FileFormatError(f"{path}: a zip file but not a TorchScript module ({e}); save models with "
                                  f"torch.jit.save or as a safetensors state dict") from None
        return _from_script(sm, path).eval()
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    try:
        sd = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise FileFormatError(f"{path}: neither TorchScript nor a readable safetensors state dict ({e})") from None
    if not arch:
        return _linear_chain(sd, path, activation).eval()
    model = load_factory(arch)()  # (zoo --arch names are built by load_target, which knows the data's shape)
    _load_state(model, sd, path)
    return model.eval()


def _load_state(model: nn.Module, sd: dict, path: Path) -> None:
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        detail = " ".join(line.strip() for line in str(e).splitlines()[1:3])
        raise FileFormatError(f"{path}: does not fit the architecture ({detail[:300]}); check --arch, --activation "
                              f"and --dataset (input shape)") from None


def load_target(tc: TargetConfig, need_data: bool = False, progress: bool = True, log=print):
    """``(target module, data splits or None)``; data is loaded for zoo targets or when asked."""
    path = Path(tc.target)
    splits = None
    if need_data or not path.exists() or (tc.arch and not is_factory(tc.arch)):  # a zoo --arch needs the input shape
        splits = data_mod.load(tc.dataset, root=tc.data_root or None, val_size=tc.val_size, verify=tc.verify)
    if path.exists():
        if tc.arch and not is_factory(tc.arch):
            if tc.arch not in models.names():
                raise ValueError(f"--arch {tc.arch!r}: not a zoo model ({', '.join(models.names())}) nor file.py:factory")
            shape = splits.input_shape if splits is not None else None
            model = models.create(tc.arch, tc.activation, shape, 10)
            from safetensors import SafetensorError
            from safetensors.torch import load_file
            try:
                sd = load_file(str(path))
            except (SafetensorError, OSError, ValueError) as e:
                raise FileFormatError(f"{path}: not a readable safetensors state dict ({e})") from None
            _load_state(model, sd, path)
            return model.eval(), splits
        return load_target_file(path, tc.arch, tc.activation), splits
    if is_factory(tc.target):
        raise ValueError(f"--target {tc.target}: give the weights as --target FILE.safetensors and the "
                         f"architecture as --arch {tc.target}")
    if tc.target not in models.names():
        raise ValueError(f"--target {tc.target!r} is neither a file nor a zoo model ({', '.join(models.names())})")
    return zoo_target(tc, splits, progress, log), splits


def zoo_target(tc: TargetConfig, splits, progress: bool = True, log=print) -> nn.Module:
    budget = tc.target_budget or TARGET_BUDGETS.get(tc.target, "2000it")
    cfg = TrainConfig(budget=budget)
    model = models.create(tc.target, tc.activation, splits.input_shape, splits.num_classes, seed=0)
    key = run_hash(cfg, {"target": tc.target, "activation": tc.activation, "dataset": tc.dataset,
                         "data": splits.describe()})
    folder = target_cache() / f"{tc.target}-{tc.activation}-{tc.dataset}-{key}"
    with exclusive(folder):  # parallel cells wanting the same target: one trains it, the others then load it
        if (folder / "result.json").exists():
            log(f"target {tc.target} ({tc.activation}): trained on {tc.dataset} for {budget}, cached in {folder}")
        else:
            log(f"target {tc.target} ({tc.activation}): training on {tc.dataset} for {budget} (Adam lr {cfg.lr}, "
                f"batch {cfg.batch_size}; --target-budget changes it), cached in {folder}")
        res = train(model, splits, cfg, out=folder, progress=progress)
    log(f"target test accuracy {100 * res['final']['test_accuracy']:.2f}%")
    return model.eval()


def target_record(tc: TargetConfig) -> dict:
    rec = to_dict(tc)
    if Path(tc.target).exists():
        rec["kind"] = "file"
    else:
        rec["kind"] = "zoo"
        rec["target_budget"] = tc.target_budget or TARGET_BUDGETS.get(tc.target, "2000it")
    return rec
