"""Structured tickets: is a ticket pruned in whole kernels and filters, and what does its compact network cost?

:func:`structure` reads a convolutional ticket's masks (``source_net``; any family) and reports, per
k x k source layer, how many kernels (one output channel x one input channel, all k*k taps) are kept,
how many are *partial* (some taps kept, some pruned: not a structured pruning) and how many of the
input filters it reads are kept at all. Constant channels (univariate rows with no kept input weight
and a kept bias: they carry biases through the centre tap, which is inside the image at every
position) are counted apart; their one-tap kernels are biases, not kernels. It also checks that a
removed expansion channel is zero in every parameter that touches it (weights in, bias, weights out).

:func:`cost` gives parameters and multiply-accumulates per example of any plain network (the
compact ticket, the target), counted on the layers' real shapes; :func:`plan_macs` the same count
for a source plan without building it (a source can hold 10^8 weights).
"""

from __future__ import annotations

import torch
from torch import nn


def structure(ticket) -> dict:
    """Per k x k layer: kernels kept / partial / total, constant-channel kernels, filters kept / total."""
    if ticket.arch.get("name") != "source_net":
        raise ValueError(f"structure() reads convolutional tickets (source_net), got {ticket.arch.get('name')!r}")
    plan = ticket.arch["kwargs"]["plan"]
    layers = [op for op in plan if op["op"] in ("conv", "linear")]
    layers_out, ok = [], True
    dangling = 0
    for k, op in enumerate(layers):
        if op["op"] != "conv":
            continue
        M = ticket.masks[f"layers.{k}.weight"].bool()  # [out, in, kh, kw]
        taps = M.shape[2] * M.shape[3]
        if k > 0 and layers[k - 1]["op"] == "conv" and tuple(layers[k - 1]["kernel"]) == (1, 1):
            Mp = ticket.masks[f"layers.{k - 1}.weight"].bool().reshape(M.shape[1], -1)
            bp = ticket.masks[f"layers.{k - 1}.bias"].bool()
            used_out = M.reshape(M.shape[0], M.shape[1], -1).any(2).any(0)
            dangling += int(((~used_out) & (Mp.any(1) | bp)).sum())  # a removed channel must be zero in
            constant = (~Mp.any(1)) & bp
        else:
            constant = torch.zeros(M.shape[1], dtype=torch.bool)
        if taps == 1:
            continue
        per = M.reshape(M.shape[0], M.shape[1], taps).sum(2)  # kept taps per (out, in)
        real = ~constant
        partial = int(((per[:, real] > 0) & (per[:, real] < taps)).sum())
        ok = ok and partial == 0
        kept = per[:, real] > 0
        layers_out.append({"layer": f"layers.{k}", "kernel": list(op["kernel"]), "outputs": M.shape[0],
                           "kernels_total": int(M.shape[0] * real.sum()),
                           "kernels_kept": int((per[:, real] == taps).sum()), "kernels_partial": partial,
                           # filters that keep some but not all of their kernels (0 at filter granularity)
                           "filters_partial": int((kept.any(0) & ~kept.all(0)).sum()),
                           "constant_channel_kernels": int((per[:, constant] > 0).sum()),
                           "filters_total": int(real.sum()),
                           "filters_kept": int((per[:, real] > 0).any(0).sum())})
    return {"structured": ok and dangling == 0, "removed_channels_not_zero": dangling, "layers": layers_out}


def cost(net: nn.Module, input_shape) -> dict:
    """Parameters (all, and nonzero) and multiply-accumulates per example of a plain network's
    Conv2d and Linear layers (dense shapes: what a dense kernel computes). A compact network's
    :class:`~lotterylab.sparse_conv.SparseConv2d` counts what it holds and computes: its kept
    entries (and biases) as parameters, one multiply-accumulate per entry and output position."""
    from .sparse_conv import SparseConv2d

    macs = []
    kinds = (nn.Conv2d, nn.Linear, SparseConv2d)

    def hook(mod, inp, out):
        if isinstance(mod, SparseConv2d):
            macs.append(out.shape[2] * out.shape[3] * mod.entries())
        elif isinstance(mod, nn.Conv2d):
            per_out = mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]
            macs.append(out.shape[1] * out.shape[2] * out.shape[3] * per_out)
        elif isinstance(mod, nn.Linear):
            macs.append(mod.in_features * mod.out_features)

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, kinds)]
    sparse = [m for m in net.modules() if isinstance(m, SparseConv2d)]
    try:
        with torch.no_grad():
            p = next(t for t in (*net.parameters(), *net.buffers()) if t.is_floating_point())
            net(torch.zeros(1, *input_shape, dtype=p.dtype, device=p.device))
    finally:
        for h in handles:
            h.remove()
    params = sum(p.numel() for p in net.parameters()) + sum(m.entries() + m.out_channels for m in sparse)
    nonzero = sum(int(p.count_nonzero()) for p in net.parameters()) + \
        sum(int(m.values.count_nonzero()) + int(m.bias.count_nonzero()) for m in sparse)
    return {"parameters": params, "nonzero_parameters": nonzero, "macs": int(sum(macs))}


def plan_macs(plan: list[dict], input_shape) -> int:
    """Multiply-accumulates per example of a ``source_net`` plan's dense layers, from its shapes alone."""
    from .compact_net import _shapes

    shapes = _shapes(plan, input_shape)
    macs = 0
    for i, op in enumerate(plan):
        if op["op"] == "conv":
            macs += op["out"] * shapes[i][1] * op["in"] * op["kernel"][0] * op["kernel"][1]
        elif op["op"] == "linear":
            macs += op["in"] * op["out"]
    return int(macs)
