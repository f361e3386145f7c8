"""Compact convolutional and residual ticket networks (``source_net``): only the channels that a kept
path uses, built from the kept entries alone (see :mod:`lotterylab.compact`).

A channel is *needed* when a needed channel of a later layer keeps a weight from it (through
activations and pooling, which keep channels; a Linear layer over a flattened map reads every
position of a channel), or when it is added to a needed channel (a residual sum); the network's
outputs are all needed. Each weight layer keeps its needed output channels and reads every kept
channel of its input.

**Univariate layers are folded** where that is exact in arithmetic: a 1x1 convolution whose kept
rows each read one input channel ``j`` with weight ``a`` (no bias), followed by a positively
homogeneous activation (ReLU, LeakyReLU) and read by one weight layer only, computes
``phi(a x_j) = |a| phi(sign(a) x_j)``. It becomes ``phi(+x_j)`` and ``phi(-x_j)`` (two channels per
input channel, weights +-1) and ``|a|`` moves into the reading layer's weights, summed over the
copies of each side. A 2L convolutional ticket's thousands of univariate channels become twice its
input channels: the compact network costs about what the target costs. The outputs differ from the
masked source's only by rounding (products and sums in another order).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .activations import make_activation
from .models import run_plan
from .sparse_conv import SparseConv2d, sparse_wins


def _shapes(plan: list[dict], input_shape, added: dict | None = None) -> list[tuple[int, int]]:
    """(channels, positions per channel) of every plan position's output, on the meta device (no memory);
    ``added``: a compact network's channel selections of residual sums (their sizes only matter)."""
    def layer(op):
        if op["op"] == "linear":
            return lambda h: torch.empty(1, op["out"], device="meta")
        w = torch.empty(op["out"], op["in"], *op["kernel"], device="meta")
        return lambda h: F.conv2d(h, w, None, op["stride"], op["padding"])

    layers = [layer(op) for op in plan if op["op"] in ("conv", "linear")]
    acts = {str(i): (lambda h: h) for i, op in enumerate(plan) if op["op"] == "act"}
    sel = None if added is None else {i: v.to("meta") for i, v in added.items()}
    outs = run_plan(plan, torch.empty(1, *input_shape, device="meta"), layers, acts, sel)
    shapes: list[tuple[int, int]] = []
    for op, h in zip(plan, outs):
        # a flattened map keeps its channels (a Linear layer reading it reads them position by position)
        shapes.append(shapes[-1] if op["op"] == "flatten" and shapes else (h.shape[1], int(h[0, 0].numel())))
    return shapes


def _source(i: int, op: dict) -> int:
    return op.get("input", i - 1) if op["op"] in ("conv", "linear") else i - 1


def needed_channels(ticket, shapes: list[tuple[int, int]] | None = None) -> list[torch.Tensor]:
    """Per plan position, which output channels a kept path to the network's output uses."""
    plan, input_shape = ticket.arch["kwargs"]["plan"], ticket.arch["input_shape"]
    shapes = shapes or _shapes(plan, input_shape)
    need = [torch.zeros(c, dtype=torch.bool) for c, _ in shapes]
    need[-1][:] = True
    need_in = torch.zeros(int(input_shape[0]), dtype=torch.bool)
    layer = {i: k for k, i in enumerate(i for i, op in enumerate(plan) if op["op"] in ("conv", "linear"))}
    for i in range(len(plan) - 1, -1, -1):
        op, src = plan[i], _source(i, plan[i])
        into = need_in if src < 0 else need[src]
        if i in layer:
            M = ticket.masks[f"layers.{layer[i]}.weight"].bool()
            span = M[0].numel() // max(len(into), 1)  # taps (conv) or positions (linear over a map)
            M = M[need[i]].reshape(int(need[i].sum()), len(into), span)  # [rows, in channels, span]
            into |= M.any(2).any(0)
            if "add" in op:  # the added map's channel c is used where the sum's channel c is
                added = need_in if op["add"] < 0 else need[op["add"]]
                added |= need[i]
        else:
            into |= need[i]
    return need


