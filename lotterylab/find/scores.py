"""From scores to masks: the one place every finder turns "how important is each weight" into a
:class:`~lotterylab.masks.Mask` of a requested density.

* ``global`` scope ranks all prunable weights together; ``layerwise`` gives each layer its own
  density, either one rate for all (IMP's 20 % / 10 %) or from a per-layer allocation:
  ``uniform``, ``er`` (Erdős–Rényi: proportional to (n_in + n_out) / (n_in · n_out)) or ``erk``
  (the same with kernel sizes, Evci et al. 2020).
* Only entries the current mask keeps compete; ties are broken by position (stable sort), so the
  same scores always give the same mask.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from .. import rng
from ..masks import Mask, default_prunable


def prunable(model: nn.Module, names=None) -> list[str]:
    return list(names) if names is not None else default_prunable(model)


def _keep_top(score: torch.Tensor, allowed: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask with the k highest scores among ``allowed`` entries (ties: lower index wins)."""
    flat = torch.where(allowed.reshape(-1), score.reshape(-1).double(), torch.tensor(-math.inf, dtype=torch.float64,
                                                                                    device=score.device))
    order = torch.sort(flat, descending=True, stable=True).indices[:k]
    out = torch.zeros(flat.numel(), dtype=torch.bool, device=score.device)
    out[order] = True
    return out.reshape(score.shape)


def layer_densities(shapes: Mapping[str, torch.Size], density: float, scheme: str = "uniform") -> dict[str, float]:
    """Per-layer densities with the given overall density (by weight count).

    ``er``/``erk`` scale each layer by its Erdős–Rényi factor; layers whose density would exceed 1
    are kept dense and the rest rescaled (the iterative fix of Evci et al.).
    """
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density must be in (0, 1], got {density}")
    sizes = {n: math.prod(s) for n, s in shapes.items()}
    if scheme == "uniform":
        return {n: density for n in shapes}
    if scheme not in ("er", "erk"):
        raise ValueError(f"unknown per-layer density scheme {scheme!r}; use uniform, er or erk")

    def factor(s):
        dims = list(s) if scheme == "erk" else list(s[:2])
        return sum(dims) / math.prod(dims)

    raw = {n: factor(s) for n, s in shapes.items()}
    total = sum(sizes.values())
    dense: set[str] = set()
    while True:
        budget = density * total - sum(sizes[n] for n in dense)
        rest = sum(raw[n] * sizes[n] for n in shapes if n not in dense)
        eps = budget / rest if rest > 0 else 0.0
        over = {n for n in shapes if n not in dense and eps * raw[n] > 1.0}
        if not over:
            return {n: 1.0 if n in dense else eps * raw[n] for n in shapes}
        dense |= over


def mask_from_scores(scores: Mapping[str, torch.Tensor], density: float | Mapping[str, float],
                     scope: str = "global", current: Mask | None = None) -> Mask:
    """Keep the highest scores: ``density`` of all entries (global) or per layer (a dict or one
    float for every layer). ``density`` counts against the full layer sizes, not the current mask."""
    names = list(scores)
    current = current or Mask({n: torch.ones_like(scores[n], dtype=torch.bool) for n in names})
    sizes = {n: scores[n].numel() for n in names}
    if scope == "global":
        if not isinstance(density, (int, float)):
            raise ValueError("global scope takes one density for the whole network")
        if not 0.0 <= density <= 1.0:
            raise ValueError(f"density must be in [0, 1], got {density}")
        k = round(density * sum(sizes.values()))
        flat = torch.cat([scores[n].reshape(-1).double() for n in names])
        allowed = torch.cat([current[n].reshape(-1).to(flat.device) for n in names])
        keep = _keep_top(flat, allowed, k)
        out, i = Mask(), 0
        for n in names:
            out[n] = keep[i:i + sizes[n]].reshape(scores[n].shape).to(scores[n].device)
            i += sizes[n]
        return out
    if scope != "layerwise":
        raise ValueError(f"unknown scope {scope!r}; use global or layerwise")
    dens = density if isinstance(density, Mapping) else {n: float(density) for n in names}
    return Mask({n: _keep_top(scores[n], current[n].to(scores[n].device), round(dens[n] * sizes[n])) for n in names})


def random_scores(shapes: Mapping[str, torch.Size], seed: int, device=None) -> dict[str, torch.Tensor]:
    """i.i.d. scores from the counter-based generator (random pruning, shuffles), one stream per layer."""
    return {n: rng.uniform(seed, rng.stream_id("score." + n), tuple(s), 0.0, 1.0, device) for n, s in shapes.items()}


def shuffle_within_layers(mask: Mask, seed: int) -> Mask:
    """Same per-layer densities, positions permuted at random (the sanity-check ablation)."""
    out = Mask()
    for n, m in mask.items():
        keys = rng.uniform(seed, rng.stream_id("shuffle." + n), (m.numel(),), 0.0, 1.0, m.device)
        out[n] = m.reshape(-1)[torch.sort(keys, stable=True).indices].reshape(m.shape)
    return out


def collapsed_layers(mask: Mask) -> list[str]:
    """Layers with no weight left: the network computes a constant from there on."""
    return [n for n, m in mask.items() if not bool(m.any())]


@torch.no_grad()
def connected_paths(model: nn.Module, mask: Mask, input_shape) -> float:
    """Number of input-to-output paths through kept weights (SynFlow's R on the mask alone).

    0 means the mask disconnects the network even if no layer is completely empty.
    """
    import copy

    probe = copy.deepcopy(model).double().eval()
    params = dict(probe.named_parameters())
    for n, p in params.items():
        p.copy_(mask[n].to(p.device, torch.float64) if n in mask else (p != 0).double() if p.dim() > 1 else
                torch.zeros_like(p))
    for m in probe.modules():  # BN as identity: only the wiring counts
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.zero_()
            m.running_var.fill_(1.0)
            m.eps = 0.0
            if m.weight is not None:
                m.weight.fill_(1.0)
    x = torch.ones(1, *input_shape, dtype=torch.float64, device=next(probe.parameters()).device)
    return float(probe(x).sum())
