"""Compact convolutional and residual ticket networks (``source_net``): only the channels that a kept
path uses, built from the kept entries alone (see :mod:`lotterylab.compact`).

A channel is *needed* when a needed channel of a later layer keeps a weight from it (through
activations and pooling, which keep channels; a Linear layer over a flattened map reads every
position of a channel), or when it is added to a needed channel (a residual sum); the network's
outputs are all needed. Each weight layer keeps its needed output channels and reads every kept
channel of its input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .activations import make_activation
from .models import apply_op


def _shapes(plan: list[dict], input_shape) -> list[tuple[int, int]]:
    """(channels, positions per channel) of every plan position's output, on the meta device (no memory)."""
    x0 = torch.empty(1, *input_shape, device="meta")
    outs, shapes = [], []
    for i, op in enumerate(plan):
        if op["op"] in ("conv", "linear"):
            src = op.get("input", i - 1)
            h = x0 if src < 0 else outs[src]
            if op["op"] == "conv":
                w = torch.empty(op["out"], op["in"], *op["kernel"], device="meta")
                h = F.conv2d(h, w, None, op["stride"], op["padding"])
            else:
                h = torch.empty(1, op["out"], device="meta")
        else:
            h = outs[-1] if outs else x0
            h = h if op["op"] == "act" else apply_op(op, h)
        outs.append(h)
        # a flattened map keeps its channels (a Linear layer reading it reads them position by position)
        shapes.append(shapes[-1] if op["op"] == "flatten" and shapes else (h.shape[1], int(h[0, 0].numel())))
    return shapes


def _source(i: int, op: dict) -> int:
    return op.get("input", i - 1) if op["op"] in ("conv", "linear") else i - 1


def needed_channels(ticket) -> list[torch.Tensor]:
    """Per plan position, which output channels a kept path to the network's output uses."""
    plan, input_shape = ticket.arch["kwargs"]["plan"], ticket.arch["input_shape"]
    shapes = _shapes(plan, input_shape)
    need = [torch.zeros(c, dtype=torch.bool) for c, _ in shapes]
    need[-1][:] = True
    need_in = torch.zeros(int(input_shape[0]), dtype=torch.bool)
    layer = {i: k for k, i in enumerate(i for i, op in enumerate(plan) if op["op"] in ("conv", "linear"))}
    for i in range(len(plan) - 1, -1, -1):
        op, src = plan[i], _source(i, plan[i])
        into = need_in if src < 0 else need[src]
        if i in layer:
            M = ticket.masks[f"layers.{layer[i]}.weight"].bool()
            M = M[need[i]].reshape(int(need[i].sum()), len(into), -1)  # [rows, in channels, taps or positions]
            into |= M.any(2).any(0)
            if "add" in op:  # the added map's channel c is used where the sum's channel c is
                added = need_in if op["add"] < 0 else need[op["add"]]
                added |= need[i]
        else:
            into |= need[i]
    return need


class CompactNet(nn.Module):
    """The kept channels of a ``source_net`` ticket: dense convolutions and Linear layers in plan
    order, a residual addition selecting the added map's kept channels."""

    def __init__(self, plan: list[dict], input_shape, layers: list[nn.Module], adds: dict[int, torch.Tensor]):
        super().__init__()
        self.plan = [dict(op) for op in plan]
        self.input_shape = tuple(input_shape)
        self.layers = nn.ModuleList(layers)
        self.acts = nn.ModuleDict({str(i): make_activation(op["name"]) for i, op in enumerate(plan)
                                   if op["op"] == "act"})
        for i, sel in adds.items():
            self.register_buffer(f"add_{i}", sel)

    def forward(self, x):
        dtype = self.layers[0].weight.dtype
        x0 = x.reshape(x.shape[0], *self.input_shape).to(dtype)
        outs: list[torch.Tensor] = []
        k = 0
        for i, op in enumerate(self.plan):
            if op["op"] in ("conv", "linear"):
                src = op.get("input", i - 1)
                h = x0 if src < 0 else outs[src]
                if op["op"] == "linear":
                    h = h.reshape(h.shape[0], -1)
                h = self.layers[k](h)
                if "add" in op:
                    h = h + (x0 if op["add"] < 0 else outs[op["add"]]).index_select(1, getattr(self, f"add_{i}"))
                k += 1
            else:
                h = outs[-1] if outs else x0
                h = self.acts[str(i)](h) if op["op"] == "act" else apply_op(op, h)
            outs.append(h)
        return outs[-1]

    def num_parameters(self) -> int:
        """Nonzero weights and biases it holds."""
        return sum(int(p.count_nonzero()) for p in self.parameters())


def compact_net(ticket, dtype=torch.float64) -> CompactNet:
    from .compact import _values

    plan, input_shape = ticket.arch["kwargs"]["plan"], ticket.arch["input_shape"]
    shapes = _shapes(plan, input_shape)
    need = needed_channels(ticket)
    kept: list[torch.Tensor] = []  # per position: the original channels its compact output holds
    all_in = torch.arange(int(input_shape[0]))
    layers, adds, k = [], {}, 0
    for i, op in enumerate(plan):
        src = _source(i, op)
        into = all_in if src < 0 else kept[src]
        if op["op"] not in ("conv", "linear"):
            kept.append(into)  # channel-preserving: activation, pooling, flatten
            continue
        name = f"layers.{k}"
        rows = need[i].nonzero().flatten()
        M = ticket.masks[f"{name}.weight"].bool()
        full = M.reshape(M.shape[0], -1).shape  # [out, in * taps]: the grid the weights are drawn on
        span = full[1] // (int(input_shape[0]) if src < 0 else shapes[src][0])  # taps (conv) or positions (linear)
        cols = (into.view(-1, 1) * span + torch.arange(span)).flatten()
        sub = M.reshape(full)[rows][:, cols]
        r, c = sub.nonzero(as_tuple=True)
        W = torch.zeros(len(rows), len(cols), dtype=torch.float64)
        W[r, c] = _values(ticket, f"{name}.weight", rows[r], cols[c], full).double()
        b = torch.zeros(len(rows), dtype=torch.float64)
        kb = ticket.masks[f"{name}.bias"].bool()[rows]
        if kb.any():
            b[kb] = _values(ticket, f"{name}.bias", rows[kb], None, (full[0],)).double()
        if op["op"] == "conv":
            mod = nn.Conv2d(len(into), len(rows), tuple(op["kernel"]), tuple(op["stride"]), tuple(op["padding"]))
            W = W.view(len(rows), len(into), *op["kernel"])
        else:
            mod = nn.Linear(len(cols), len(rows))
        with torch.no_grad():
            mod.weight.copy_(W)
            mod.bias.copy_(b)
        layers.append(mod.to(dtype).requires_grad_(False))
        if "add" in op:
            there = all_in if op["add"] < 0 else kept[op["add"]]
            adds[i] = torch.searchsorted(there, rows)  # every needed channel of the sum is kept there
        kept.append(rows)
        k += 1
    return CompactNet(plan, input_shape, layers, adds).eval()
