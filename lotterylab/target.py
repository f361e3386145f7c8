"""Read a target network into a chain of layers, with ``torch.fx``.

A fully connected target is any module whose forward is: optional flattening, then
``Linear -> activation -> Linear -> ... -> Linear`` (no activation after the last layer), where
dropout and identity may appear anywhere. The module is traced, not pattern-matched on its
class, so hand-written ``forward`` methods and functional activations work too. Anything else is
refused with the node's name and what is supported.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn


class UnsupportedTarget(ValueError):
    """The target network contains something the constructions do not handle."""


_ACT_MODULES = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.SiLU: "silu", nn.Identity: None}
_ACT_FUNCTIONS = {torch.relu: "relu", F.relu: "relu", torch.tanh: "tanh", torch.sigmoid: "sigmoid", F.silu: "silu",
                  F.gelu: "gelu", F.elu: "elu", F.softplus: "softplus", F.leaky_relu: "leaky_relu",
                  torch.nn.functional.tanh: "tanh", torch.nn.functional.sigmoid: "sigmoid"}
_ACT_METHODS = {"relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid"}
_PASS_MODULES = (nn.Dropout, nn.Identity, nn.Flatten)
SUPPORTED = ("nn.Linear; activations ReLU, LeakyReLU, Tanh, Sigmoid, GELU (exact), SiLU, ELU (alpha=1), "
             "Softplus (beta=1) as modules or functions; Flatten / flatten / view(B, -1) before the first "
             "Linear; Dropout and Identity anywhere")


@dataclass
class TargetMLP:
    """Weights ``[out, in]`` and biases of each layer (float64), the activation after each hidden layer."""

    weights: list[torch.Tensor]
    biases: list[torch.Tensor]
    activations: list[str]  # len L - 1; names as in lotterylab.models.ACTIVATIONS ("leaky_relu:0.2" for slopes)
    input_shape: tuple = ()
    names: list[str] = field(default_factory=list)

    @property
    def depth(self) -> int:
        return len(self.weights)

    @property
    def widths(self) -> list[int]:
        return [self.weights[0].shape[1]] + [w.shape[0] for w in self.weights]

    def num_parameters(self) -> int:
        return sum(w.numel() + b.numel() for w, b in zip(self.weights, self.biases))

    def forward(self, x: torch.Tensor, upto: int | None = None) -> list[torch.Tensor]:
        """Post-activation outputs of every layer (the last one linear), float64."""
        from .models import make_activation

        h = x.reshape(x.shape[0], -1).to(torch.float64)
        outs = []
        for k, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = h @ w.T + b
            if k < self.depth - 1:
                h = make_activation(self.activations[k]).double()(h)
            outs.append(h)
            if upto is not None and k + 1 >= upto:
                break
        return outs


def _activation_of_module(m: nn.Module) -> str | None | bool:
    """Activation name, None for identity, False if not an activation."""
    if isinstance(m, nn.LeakyReLU):
        return f"leaky_relu:{m.negative_slope}" if m.negative_slope != 0.01 else "leaky_relu"
    if isinstance(m, nn.GELU):
        if m.approximate != "none":
            raise UnsupportedTarget(f"GELU(approximate={m.approximate!r}) is not supported; use the exact GELU")
        return "gelu"
    if isinstance(m, nn.ELU):
        if m.alpha != 1.0:
            raise UnsupportedTarget(f"ELU(alpha={m.alpha}) is not supported; only alpha=1")
        return "elu"
    if isinstance(m, nn.Softplus):
        if m.beta != 1.0:
            raise UnsupportedTarget(f"Softplus(beta={m.beta}) is not supported; only beta=1")
        return "softplus"
    for cls, name in _ACT_MODULES.items():
        if type(m) is cls:
            return name
    return False


def read_mlp(target: nn.Module) -> TargetMLP:
    """Trace ``target`` and return its layers; raises :class:`UnsupportedTarget` naming the node."""
    if not isinstance(target, nn.Module):
        raise UnsupportedTarget(f"target must be an nn.Module, got {type(target).__name__}")
    try:
        gm = fx.symbolic_trace(target)
    except Exception as e:  # noqa: BLE001 - fx raises many kinds; all mean "not traceable"
        raise UnsupportedTarget(f"cannot trace the target with torch.fx ({type(e).__name__}: {e}); its forward must "
                                f"be a plain chain of supported layers: {SUPPORTED}") from None
    modules = dict(gm.named_modules())
    linears: list[nn.Linear] = []
    names: list[str] = []
    acts: list[str | None] = []  # activation after each linear (None = none yet)
    seen_input = False
    for node in gm.graph.nodes:
        what = None  # "linear", an activation name, "pass", or "flatten"
        if node.op == "placeholder":
            if seen_input:
                raise UnsupportedTarget(f"node {node.name!r}: the target takes more than one input")
            seen_input = True
            continue
        if node.op == "output":
            continue
        if node.op == "call_module":
            m = modules[node.target]
            if isinstance(m, nn.Linear):
                what = "linear"
            elif isinstance(m, _PASS_MODULES):
                what = "flatten" if isinstance(m, nn.Flatten) else "pass"
            else:
                a = _activation_of_module(m)
                if a is False:
                    raise UnsupportedTarget(f"module {node.target!r} ({type(m).__name__}) is not supported; "
                                            f"supported: {SUPPORTED}")
                what = a or "pass"
        elif node.op == "call_function":
            if node.target in (torch.flatten,):
                what = "flatten"
            elif node.target is F.dropout:
                what = "pass"
            elif node.target in _ACT_FUNCTIONS:
                what = _ACT_FUNCTIONS[node.target]
                if what == "leaky_relu":
                    slope = node.kwargs.get("negative_slope", node.args[1] if len(node.args) > 1 else 0.01)
                    what = "leaky_relu" if slope == 0.01 else f"leaky_relu:{slope}"
                if what in ("gelu",) and node.kwargs.get("approximate", "none") != "none":
                    raise UnsupportedTarget(f"node {node.name!r}: tanh-approximate GELU is not supported")
            elif node.target in (operator.add, operator.mul, torch.add, torch.cat, torch.matmul):
                raise UnsupportedTarget(f"node {node.name!r} ({getattr(node.target, '__name__', node.target)}): "
                                        f"a fully connected target is a plain chain; residual additions and other "
                                        f"operations are not supported here. Supported: {SUPPORTED}")
            else:
                raise UnsupportedTarget(f"node {node.name!r} calls {getattr(node.target, '__name__', node.target)}, "
                                        f"which is not supported; supported: {SUPPORTED}")
        elif node.op == "call_method":
            if node.target in ("flatten", "view", "reshape") and not linears:
                what = "flatten"
            elif node.target in _ACT_METHODS:
                what = _ACT_METHODS[node.target]
            else:
                raise UnsupportedTarget(f"node {node.name!r}: method .{node.target}() is not supported; "
                                        f"supported: {SUPPORTED}")
        else:
            raise UnsupportedTarget(f"node {node.name!r} ({node.op}) is not supported; supported: {SUPPORTED}")

        if what == "linear":
            if linears and acts[-1] is None:
                raise UnsupportedTarget(f"module {node.target!r}: two Linear layers without an activation between "
                                        f"them; merge them into one Linear first")
            linears.append(modules[node.target])
            names.append(node.target)
            acts.append(None)
        elif what == "flatten":
            if linears:
                raise UnsupportedTarget(f"node {node.name!r}: flattening is only supported before the first Linear")
        elif what != "pass":
            if not linears:
                raise UnsupportedTarget(f"node {node.name!r}: activation {what} before the first Linear layer")
            if acts[-1] is not None:
                raise UnsupportedTarget(f"node {node.name!r}: two activations in a row after {names[-1]!r}")
            acts[-1] = what
    if not linears:
        raise UnsupportedTarget(f"the target has no nn.Linear layer; supported: {SUPPORTED}")
    if acts[-1] is not None:
        raise UnsupportedTarget(f"the last layer {names[-1]!r} is followed by activation {acts[-1]}; the last "
                                f"layer must be linear (drop the final activation, e.g. softmax goes in the loss)")
    missing = [n for n, a in zip(names[:-1], acts[:-1]) if a is None]
    if missing:  # unreachable given the checks above, kept as a guard
        raise UnsupportedTarget(f"layers {missing} have no activation after them")
    weights, biases = [], []
    for name, lin in zip(names, linears):
        w = lin.weight.detach().to("cpu", torch.float64)
        b = lin.bias.detach().to("cpu", torch.float64) if lin.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
        if not (torch.isfinite(w).all() and torch.isfinite(b).all()):
            raise UnsupportedTarget(f"layer {name!r} has non-finite weights or biases (NaN or inf); fix the target first")
        weights.append(w)
        biases.append(b)
    for k in range(1, len(weights)):
        if weights[k].shape[1] != weights[k - 1].shape[0]:
            raise UnsupportedTarget(f"layer {names[k]!r} expects {weights[k].shape[1]} inputs but {names[k - 1]!r} "
                                    f"gives {weights[k - 1].shape[0]}")
    return TargetMLP(weights, biases, [a for a in acts[:-1]], names=names)
