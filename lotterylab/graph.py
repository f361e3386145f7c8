"""One network representation: a graph of weight layers that the target readers produce
(:mod:`lotterylab.target`) and the constructions, certificates and refinements read."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from . import activations as acts_mod
from .activations import make_activation
from .models import apply_op


class UnsupportedTarget(ValueError):
    """The target network contains something the constructions do not handle."""


@dataclass
class LayerGraph:
    """A network as a graph of weight layers: weights ``[out, in]`` or ``[out, in, kh, kw]`` and
    biases (float64), the activation after each hidden layer, and per layer (convolutional and
    residual graphs) its geometry: kind, kernel, stride, padding, input shape, the layer it reads
    (``"input"``, default the one before; -1 the network input), a residual addition
    (``"add": {"from": j}``) and parameter-free ops after the activation (``"post"``)."""

    weights: list[torch.Tensor]
    biases: list[torch.Tensor]
    activations: list[str]  # len L - 1; names as in lotterylab.models.ACTIVATIONS ("leaky_relu:0.2" for slopes)
    input_shape: tuple = ()
    names: list[str] = field(default_factory=list)
    # convolutional chains (read_net): per layer kind/kernel/stride/padding/in_shape/post ops; [] = Linear chain
    geometry: list[dict] = field(default_factory=list)

    def w3(self, k: int) -> torch.Tensor:
        """Layer k's weights as ``[out, in, taps]`` (taps = kernel positions; 1 for a Linear on a vector)."""
        w = self.weights[k]
        return w.reshape(w.shape[0], w.shape[1], -1)

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
        if self.geometry:
            h = x.reshape(x.shape[0], *self.input_shape).to(torch.float64)
        else:
            h = x.reshape(x.shape[0], -1).to(torch.float64)
        x0 = h
        outs = []  # each layer's output: after its activation and post ops (a shortcut layer: linear)
        for k, (w, b) in enumerate(zip(self.weights, self.biases)):
            geo = self.geometry[k] if self.geometry else None
            if geo is not None:
                src = geo.get("input", k - 1)
                h = x0 if src < 0 else outs[src]
            if geo is not None and w.dim() == 4 and geo["kind"] == "conv":
                h = F.conv2d(h, w, b, geo["stride"], geo["padding"])
            else:
                h = h.reshape(h.shape[0], -1) @ w.reshape(w.shape[0], -1).T + b
            add = (geo or {}).get("add")
            if add is not None:
                h = h + (x0 if add["from"] < 0 else outs[add["from"]])
            if k < self.depth - 1 and self.activations[k] is not None:
                h = make_activation(self.activations[k]).double()(h)
                for op in (geo or {}).get("post", []):
                    h = apply_op(op, h)
            outs.append(h)
            if upto is not None and k + 1 >= upto:
                break
        return outs

    def input_of(self, k: int) -> int:
        """The layer whose output layer k reads (-1: the network input)."""
        return self.geometry[k].get("input", k - 1) if self.geometry else k - 1

    def add_of(self, k: int) -> dict | None:
        """Residual addition before layer k's activation: {"kind": "identity" | "layer", "from": j}."""
        return self.geometry[k].get("add") if self.geometry else None

    def bounds(self, lo: torch.Tensor, hi: torch.Tensor) -> list[torch.Tensor]:
        """|h| bounds of every layer's input (per unit / channel) over the box [lo, hi], by interval arithmetic."""
        out = {-1: (lo, hi)}  # each layer's output box (after activation and pooling; a shortcut: linear)
        H = []
        for k in range(self.depth):
            zlo, zhi = out[self.input_of(k)]
            H.append(torch.maximum(zlo.abs(), zhi.abs()))
            if k == self.depth - 1:
                break
            W, b = self.w3(k), self.biases[k]
            if self.geometry and max(self.geometry[k]["padding"]) > 0:  # zero padding: 0 is among the inputs
                zlo, zhi = zlo.clamp(max=0), zhi.clamp(min=0)
            # per unit (channel) bounds: every tap of the kernel may see any value of its channel
            Wp, Wn = W.clamp(min=0).sum(2), W.clamp(max=0).sum(2)
            lo2 = Wp @ zlo + Wn @ zhi + b
            hi2 = Wp @ zhi + Wn @ zlo + b
            add = self.add_of(k)
            if add is not None:  # a residual branch adds its own box
                alo, ahi = out[add["from"]]
                lo2, hi2 = lo2 + alo, hi2 + ahi
            act = acts_mod.get(self.activations[k] or "identity")
            f = act.module()
            # the box of phi(z) (monotone activations; GELU / SiLU: their minimum when inside)
            a_lo, a_hi = f(lo2), f(hi2)
            if act.minimum is not None:
                inside = (lo2 <= act.minimum[0]) & (hi2 >= act.minimum[0])
                a_lo = torch.where(inside, torch.full_like(a_lo, act.minimum[1]), torch.minimum(a_lo, a_hi))
            zlo, zhi = torch.minimum(a_lo, a_hi), torch.maximum(a_lo, a_hi)
            for op in (self.geometry[k]["post"] if self.geometry else []):  # max/avg pooling keeps values in the box,
                if op["op"] == "avgpool2d" and max(op["padding"]) > 0 and op.get("count_include_pad", True):
                    zlo, zhi = zlo.clamp(max=0), zhi.clamp(min=0)  # unless padded zeros are averaged in
            out[k] = (zlo, zhi)
        return H

    def plan(self) -> list[dict]:
        """The graph as ops for :class:`lotterylab.models.SourceNet` (weight layers ``layers.<k>`` in order)."""
        plan: list[dict] = []
        end = {-1: -1}  # layer -> plan position of its output (after activation and post ops)
        for k, w in enumerate(self.weights):
            geo = self.geometry[k] if self.geometry else {}
            if w.dim() == 4 and geo.get("kind") == "conv":
                plan.append({"op": "conv", "in": w.shape[1], "out": w.shape[0], "kernel": list(w.shape[2:]),
                             "stride": list(geo["stride"]), "padding": list(geo["padding"])})
            else:
                plan.append({"op": "linear", "in": w[0].numel(), "out": w.shape[0]})
            if end[self.input_of(k)] != len(plan) - 2:
                plan[-1]["input"] = end[self.input_of(k)]
            if self.add_of(k) is not None:
                plan[-1]["add"] = end[self.add_of(k)["from"]]
            if k < self.depth - 1 and self.activations[k] is not None:
                plan.append({"op": "act", "name": self.activations[k]})
                plan.extend(dict(op) for op in geo.get("post", []))
            end[k] = len(plan) - 1
        return plan

    def to_module(self, dtype=torch.float64) -> nn.Module:
        """A real PyTorch module computing this graph (weights copied), e.g. a read target rebuilt."""
        from .models import SourceNet

        if not self.geometry:  # a Linear chain: the plain Sequential every reader and user knows
            mods: list[nn.Module] = [nn.Flatten()]
            for k, w in enumerate(self.weights):
                mods.append(nn.Linear(w.shape[1], w.shape[0]))
                if k < self.depth - 1 and self.activations[k] is not None:
                    mods.append(make_activation(self.activations[k]))
            net = nn.Sequential(*mods).to(dtype)
            layers = [m for m in net if isinstance(m, nn.Linear)]
        else:
            net = SourceNet(self.plan(), tuple(self.input_shape)).to(dtype)
            layers = list(net.layers)
        with torch.no_grad():
            for layer, w, b in zip(layers, self.weights, self.biases):
                layer.weight.copy_(w.reshape(layer.weight.shape))
                layer.bias.copy_(b)
        return net.eval()

    def to_sequential(self, dtype=torch.float32) -> nn.Sequential:
        """A chain as a plain ``nn.Sequential``: ``Flatten, Linear, act, ..., Linear``, or for a
        convolutional chain ``reshape, Conv2d, act, [pooling], ..., Flatten, Linear, ...`` (the form
        greedy forward selection prunes layer by layer). Residual graphs are refused."""
        if self.geometry:
            if any(g.get("add") is not None or g.get("input", k - 1) != k - 1 for k, g in enumerate(self.geometry)):
                raise UnsupportedTarget("GFS prunes chains: this model has residual additions or branches")
            layers: list[nn.Module] = [ChainOp({"op": "reshape", "shape": list(self.input_shape)})]
            flat = False
        else:
            layers, flat = [nn.Flatten()], True
        for k, (w, b, g) in enumerate(zip(self.weights, self.biases, self.geometry or [{}] * self.depth)):
            if w.dim() == 4 and not flat:
                m = nn.Conv2d(w.shape[1], w.shape[0], tuple(w.shape[2:]), tuple(g["stride"]), tuple(g["padding"]))
            else:
                if not flat:
                    layers.append(nn.Flatten())
                    flat = True
                w = w.reshape(w.shape[0], -1)
                m = nn.Linear(w.shape[1], w.shape[0])
            with torch.no_grad():
                m.weight.copy_(w.to(dtype))
                m.bias.copy_(b.to(dtype))
            layers.append(m)
            if k < self.depth - 1:
                layers.append(make_activation(self.activations[k]))
                layers.extend(ChainOp(op) for op in g.get("post", []) if op["op"] != "flatten")
        if not flat:
            layers.append(nn.Flatten())
        return nn.Sequential(*layers).to(dtype)


class ChainOp(nn.Module):
    """A parameter-free op of a chain (pooling; ``reshape`` to the input's image shape) as a module."""

    def __init__(self, op: dict):
        super().__init__()
        self.op = dict(op)

    def forward(self, x):
        if self.op["op"] == "reshape":  # inputs as images, whether given flat or [N, C, H, W]
            return x.reshape(x.shape[0], *self.op["shape"])
        return apply_op(self.op, x)
