"""The random source a universal ticket is pruned from: a plain ReLU network of shared blocks.

A ``univariate`` block is the paper's "univariate convolution": the *same* three layers act on every
coordinate (``copies``: 1 -> n1, ``neurons``: n1 -> n2, ``out``: n2 -> 1, ReLU between), so one mask
serves every coordinate and the file stores it once. Without ``out`` (the Lipschitz basis) the
block's neurons are the outputs. A ``dense`` block mixes coordinates: shared ``copies`` (1 -> n1)
of every input coordinate, then ``mix`` (C_in * n1 -> C_out). A ReLU joins consecutive blocks.

Every parameter is drawn from ``U[-scale, scale]`` of its stage (weights grid-addressed,
:func:`lotterylab.rng.uniform_grid`), so the source is regenerated bit for bit from the seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

KINDS = ("univariate", "dense")


class UnivariateBlock(nn.Module):
    def __init__(self, copies: int, neurons: int, output: bool):
        super().__init__()
        self.copies = nn.Linear(1, copies)
        self.neurons = nn.Linear(copies, neurons)
        self.out = nn.Linear(neurons, 1) if output else None

    def forward(self, h):  # [B, C] -> [B, C] (with out) or [B, C * neurons]
        z = torch.relu(self.neurons(torch.relu(self.copies(h.unsqueeze(-1)))))
        return self.out(z).squeeze(-1) if self.out is not None else z.flatten(1)


class DenseBlock(nn.Module):
    def __init__(self, inputs: int, outputs: int, copies: int):
        super().__init__()
        self.copies = nn.Linear(1, copies)
        self.mix = nn.Linear(inputs * copies, outputs)

    def forward(self, h):  # [B, C_in] -> [B, C_out]
        return self.mix(torch.relu(self.copies(h.unsqueeze(-1))).flatten(1))


class UniversalSource(nn.Module):
    """``stages``: dicts ``{"kind": "univariate", "copies", "neurons", "output"}`` or
    ``{"kind": "dense", "inputs", "outputs", "copies"}``; ``dim`` input coordinates."""

    def __init__(self, dim: int, stages: Sequence[dict]):
        super().__init__()
        blocks = []
        for s in stages:
            if s.get("kind") == "univariate":
                blocks.append(UnivariateBlock(int(s["copies"]), int(s["neurons"]), bool(s["output"])))
            elif s.get("kind") == "dense":
                blocks.append(DenseBlock(int(s["inputs"]), int(s["outputs"]), int(s["copies"])))
            else:
                raise ValueError(f"stage kind must be one of {KINDS}, got {s.get('kind')!r}")
        self.dim = int(dim)
        self.stages = nn.ModuleList(blocks)

    def forward(self, x):
        h = x.reshape(x.shape[0], -1)
        for i, block in enumerate(self.stages):
            h = block(torch.relu(h) if i else h)
        return h


def init_spec(stages: Sequence[dict]) -> dict:
    """Per-parameter distributions (InitSpec overrides): ``U[-scale, scale]`` of each stage."""
    out = {}
    for i, s in enumerate(stages):
        names = ["copies", "neurons"] + (["out"] if s.get("output") else []) if s["kind"] == "univariate" \
            else ["copies", "mix"]
        for layer in names:
            a = float(s.get("scale", 1.0)) if layer in ("neurons", "mix") else 1.0
            out[f"stages.{i}.{layer}.weight"] = {"dist": "uniform", "low": -a, "high": a, "address": "grid"}
            out[f"stages.{i}.{layer}.bias"] = {"dist": "uniform", "low": -1.0, "high": 1.0}
    return out


def compact(net: UniversalSource, rows: list[int] | None = None) -> UniversalSource:
    """The same function from the kept entries of a *masked* source: first-layer neurons without a
    kept outgoing weight and neurons without a kept output weight removed (exact: they add zero).
    ``rows``: for a block without ``out`` (the Lipschitz basis), the neurons that are features, in order."""
    blocks = []
    with torch.no_grad():
        for b in net.stages:
            if isinstance(b, UnivariateBlock):
                if b.out is not None:
                    keep_r = torch.nonzero(b.out.weight[0] != 0)[:, 0]
                else:
                    keep_r = torch.tensor(rows if rows is not None else range(b.neurons.out_features), dtype=torch.long)
                keep_s = torch.nonzero((b.neurons.weight[keep_r] != 0).any(0))[:, 0]
                nb = UnivariateBlock(len(keep_s), len(keep_r), b.out is not None).to(b.neurons.weight.dtype)
                nb.copies.weight.copy_(b.copies.weight[keep_s])
                nb.copies.bias.copy_(b.copies.bias[keep_s])
                nb.neurons.weight.copy_(b.neurons.weight[keep_r][:, keep_s])
                nb.neurons.bias.copy_(b.neurons.bias[keep_r])
                if b.out is not None:
                    nb.out.weight.copy_(b.out.weight[:, keep_r])
                    nb.out.bias.copy_(b.out.bias)
            else:
                M, n1 = b.mix.out_features, b.copies.out_features
                C = b.mix.in_features // n1
                Wm = b.mix.weight.view(M, C, n1)
                keep_s = torch.nonzero((Wm != 0).any(0).any(0))[:, 0]
                nb = DenseBlock(C, M, len(keep_s)).to(b.mix.weight.dtype)
                nb.copies.weight.copy_(b.copies.weight[keep_s])
                nb.copies.bias.copy_(b.copies.bias[keep_s])
                nb.mix.weight.copy_(Wm[:, :, keep_s].reshape(M, -1))
                nb.mix.bias.copy_(b.mix.bias)
            blocks.append(nb)
    out = UniversalSource(net.dim, [])
    out.stages = torch.nn.ModuleList(blocks)
    return out