class CompactNet(nn.Module):
    """The kept channels of a ``source_net`` ticket: convolutions (dense, or sparse where that is
    faster) and Linear layers in plan order, a residual addition selecting the added map's kept channels."""

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
        x0 = x.reshape(x.shape[0], *self.input_shape).to(self.layers[0].bias.dtype)
        added = {i: getattr(self, f"add_{i}") for i, op in enumerate(self.plan) if "add" in op}
        return run_plan(self.plan, x0, self.layers, self.acts, added)[-1]

    def num_parameters(self) -> int:
        """Nonzero weights and biases it holds."""
        return sum(int(t.count_nonzero()) for m in self.layers for t in
                   ((m.values, m.bias) if isinstance(m, SparseConv2d) else (m.weight, m.bias)))

    def bytes_per_example(self) -> int:
        """The largest intermediate map of one example (batch sizes are chosen from it)."""
        added = {i: getattr(self, f"add_{i}") for i, op in enumerate(self.plan) if "add" in op}
        shapes = _shapes(self._meta_plan(), self.input_shape, added)
        return max(c * p for c, p in shapes) * self.layers[0].bias.element_size()

    def seconds_per_example(self) -> float:
        """Estimated float64 time of one example's forward pass on this project's 2-core VM: its
        multiply-adds at the rates measured for dense and sparse layers (:mod:`lotterylab.sparse_conv`)."""
        from .sparse_conv import DENSE_RATE, SPARSE_RATE

        added = {i: getattr(self, f"add_{i}") for i, op in enumerate(self.plan) if "add" in op}
        plan = self._meta_plan()
        shapes = _shapes(plan, self.input_shape, added)
        layer = iter(self.layers)
        total = 0.0
        for op, (_, positions) in zip(plan, shapes):
            if op["op"] in ("conv", "linear"):
                m = next(layer)
                per = positions if op["op"] == "conv" else 1
                total += per * (m.entries() / SPARSE_RATE if isinstance(m, SparseConv2d) else
                                m.weight.numel() / DENSE_RATE[torch.float64])
        return total

    def _meta_plan(self) -> list[dict]:
        """The plan with this network's channel counts (the source's spatial arithmetic)."""
        plan, k = [], 0
        for op in self.plan:
            op = dict(op)
            if op["op"] in ("conv", "linear"):
                m = self.layers[k]
                op["in"], op["out"] = (m.in_channels, m.out_channels) if op["op"] == "conv" else (m.in_features,
                                                                                                 m.out_features)
                if isinstance(m, SparseConv2d):
                    op["sparse"] = True
                k += 1
            plan.append(op)
        return plan


def _readers(plan: list[dict]) -> dict[int, list[int]]:
    """Plan position -> positions that read its output (as input or as the added map)."""
    out: dict[int, list[int]] = {}
    for i, op in enumerate(plan):
        out.setdefault(_source(i, op), []).append(i)
        if "add" in op:
            out.setdefault(op["add"], []).append(i)
    return out


def _foldable(ticket, plan, need) -> dict[int, int]:
    """Univariate 1x1 layers that fold into their reader (see the module docs): position -> reader."""
    from .activations import get

    readers = _readers(plan)
    layer = {i: k for k, i in enumerate(i for i, op in enumerate(plan) if op["op"] in ("conv", "linear"))}
    out = {}
    for i, k in layer.items():
        op = plan[i]
        if op["op"] != "conv" or list(op["kernel"]) != [1, 1] or list(op["stride"]) != [1, 1] or \
                list(op["padding"]) != [0, 0] or "add" in op or i + 1 >= len(plan) or plan[i + 1]["op"] != "act":
            continue
        if get(plan[i + 1]["name"]).kind != "relu_like" or readers.get(i) != [i + 1]:
            continue
        reader = readers.get(i + 1, [])
        if len(reader) != 1 or reader[0] not in layer or plan[reader[0]].get("add") == i + 1:
            continue
        M = ticket.masks[f"layers.{k}.weight"].bool()[need[i]].reshape(int(need[i].sum()), -1)
        fan_in = M.sum(1)
        bias = ticket.masks[f"layers.{k}.bias"].bool()[need[i]]
        if bool(((fan_in > 1) | ((fan_in == 1) & bias)).any()):  # not univariate: kept as it is
            continue
        out[i] = reader[0]
    return out


