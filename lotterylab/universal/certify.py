"""Exact sup errors of pruned blocks against their basis stages (not bounds: the maxima themselves).

A pruned univariate block is piecewise linear in its scalar input: its copies ``relu(a_s x)`` bend
only at 0, its constants are constant, so each neuron's pre-activation is linear on each side of 0
and bends once more where it crosses 0. The basis net bends at its knots. Their difference is
linear between consecutive points of ``{lo, 0, hi, knots, crossings}``, so its sup over ``[lo, hi]``
is the largest difference at those points. A dense block's error is a sum over coordinates of
functions that bend only at 0, plus a constant: its extremes over the box sit at ``z_i`` in
``{lo, 0, hi}``, coordinate by coordinate.
"""

from __future__ import annotations

import numpy as np
import torch

from .basis import Dense, Univariate


def _masked(block, masks: dict) -> dict:
    return {n: p.detach().double() * masks[n] for n, p in block.named_parameters()}


def univariate_errors(block, masks: dict, u: Univariate, lo: float, hi: float, rows=None) -> list[float]:
    """Sup over ``[lo, hi]`` of |pruned block - basis|: one value for a block with ``out``, else one per
    feature ``relu(x - t_k)`` realised by neuron ``rows[k]``."""
    P = _masked(block, masks)
    a, b1 = P["copies.weight"][:, 0], P["copies.bias"]
    W2, b2 = P["neurons.weight"], P["neurons.bias"]

    def pre(x):  # [points, neurons]
        return torch.relu(x[:, None] * a + b1) @ W2.T + b2

    z0, z1, zm = pre(torch.tensor([0.0, 1.0, -1.0], dtype=torch.float64))
    up, dn = z1 - z0, z0 - zm  # slopes right and left of 0
    pts = [lo, hi] + ([0.0] if lo < 0 < hi else []) + [t for t in u.knots if lo <= t <= hi]
    with np.errstate(divide="ignore", invalid="ignore"):
        for z, s, inside in ((z0, up, lambda x: 0 < x <= hi), (z0, dn, lambda x: lo <= x < 0)):
            cross = (-z / s).numpy()
            pts += [float(x) for x in cross[np.isfinite(cross)] if inside(x)]
    x = torch.tensor(sorted(set(pts)), dtype=torch.float64)
    h = torch.relu(pre(x))
    if block.out is not None:
        got = h @ P["out.weight"][0] + P["out.bias"][0]
        return [float((got - u(x)).abs().max())]
    t = torch.tensor(u.knots[:-1], dtype=torch.float64)
    want = torch.relu(x[:, None] - t)
    return (h[:, rows] - want).abs().amax(0).tolist()


def dense_errors(block, masks: dict, d: Dense, lo: float, hi: float) -> list[float]:
    """Sup over ``[lo, hi]^C`` of |pruned block - (K z + bias)|, per output."""
    P = _masked(block, masks)
    K = torch.tensor(d.matrix(), dtype=torch.float64)
    M, C = K.shape
    n1 = P["copies.weight"].shape[0]
    Wm = P["mix.weight"].view(M, C, n1)
    zs = [v for v in (lo, 0.0, hi) if lo <= v <= hi]
    # g[j, i, z]: what coordinate i adds to output j at z_i = z (its constants included), minus K z
    g = torch.stack([(Wm * torch.relu(P["copies.weight"][:, 0] * z + P["copies.bias"])).sum(-1) - K * z for z in zs], -1)
    c = P["mix.bias"] - torch.tensor(d.bias, dtype=torch.float64)
    hi_sum, lo_sum = g.amax(-1).sum(1) + c, g.amin(-1).sum(1) + c
    return torch.maximum(hi_sum.abs(), lo_sum.abs()).tolist()
