"""Edge-popup (Ramanujan et al. 2020): find a strong ticket by learning scores on frozen random weights.

Every Linear/Conv weight gets a score tensor; the forward pass uses ``weight * top_k(|score|)``
per layer (density k), and the backward pass sends the gradient straight through the top-k to
the scores. Weights and biases are never trained, so the result is a ticket file: the seed and
init of the random network plus the mask.

Implemented with ``torch.nn.utils.parametrize``: the model stays a normal module, its
``state_dict`` (weights + scores) checkpoints and resumes with the shared training loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize

from .. import models
from ..data import DataSplits
from ..masks import Mask
from ..tickets import Ticket, state_sha256
from ..training import TrainConfig, train
from .scores import prunable

# the paper's training of the scores: SGD lr 0.1, momentum 0.9, weight decay 5e-4, cosine, 20 epochs
PAPER_TRAINING = TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4, batch_size=128, budget="20ep",
                             schedule="cosine")


@dataclass
class EdgePopupConfig:
    density: float = field(default=0.5, metadata={"help": "fraction of each layer's weights kept (k)",
                                                    "check": "density"})
    weight_init: str = field(default="signed_constant", metadata={
        "help": "frozen weights: signed_constant (+-sqrt(2/fan_in)) or kaiming_normal", "flag": "init",
        "aliases": ["--weight-init"], "choices": ["signed_constant", "kaiming_normal", "kaiming_uniform"]})
    scale_fan: bool = field(default=True, metadata={"help": "scale weights by 1/sqrt(density) (the kept fan-in)"})
    network_seed: int = field(default=0, metadata={
        "help": "seed of the random network and the initial scores", "flag": "model-seed", "aliases": ["--network-seed"],
        "check": "nonneg"})


class _TopK(torch.autograd.Function):
    @staticmethod
    def forward(ctx, magnitude: torch.Tensor, k: int) -> torch.Tensor:
        flat = magnitude.reshape(-1)
        out = torch.zeros_like(flat)
        out[torch.topk(flat, k, sorted=False).indices] = 1.0
        return out.reshape(magnitude.shape)

    @staticmethod
    def backward(ctx, grad):
        return grad, None  # straight-through


class PopupMask(nn.Module):
    """Parametrization ``weight -> weight * top_k(|scores|)``; ``scores`` is the only trainable tensor."""

    def __init__(self, scores: torch.Tensor, density: float):
        super().__init__()
        self.scores = nn.Parameter(scores)
        self.k = max(1, round(density * scores.numel()))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        # abs() outside the straight-through op, so the scores' gradient carries sign(score)
        return weight * _TopK.apply(self.scores.abs(), self.k)

    def mask(self) -> torch.Tensor:
        return _TopK.apply(self.scores.detach().abs(), self.k).bool()


def attach(model: nn.Module, density: float, seed: int, names=None) -> list[str]:
    """Freeze every parameter and give each prunable weight a score (Kaiming-uniform, as the paper)."""
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density must be in (0, 1], got {density}")
    names = prunable(model, names)
    for p in model.parameters():
        p.requires_grad_(False)
    modules = dict(model.named_modules())
    g = torch.Generator().manual_seed(seed)
    for n in names:
        mod_name, _, leaf = n.rpartition(".")
        mod = modules[mod_name]
        w = getattr(mod, leaf)
        bound = math.sqrt(6.0 / (w[0].numel()))  # Kaiming uniform on the fan-in
        scores = (torch.rand(w.shape, generator=g, dtype=torch.float32) * 2 - 1).mul_(bound).to(w.device)
        parametrize.register_parametrization(mod, leaf, PopupMask(scores, density))
        mod.parametrizations[leaf].original.requires_grad_(False)
    return names


def current_mask(model: nn.Module, names) -> Mask:
    modules = dict(model.named_modules())
    out = Mask()
    for n in names:
        mod_name, _, leaf = n.rpartition(".")
        out[n] = modules[mod_name].parametrizations[leaf][0].mask()
    return out


def edge_popup(arch_name: str, data: DataSplits, cfg: EdgePopupConfig | None = None,
               train_cfg: TrainConfig | None = None, out: str | Path | None = None, device=None,
               progress: bool = True, activation: str = "relu", **model_kwargs) -> tuple[Ticket, dict]:
    """Search a ticket of zoo model ``arch_name`` on ``data``; returns (ticket, training result).

    Default training follows the paper: SGD lr 0.1, momentum 0.9, weight decay 5e-4 on the
    scores, cosine schedule.
    """
    cfg = cfg or EdgePopupConfig()
    train_cfg = train_cfg or PAPER_TRAINING
    init = {"dist": cfg.weight_init, "scale": 1.0 / math.sqrt(cfg.density) if cfg.scale_fan else 1.0}
    spec = {"weight": init, "bias": "zeros"}
    model = models.create(arch_name, activation, input_shape=data.input_shape, num_classes=data.num_classes, init=spec,
                          seed=cfg.network_seed, device=device, **model_kwargs)
    mask, result = _search(model, data, cfg, train_cfg, out, device, progress, None,
                           {"edge_popup": vars(cfg), "arch": model.lotterylab_arch, "data": data.describe()})
    clean = models.create(arch_name, activation, input_shape=data.input_shape, num_classes=data.num_classes, init=spec,
                          seed=cfg.network_seed, **model_kwargs)
    ticket = Ticket.from_model(clean, spec, cfg.network_seed, mask, report={
        "method": "edge_popup", "config": vars(cfg), "train": vars(train_cfg),
        "test_accuracy": result["final"]["test_accuracy"], "density": mask.density})
    if out is not None:
        ticket.save(Path(out) / "ticket.safetensors")
    return ticket, result


def edge_popup_mask(model: nn.Module, data: DataSplits, cfg: EdgePopupConfig | None = None,
                    train_cfg: TrainConfig | None = None, out: str | Path | None = None, device=None,
                    progress: bool = True, names=None) -> tuple[Mask, dict]:
    """Edge-popup on any module's weights as they are (e.g. a planted problem's source): the mask
    found and the training result. The module is not changed (the search runs on a copy);
    ``cfg.weight_init`` / ``scale_fan`` do not apply (the weights are the module's), ``network_seed``
    draws the initial scores."""
    import copy

    cfg = cfg or EdgePopupConfig()
    train_cfg = train_cfg or PAPER_TRAINING
    net = copy.deepcopy(model)
    return _search(net, data, cfg, train_cfg, out, device, progress, names,
                   {"edge_popup": vars(cfg), "weights_sha256": state_sha256(model), "data": data.describe()})


def _search(model, data, cfg, train_cfg, out, device, progress, names, extra_hash) -> tuple[Mask, dict]:
    """Scores on ``model``'s frozen weights, trained; the top-k mask they end with."""
    names = attach(model, cfg.density, cfg.network_seed, names)
    result = train(model, data, train_cfg, out=out, device=device, progress=progress, extra_hash=extra_hash)
    return current_mask(model, names), result
