"""Initialisation specs: which distribution each parameter is drawn from, as JSON-able data.

A spec is resolved against a model into one concrete distribution per parameter (a
``{"dist": ..., ...}`` dict with numbers only); ``draw`` then produces the values with the
counter-based generator of :mod:`lotterylab.rng`, so ``(seed, spec, shapes)`` fully determines a
network. The resolved form is what ticket files store.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from . import rng

SCHEMES = (
    "uniform",          # U[low, high] (default [-1, 1]; the strong-ticket papers' source)
    "normal",           # N(mean, std)
    "constant",         # every entry = value
    "zeros",
    "ones",
    "glorot_normal",    # Frankle & Carbin's "Glorot init": N(0, 2 / (fan_in + fan_out))
    "glorot_uniform",
    "kaiming_normal",   # N(0, 2 / fan_in) (ReLU gain)
    "kaiming_uniform",
    "signed_constant",  # +-sqrt(2 / fan_in) with a random sign (edge-popup)
)


def fans(shape) -> tuple[int, int]:
    """(fan_in, fan_out) with torch's convention for Linear / ConvNd weights."""
    if len(shape) < 2:
        raise ValueError(f"fan-based init needs a weight of >= 2 dims, got shape {tuple(shape)}")
    receptive = math.prod(shape[2:]) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def resolve(rule, shape) -> dict:
    """Turn a scheme name or dict into a concrete distribution for a tensor of ``shape``."""
    if isinstance(rule, str):
        rule = {"dist": rule}
    if not isinstance(rule, dict) or "dist" not in rule:
        raise ValueError(f"init rule must be a scheme name or a dict with 'dist', got {rule!r}")
    d = rule["dist"]
    if d not in SCHEMES:
        raise ValueError(f"unknown init scheme {d!r}; supported: {', '.join(SCHEMES)}")
    scale = float(rule.get("scale", 1.0))
    if d == "uniform":
        out = {"dist": "uniform", "low": float(rule.get("low", -1.0)) * scale, "high": float(rule.get("high", 1.0)) * scale}
        if rule.get("address", "flat") != "flat":  # "grid": entry (r, c) at index r * 2**24 + c, see rng.uniform_grid
            out["address"] = str(rule["address"])
        return out
    if d == "normal":
        out = {"dist": "normal", "mean": float(rule.get("mean", 0.0)), "std": float(rule.get("std", 1.0)) * scale}
        if rule.get("address", "flat") != "flat":  # "grid": see rng.normal_grid
            out["address"] = str(rule["address"])
        return out
    if d in ("zeros", "ones", "constant"):
        value = {"zeros": 0.0, "ones": 1.0}.get(d, float(rule.get("value", 0.0)))
        return {"dist": "constant", "value": value * scale}
    if d == "signed_constant" and "value" in rule:
        return {"dist": "signed_constant", "value": float(rule["value"])}
    fan_in, fan_out = fans(shape)
    if d == "glorot_normal":
        return {"dist": "normal", "mean": 0.0, "std": scale * math.sqrt(2.0 / (fan_in + fan_out))}
    if d == "glorot_uniform":
        a = scale * math.sqrt(6.0 / (fan_in + fan_out))
        return {"dist": "uniform", "low": -a, "high": a}
    if d == "kaiming_normal":
        return {"dist": "normal", "mean": 0.0, "std": scale * math.sqrt(2.0 / fan_in)}
    if d == "kaiming_uniform":
        a = scale * math.sqrt(6.0 / fan_in)
        return {"dist": "uniform", "low": -a, "high": a}
    return {"dist": "signed_constant", "value": scale * math.sqrt(2.0 / fan_in)}


def draw(dist: dict, shape, seed: int, name: str, device=None) -> torch.Tensor:
    """Values of one parameter; the stream is the parameter's name, so layers are independent."""
    s = rng.stream_id(name)
    kind = dist["dist"]
    if kind == "uniform":
        if dist.get("address") == "grid":
            return rng.uniform_grid(seed, s, shape, dist["low"], dist["high"], device)
        return rng.uniform(seed, s, shape, dist["low"], dist["high"], device)
    if kind == "normal":
        if dist.get("address") == "grid":
            return rng.normal_grid(seed, s, shape, dist["mean"], dist["std"], device)
        return rng.normal(seed, s, shape, dist["mean"], dist["std"], device)
    if kind == "constant":
        return torch.full(tuple(shape), dist["value"], dtype=torch.float32, device=device)
    if kind == "signed_constant":
        signs = rng.uniform(seed, s, shape, -1.0, 1.0, device) >= 0
        return torch.where(signs, dist["value"], -dist["value"]).to(torch.float32)
    raise ValueError(f"unknown resolved distribution {kind!r}")


@dataclass
class InitSpec:
    """How to draw a network: a rule for weights (>= 2-dim), one for biases, one for norm layers.

    ``overrides`` maps a parameter name (as in ``state_dict``) to its own rule.
    """

    weight: str | dict = "kaiming_normal"
    bias: str | dict = "zeros"
    norm_weight: str | dict = "ones"
    norm_bias: str | dict = "zeros"
    overrides: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> InitSpec:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown InitSpec fields {sorted(unknown)}")
        return cls(**d)

    def rule_for(self, name: str, param: torch.Tensor, module: nn.Module) -> str | dict:
        if name in self.overrides:
            return self.overrides[name]
        is_norm = isinstance(module, (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm))
        leaf = name.rsplit(".", 1)[-1]
        if is_norm:
            return self.norm_weight if leaf == "weight" else self.norm_bias
        return self.weight if param.dim() >= 2 else self.bias

    def resolve(self, model: nn.Module) -> dict[str, dict]:
        """Concrete distribution of every parameter of ``model``, keyed by parameter name."""
        unknown = set(self.overrides) - {n for n, _ in model.named_parameters()}
        if unknown:
            raise ValueError(f"InitSpec overrides name parameters the model lacks: {sorted(unknown)}")
        out = {}
        for mod_name, module in model.named_modules():
            for leaf, p in module.named_parameters(recurse=False):
                name = f"{mod_name}.{leaf}" if mod_name else leaf
                out[name] = resolve(self.rule_for(name, p, module), p.shape)
        return out


def initialize(model: nn.Module, spec: InitSpec | dict | str, seed: int) -> dict[str, dict]:
    """Overwrite every parameter of ``model`` from ``(spec, seed)``; returns the resolved spec.

    A plain string sets the weight scheme (e.g. ``"glorot_normal"``) with zero biases.
    """
    if isinstance(spec, str):
        spec = InitSpec(weight=spec)
    elif isinstance(spec, dict):
        spec = InitSpec.from_dict(spec)
    resolved = spec.resolve(model)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, dist in resolved.items():
            p = params[name]
            p.copy_(draw(dist, p.shape, seed, name, device=p.device))
    return resolved