def nonnegative(plan: list[dict], pos: int) -> bool:
    """Whether plan position ``pos`` outputs no negative number (a ReLU, or pooling of one)."""
    while pos >= 0 and plan[pos]["op"] in ("maxpool2d", "avgpool2d", "adaptive_avgpool2d", "flatten"):
        pos -= 1
    return pos >= 0 and plan[pos] == {"op": "act", "name": "relu"}


def _fold(ticket, name: str, rows: torch.Tensor, into: torch.Tensor, n_in: int, nonneg: bool):
    """The split layer replacing univariate rows ``rows`` of ``name`` (reading channels ``into``):
    its weights and biases, and per original row the new channel and the factor the reader takes.
    On a nonnegative input, ReLU(a x) with a < 0 is exactly 0: those rows get channel ``-1`` (dropped)."""
    from .compact import _values

    M = ticket.masks[f"{name}.weight"].bool().reshape(-1, n_in)[rows][:, into]  # [rows, kept inputs]
    r, c = M.nonzero(as_tuple=True)
    a = _values(ticket, f"{name}.weight", rows[r], into[c], (ticket.masks[f"{name}.weight"].shape[0], n_in)).double()
    sign = (a < 0).long()  # side 0: phi(+x), side 1: phi(-x)
    dead = (sign == 1) & nonneg
    pairs = torch.unique((c * 2 + sign)[~dead])  # the (input, side) channels some live copy uses
    const = (~M.any(1)).nonzero().flatten()  # rows without kept inputs: phi(bias) channels
    channel = torch.empty(len(rows), dtype=torch.long)
    scale = torch.ones(len(rows), dtype=torch.float64)
    channel[r] = torch.where(dead, -1, torch.searchsorted(pairs, c * 2 + sign))
    scale[r] = a.abs()
    channel[const] = len(pairs) + torch.arange(len(const))
    W = torch.zeros(len(pairs) + len(const), len(into), dtype=torch.float64)
    W[torch.arange(len(pairs)), pairs // 2] = 1.0 - 2.0 * (pairs % 2).double()
    b = torch.zeros(len(pairs) + len(const), dtype=torch.float64)
    kb = ticket.masks[f"{name}.bias"].bool()[rows[const]]
    if kb.any():
        b[len(pairs) + kb.nonzero().flatten()] = _values(ticket, f"{name}.bias", rows[const][kb], None,
                                                         (ticket.masks[f"{name}.bias"].shape[0],)).double()
    return W, b, channel, scale


def compact_net(ticket, dtype=torch.float64, fold: bool = True, sparse: bool = True) -> CompactNet:
    from .compact import _values

    plan, input_shape = ticket.arch["kwargs"]["plan"], ticket.arch["input_shape"]
    shapes = _shapes(plan, input_shape)
    need = needed_channels(ticket, shapes)
    folds = _foldable(ticket, plan, need) if fold else {}
    folded: dict[int, tuple] = {}  # reader position -> (new channel, factor) per row of the layer it reads
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
        if len(rows) == 0:  # nothing after uses this layer (a constant ticket): one channel keeps it a valid conv
            rows = torch.zeros(1, dtype=torch.long)
        M = ticket.masks[f"{name}.weight"].bool()
        full = M.reshape(M.shape[0], -1).shape  # [out, in * taps]: the grid the weights are drawn on
        span = full[1] // (int(input_shape[0]) if src < 0 else shapes[src][0])  # taps (conv) or positions (linear)
        cols = (into.view(-1, 1) * span + torch.arange(span)).flatten()
        if i in folds:
            W, b, channel, scale = _fold(ticket, name, rows, into, full[1], nonnegative(plan, src))
            folded[folds[i]] = (channel, scale, len(b))
        else:
            sub = M.reshape(full)[rows][:, cols]
            r, c = sub.nonzero(as_tuple=True)
            W = torch.zeros(len(rows), len(cols), dtype=torch.float64)
            W[r, c] = _values(ticket, f"{name}.weight", rows[r], cols[c], full).double()
            b = torch.zeros(len(rows), dtype=torch.float64)
            kb = ticket.masks[f"{name}.bias"].bool()[rows]
            if kb.any():
                b[kb] = _values(ticket, f"{name}.bias", rows[kb], None, (full[0],)).double()
        n_in = len(into)
        if i in folded:  # this layer reads a folded univariate layer: |a| joins its weights, copies summed
            channel, scale, n_in = folded[i]
            W3 = W.view(len(W), len(into), span) * scale.view(1, -1, 1)
            slot = torch.where(channel < 0, n_in, channel)  # dropped rows land in a slot that is cut off
            W = torch.zeros(len(W), n_in + 1, span, dtype=torch.float64).index_add_(1, slot, W3)
            W = W[:, :n_in].reshape(len(W), -1)
        taps = W.shape[1] // max(n_in, 1)
        if op["op"] == "conv":
            W = W.view(len(b), n_in, *op["kernel"])
        if op["op"] == "conv" and sparse and sparse_wins(int(W.count_nonzero()), len(b), n_in, taps, op["stride"], dtype):
            mod = SparseConv2d(W, b, op["padding"])
        else:
            if op["op"] == "conv":
                mod = nn.Conv2d(n_in, len(b), tuple(op["kernel"]), tuple(op["stride"]), tuple(op["padding"]),
                                dtype=torch.float64)
            else:
                mod = nn.Linear(W.shape[1], len(b), dtype=torch.float64)
            with torch.no_grad():  # (folded weights are float64 products: never via float32)
                mod.weight.copy_(W)
                mod.bias.copy_(b)
        layers.append(mod.to(dtype).requires_grad_(False))
        if "add" in op:
            there = all_in if op["add"] < 0 else kept[op["add"]]
            adds[i] = torch.searchsorted(there, rows)  # every needed channel of the sum is kept there
        kept.append(rows)
        k += 1
    return CompactNet(plan, input_shape, layers, adds).eval()


def save_compact(net: CompactNet, path, meta: dict | None = None):
    """A compact network as a plain state dict (safetensors) plus the plan that rebuilds it (JSON metadata)."""
    from .io import save_tensors

    save_tensors(path, {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()},
                        {"kind": "compact_net", "plan": net._meta_plan(), "input_shape": list(net.input_shape),
                         **(meta or {})})


def load_compact(path) -> CompactNet:
    """The network :func:`save_compact` wrote: layers rebuilt from the plan, weights loaded (no pickle)."""
    from .io import FileFormatError, load_tensors

    tensors, meta = load_tensors(path, kind="compact_net")
    if not isinstance(meta.get("plan"), list) or not isinstance(meta.get("input_shape"), list):
        raise FileFormatError(f"{path}: a compact network file without its plan; the file is corrupt")
    plan, shape = meta["plan"], meta["input_shape"]
    dtype = tensors["layers.0.bias"].dtype
    layers = []
    for op in plan:
        if op["op"] == "conv" and op.get("sparse"):
            k = len(layers)
            layers.append(SparseConv2d.from_entries({n: tensors[f"layers.{k}.{n}"] for n in SparseConv2d.ENTRIES},
                                                    op["in"], op["kernel"], op["padding"]))
        elif op["op"] == "conv":
            layers.append(nn.Conv2d(op["in"], op["out"], tuple(op["kernel"]), tuple(op["stride"]),
                                    tuple(op["padding"]), dtype=dtype))
        elif op["op"] == "linear":
            layers.append(nn.Linear(op["in"], op["out"], dtype=dtype))
    adds = {i: tensors[f"add_{i}"] for i, op in enumerate(plan) if "add" in op}
    net = CompactNet(plan, shape, layers, adds)
    net.load_state_dict(tensors, strict=True)
    return net.requires_grad_(False).eval()
