"""How large the source is drawn: candidate counts (rho) and the scale of every layer's weights and biases."""

from __future__ import annotations

import torch

from .. import activations as acts_mod
from .. import subsetsum

# moment matching (first_layer="moments"): how far the matched moment may spread, in tolerances, when
# auto_s1 picks the first layer's scale
MOMENT_SPREAD = 30.0
# moment matching with phi(0) != 0 (sigmoid, softplus): constants' biases span U[-16, 16], so phi(beta)
# spans ~e^-16 .. 1 (and more): coarse and fine constants together resolve bias targets on weights
# of scale ~1/s1 (with U[-2, 2] a scalar subset sum would need ~1e-11 of its range)
MULTI_SCALE_BIAS = 16.0


def a_scale(e, l: int) -> float:
    """Scale of the univariate weights that read target layer l's input (the first-layer scheme's)."""
    return e.first.a_scale(float(e.H[l].max()))


def b_scale(e, l: int) -> float:
    """Bias scale of the constant neurons that carry target layer l's biases (read by its product layer)."""
    max_bias = float(e.t.biases[l].abs().max())
    if e.first.dim > 1 and e.psi.phi0 != 0:
        return MULTI_SCALE_BIAS
    if e.first.dim > 1:
        # moment matching: the assembling weights are ~1/s1 large, so constants of order 1 would make
        # every bias a subset sum of huge candidates; constants in the same small regime as the copies
        # (phi(beta) ~ phi'(0) beta) give products of the biases' own size, the rule the weights follow
        return max(1.5 * max_bias, 1e-6) / (e.psi.dphi0 * w_scale(e, l, True))
    return reach_scale(e.psi.name, max_bias, w_scale(e, l, True))


def b_scale_after(e, l: int) -> float:
    """Bias scale of L+1 copy layer l, whose constant neurons carry the biases of the layers reading it."""
    t = e.t
    readers = [k for k in range(t.depth) if t.input_of(k) == l]
    if not readers:
        return 2.0
    max_bias = max(float(t.biases[k].abs().max()) for k in readers)
    return reach_scale(t.activations[l] or "identity", max_bias, min(w_scale(e, k, False) for k in readers))


def w_scale(e, l: int, product: bool) -> float:
    # product layers: 1.5x the largest target parameter, so targets stay within 2/3 of the scale where
    # sums of products are dense (at the edge of the range they fail far more often); plain layers: 1x,
    # since larger candidates raise the l1 masses that amplify errors (Burkholz 2022, §3)
    # Copy layers: ``copy_scale`` x the largest target *weight*. Their biases come from constant neurons
    # whose scale follows (b_scale_after), so a large bias must not widen the weights: BN-folded biases
    # of ~1.5 over weights of ~0.02 made every subset mix signs, and the l1 masses multiply every copy
    # error below (ResNet-20 L+1: useless before, docs/constructions.md). Below 1 the subsets gather
    # same-sign candidates.
    W = e.t.weights[l]
    if not product:
        return max(float(W.abs().max()), 1e-6) * e.cfg.copy_scale
    m = 1.5 * max(float(W.abs().max()), float(e.scale_biases[l].abs().max()), 1e-6)
    return e.first.w_scale(m, a_scale(e, l))


def reach_scale(act: str, max_bias: float, w_scale: float) -> float:
    """Bias scale of constant neurons with activation ``act`` that must reach bias targets up to
    ``max_bias`` with weights of scale ``w_scale``: U[-2, 2] as in the LT-existence code, widened for
    an unbounded activation (ReLU-type) until the largest target lies within 2/3 of the largest
    constant x weight product, the rule the weights follow. (MNIST's folded border pixels give
    first-layer biases near -8, which constants up to 2 left unresolved.) A bounded activation
    saturates, so a wider scale would not give larger constants."""
    if float(acts_mod.get(act).module()(torch.tensor(100.0))) < 50.0:
        return 2.0
    return max(2.0, 1.5 * max_bias / w_scale)


