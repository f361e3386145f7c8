"""Pruning at initialisation: SNIP (Lee et al. 2019), GraSP (Wang et al. 2020), SynFlow (Tanaka et
al. 2020), magnitude, and random pruning with uniform / ER / ERK per-layer densities; plus the
sanity-check ablations of Frankle et al. 2021 (shuffle within layer, re-initialise, invert).

Every method scores the prunable weights (Linear and Conv weights by default) and keeps the
highest scores, globally or per layer (:mod:`.scores`); the result is a :class:`Mask` to train with
:func:`lotterylab.training.train`. The model is never modified.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from .. import models
from ..data import DataSplits
from ..masks import Mask
from ..training import epoch_order, task_loss
from .scores import layer_densities, mask_from_scores, prunable, random_scores, shuffle_within_layers

METHODS = ("snip", "grasp", "synflow", "magnitude", "random")
ABLATIONS = ("none", "shuffle", "reinit", "invert")


@dataclass
class PaIConfig:
    method: str = field(default="snip", metadata={"help": "snip, grasp, synflow, magnitude or random",
                                                   "choices": list(METHODS)})
    density: float = field(default=0.1, metadata={"help": "fraction of prunable weights kept", "check": "density"})
    scope: str = field(default="global", metadata={"help": "global ranking or per-layer densities",
                                                    "choices": ["global", "layerwise"]})
    layer_density: str = field(default="uniform", metadata={"help": "per-layer densities (layerwise scope, random)",
                                                             "choices": ["uniform", "er", "erk"]})
    batches: int = field(default=10, metadata={"help": "data batches scored (SNIP, GraSP)", "check": "positive"})
    score_batch_size: int = field(default=128, metadata={"help": "examples per scoring batch", "check": "positive"})
    synflow_iterations: int = field(default=100, metadata={"help": "SynFlow pruning iterations (exponential schedule)",
                                                               "check": "positive"})
    grasp_temperature: float = field(default=200.0, metadata={"help": "GraSP's softmax temperature", "check": "positive"})
    ablation: str = field(default="none", metadata={"help": "none, shuffle, reinit or invert", "choices": list(ABLATIONS)})
    score_seed: int = field(default=0, metadata={"help": "seed of the scoring batches, random scores and ablations",
                                                          "check": "nonneg"})


def _batches(data: DataSplits, cfg: PaIConfig, device):
    order = epoch_order(cfg.score_seed, 0, len(data.train), data.train.x.device)
    for b in range(cfg.batches):
        idx = order[b * cfg.score_batch_size:(b + 1) * cfg.score_batch_size]
        if len(idx) == 0:
            break
        yield data.train.x[idx].to(device), data.train.y[idx].to(device)


def _masked_copy(model: nn.Module, mask: Mask | None) -> nn.Module:
    net = copy.deepcopy(model)
    if mask is not None:
        mask.apply(net)
    return net


def snip_scores(model: nn.Module, data: DataSplits, names, cfg: PaIConfig, mask: Mask | None = None) -> dict:
    """|w * dL/dw| (connection sensitivity), gradients summed over the scoring batches."""
    net = _masked_copy(model, mask).train()
    params = dict(net.named_parameters())
    weights = [params[n] for n in names]
    device = weights[0].device
    grads = [torch.zeros_like(w) for w in weights]
    for x, y in _batches(data, cfg, device):
        g = torch.autograd.grad(task_loss(net(x), y), weights)
        torch._foreach_add_(grads, g)
    return {n: (w.detach() * g).abs() for n, w, g in zip(names, weights, grads)}


def _tempered(out: torch.Tensor, y: torch.Tensor, t: float) -> torch.Tensor:
    """GraSP's loss: cross-entropy of the logits over a temperature; a regression task's own loss
    (a temperature means nothing for squared error)."""
    return task_loss(out / t if not y.is_floating_point() else out, y)


def grasp_scores(model: nn.Module, data: DataSplits, names, cfg: PaIConfig, mask: Mask | None = None) -> dict:
    """w * Hg: the weights whose removal least reduces the gradient flow score high (kept)."""
    net = _masked_copy(model, mask).train()
    params = dict(net.named_parameters())
    weights = [params[n] for n in names]
    device = weights[0].device
    t = cfg.grasp_temperature
    g_acc = [torch.zeros_like(w) for w in weights]
    for x, y in _batches(data, cfg, device):
        g = torch.autograd.grad(_tempered(net(x), y, t), weights)
        torch._foreach_add_(g_acc, g)
    hg = [torch.zeros_like(w) for w in weights]
    for x, y in _batches(data, cfg, device):
        g = torch.autograd.grad(_tempered(net(x), y, t), weights, create_graph=True)
        z = sum((gi * ga).sum() for gi, ga in zip(g, g_acc))
        torch._foreach_add_(hg, torch.autograd.grad(z, weights))
    return {n: w.detach() * h for n, w, h in zip(names, weights, hg)}


def magnitude_scores(model: nn.Module, names) -> dict:
    params = dict(model.named_parameters())
    return {n: params[n].detach().abs() for n in names}


def _synflow_net(model: nn.Module) -> nn.Module:
    net = copy.deepcopy(model).double().eval()  # float64: R grows like the product of layer norms
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    return net


def synflow_scores(net: nn.Module, names, input_shape, mask: Mask | None = None, originals=None) -> dict:
    """|w * dR/dw| with R = sum of the outputs of the |w| network on an all-ones input."""
    params = dict(net.named_parameters())
    if mask is not None:
        with torch.no_grad():
            for n in names:
                params[n].copy_(originals[n] * mask[n])
    weights = [params[n] for n in names]
    x = torch.ones(1, *input_shape, dtype=torch.float64, device=weights[0].device)
    grads = torch.autograd.grad(net(x).sum(), weights)
    return {n: (w.detach() * g).abs() for n, w, g in zip(names, weights, grads)}


def synflow(model: nn.Module, names, density: float, input_shape, iterations: int = 100, scope: str = "global",
            mask: Mask | None = None) -> Mask:
    """Iterative synaptic flow pruning, no data: score with :func:`synflow_scores` and prune to
    ``density ** (k / iterations)`` at step k (BatchNorm in eval mode)."""
    net = _synflow_net(model)
    params = dict(net.named_parameters())
    current = mask or Mask({n: torch.ones_like(params[n], dtype=torch.bool) for n in names})
    originals = {n: params[n].detach().clone() for n in names}
    for k in range(1, iterations + 1):
        scores = synflow_scores(net, names, input_shape, current, originals)
        d_k = density ** (k / iterations)
        current = mask_from_scores(scores, d_k if scope == "global" else {n: d_k for n in names}, scope, current)
    return Mask({n: m.to(params[n].device) for n, m in current.items()})


def scores_for(model: nn.Module, data: DataSplits | None, cfg: PaIConfig, names) -> dict:
    if cfg.method == "snip":
        return snip_scores(model, _need(data, "snip"), names, cfg)
    if cfg.method == "grasp":
        return grasp_scores(model, _need(data, "grasp"), names, cfg)
    if cfg.method == "magnitude":
        return magnitude_scores(model, names)
    if cfg.method == "random":
        params = dict(model.named_parameters())
        return random_scores({n: params[n].shape for n in names}, cfg.score_seed, params[names[0]].device)
    raise ValueError(f"unknown pruning-at-init method {cfg.method!r}; use one of {', '.join(METHODS)}")


def _need(data, method):
    if data is None:
        raise ValueError(f"{method} scores weights on training data; pass data=lotterylab.data.load(...)")
    return data


def prune_at_init(model: nn.Module, data: DataSplits | None = None, cfg: PaIConfig | None = None,
                  names=None, input_shape=None) -> Mask:
    """The mask of ``cfg.method`` at ``cfg.density``, with ``shuffle`` / ``invert`` applied
    (``reinit`` changes the weights, not the mask: train the mask on :func:`ablate`'s model)."""
    cfg = cfg or PaIConfig()
    if not 0.0 < cfg.density <= 1.0:
        raise ValueError(f"density must be in (0, 1], got {cfg.density}")
    if cfg.ablation not in ABLATIONS:
        raise ValueError(f"unknown ablation {cfg.ablation!r}; use one of {', '.join(ABLATIONS)}")
    names = prunable(model, names)
    params = dict(model.named_parameters())
    shapes = {n: params[n].shape for n in names}
    if cfg.method == "synflow":
        shape = input_shape or (data.input_shape if data is not None else
                                getattr(model, "lotterylab_arch", {}).get("input_shape"))
        if shape is None:
            raise ValueError("SynFlow needs the input shape: pass input_shape=(C, H, W) or data")
        mask = synflow(model, names, cfg.density, shape, cfg.synflow_iterations, cfg.scope)
        scores = None
    else:
        scores = scores_for(model, data, cfg, names)
        if cfg.method == "random" or cfg.scope == "layerwise":
            mask = mask_from_scores(scores, layer_densities(shapes, cfg.density, cfg.layer_density), "layerwise")
        else:
            mask = mask_from_scores(scores, cfg.density, "global")
    if cfg.ablation == "shuffle":
        mask = shuffle_within_layers(mask, cfg.score_seed + 1)
    elif cfg.ablation == "invert":
        if scores is None:  # SynFlow is iterative: invert its one-shot scores
            scores = synflow_scores(_synflow_net(model), names, shape)
        mask = mask_from_scores({n: -s for n, s in scores.items()},
                                {n: float(m.sum()) / m.numel() for n, m in mask.items()}, "layerwise")
    return mask


def ablate(model: nn.Module, mask: Mask, kind: str, seed: int = 1) -> tuple[nn.Module, Mask]:
    """Sanity-check ablations on a finished mask: ``shuffle`` (positions within each layer) or
    ``reinit`` (the same mask on weights re-drawn with ``seed``; needs a zoo model)."""
    if kind == "shuffle":
        return model, shuffle_within_layers(mask, seed)
    if kind == "reinit":
        arch = getattr(model, "lotterylab_arch", None)
        if arch is None:
            raise ValueError("reinit needs a zoo model (lotterylab.models.create) so it can be re-drawn")
        fresh = models.from_arch(arch, init=getattr(model, "lotterylab_init", None), seed=seed,
                                 device=next(model.parameters()).device)
        return fresh, mask
    raise ValueError(f"unknown ablation {kind!r}; use shuffle or reinit (invert: PaIConfig(ablation='invert'))")