def auto_s1(first, ep: float, t) -> float:
    """Scale of the linearised first layer (``first``: its scheme): its remainder costs at most ~ep/2
    per assembled row.

    A row sums about ``n_in`` subsets of ~2.3 candidates of size ``m / (s1 phi'(0))`` each
    evaluated with remainder ``R(s1)``; halve s1 until that estimate fits.
    """
    psi = first.psi
    n_in = t.widths[0] * t.w3(0).shape[2]  # instances per row: units x kernel taps
    m = max(float(t.weights[0].abs().max()), float(t.biases[0].abs().max()), 1e-6)
    s1 = 0.5
    while s1 > 1e-6 and n_in * 2.3 * m / (s1 * psi.dphi0) * first.remainder(s1) > ep / 2:
        s1 /= 2
    if first.dim > 1:
        # moment matching: a matched order k's component spreads over ~ s1^(k-1) |c_k / c_1| of the weight
        # component's; keeping that within ~30 tolerances leaves it a few bits to cancel (a subset sum
        # with n <= 32 candidates has ~32 bits for both), and the remainder only shrinks with s1
        c = psi.taylor
        # (one-sided copies, ELU's, have moments of one sign per weight sign: a thin cloud, so less spread)
        spread = MOMENT_SPREAD / (5.0 if first.left else 1.0)
        for k in first.orders:
            s1 = min(s1, (spread * ep / (m * abs(c[k - 1] / c[0]))) ** (1.0 / (k - 1)))
    return s1


def default_rho(eps_rel: float, delta: float, product: bool) -> int:
    """Candidates per instance for success probability 1 - delta at relative tolerance eps_rel (measured)."""
    return _choose_n_cached("product" if product else "uniform", round(eps_rel, 6), delta)


_N_CACHE: dict = {}


def _choose_n_cached(dist: str, eps_rel: float, delta: float) -> int:
    key = (dist, eps_rel, delta)
    if key not in _N_CACHE:
        try:
            _N_CACHE[key] = subsetsum.choose_n(dist, eps_rel, delta, n_max=subsetsum.MAX_N, trials=4000, seed=0)
        except ValueError:
            _N_CACHE[key] = subsetsum.MAX_N
    return _N_CACHE[key]


_KERNEL_TABLE: dict | None = None


def kernel_rho(d: int, eps_rel: float, delta: float) -> int:
    """NSN candidates per side for a d-dimensional (kernel) subset sum at relative tolerance eps_rel.

    Read from the MRSS calibration (``benchmarks/mrss_calibration.py`` writes ``mrss_n.json``: the
    smallest n whose 95 % upper failure bound is <= its delta, targets on [-1, 1]^D): the entry of the
    smallest calibrated D >= d and the largest calibrated eps <= eps_rel. Beyond the table (finer
    tolerances, larger kernels, or no n <= 512 was enough) the solver's limit is used and failed
    instances grow the source as usual. ``delta`` below the table's asks for the limit too."""
    global _KERNEL_TABLE
    if _KERNEL_TABLE is None:
        import json
        from pathlib import Path

        _KERNEL_TABLE = json.loads((Path(__file__).with_name("mrss_n.json")).read_text())
    tab = _KERNEL_TABLE
    if delta < tab["delta"]:
        return subsetsum.MAX_N_VECTOR
    cells = [(int(k.split(":")[0]), float(k.split(":")[1]), v) for k, v in tab["n_needed"].items()]
    ds = sorted({c[0] for c in cells if c[0] >= d})
    es = sorted({c[1] for c in cells if c[1] <= eps_rel + 1e-12}, reverse=True)
    if not ds or not es:
        return subsetsum.MAX_N_VECTOR
    n = next(c[2] for c in cells if c[0] == ds[0] and c[1] == es[0])
    return subsetsum.MAX_N_VECTOR if n is None else int(n)
