"""Basis networks of universal tickets (Burkholz, Laha, Mukherjee, Gotovos, ICLR 2022).

A basis network is an ordinary ReLU network whose outputs span a function family up to a stated
error; a linear readout of its outputs then learns any member. Three bases:

* ``univariate``: a piecewise-linear ReLU net of any 1-D function, ``g(x) ~ v_0 + sum_k c_k relu(x - t_k)``,
  fitted minimax (a linear program, HiGHS) on knots placed where the curvature is (``|g''|^(1/2)``
  equidistributed), or the knots given;
* ``monomials(dim, degree)``: all ``prod_i ((1 + y_i) / 2) ** a_i`` with ``1 <= |a| <= degree`` and
  ``y`` the domain mapped onto ``[0, 1]``, as ``exp(-a . z)`` with ``z_i = -log((1 + y_i) / 2)``: one
  shared univariate log net over the coordinates, a linear layer of exponents, one shared exp net
  over the monomials (the paper's "univariate convolution");
* ``fourier(dim, frequencies)``: ``sin(2 pi k.y)`` and ``cos(2 pi k.y)`` for every frequency vector
  up to ``frequencies`` (first non-zero entry positive): a linear layer ``y -> k.y + shift`` (an
  integer shift keeps its outputs >= 0; ``+1/4`` turns sin into cos) and one shared sin net;
* ``lipschitz(dim, breakpoints)``: the features ``relu(x_i - t_k)`` themselves (their span: every
  piecewise-linear function on the knots, per coordinate).

A basis is a list of *stages* (``Univariate``: shared over coordinates; ``Dense``: an affine map)
whose values stay non-negative between stages, so a ReLU between them is exact: the random source
that is pruned into the basis (:mod:`.source`) is then a plain ReLU network.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import product

import numpy as np
import torch
from torch import nn

FAMILIES = ("poly", "fourier", "lipschitz")
MAX_FEATURES = 4096      # basis outputs; beyond this the readout's Gram matrix and the source outgrow a laptop
MAX_KNOTS = 2048         # pieces of one univariate net
FIT_GRID = 8192          # points per unit of knots the minimax fit is solved on (at least)
CHECK_POINTS = 100_000   # dense grid on which a univariate net's sup error is reported


class BasisError(ValueError):
    """A basis that cannot be built as asked (the message names the fix)."""


# --- univariate piecewise-linear nets --------------------------------------------------------------
@dataclass(frozen=True)
class Univariate:
    """A piecewise-linear function on ``knots`` (its values there), read as a 1-hidden-layer ReLU net.

    ``g(x) = values[0] + sum_k coefficients[k] * relu(x - knots[k])`` on ``[knots[0], knots[-1]]``
    (the slope changes; the last knot carries none). ``error``: sup error against the function it
    approximates on a dense grid (``CHECK_POINTS``), ``name``: that function.
    """

    knots: tuple
    values: tuple
    name: str = ""
    error: float = float("nan")

    @property
    def domain(self) -> tuple[float, float]:
        return float(self.knots[0]), float(self.knots[-1])

    def coefficients(self) -> np.ndarray:
        t, v = np.asarray(self.knots), np.asarray(self.values)
        m = np.diff(v) / np.diff(t)
        return np.concatenate([m[:1], np.diff(m)])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The ReLU form's values (float64), by interpolation: constant left of the first knot, the
        last piece extended right of the last, as the ReLU form computes them."""
        t = torch.tensor(self.knots, dtype=torch.float64, device=x.device)
        v = torch.tensor(self.values, dtype=torch.float64, device=x.device)
        xd = x.double()
        k = (torch.searchsorted(t, xd.contiguous(), right=True) - 1).clamp(0, len(t) - 2)
        y = v[k] + (v[k + 1] - v[k]) / (t[k + 1] - t[k]) * (xd - t[k])
        return torch.where(xd < t[0], v[0], y)

    def module(self) -> nn.Sequential:
        """The net as a plain float64 ``nn.Sequential`` on ``[B, 1]``: an ordinary target (e.g. for
        :func:`lotterylab.construct`)."""
        c = self.coefficients()
        net = nn.Sequential(nn.Linear(1, len(c)), nn.ReLU(), nn.Linear(len(c), 1)).double()
        with torch.no_grad():
            net[0].weight.fill_(1.0)
            net[0].bias.copy_(-torch.tensor(self.knots[:-1], dtype=torch.float64))
            net[2].weight.copy_(torch.tensor(c, dtype=torch.float64).view(1, -1))
            net[2].bias.fill_(self.values[0])
        return net

    def to_dict(self) -> dict:
        return {"knots": list(map(float, self.knots)), "values": list(map(float, self.values)), "name": self.name,
                "error": float(self.error)}

    @classmethod
    def from_dict(cls, d: dict) -> Univariate:
        return cls(tuple(d["knots"]), tuple(d["values"]), d.get("name", ""), float(d.get("error", float("nan"))))


def _root_curvature(g: Callable, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """``|g''|^(1/2)`` on 20,001 points of ``[lo, hi]`` (finite differences): the error density of
    piecewise-linear fits."""
    x = np.linspace(lo, hi, 20001)
    y = np.asarray(g(x), dtype=np.float64)
    h = x[1] - x[0]
    return x, np.sqrt(np.abs(np.gradient(np.gradient(y, h), h)))


def _knots(g: Callable, lo: float, hi: float, pieces: int, placement: str) -> np.ndarray:
    if placement == "uniform":
        return np.linspace(lo, hi, pieces + 1)
    x, dens = _root_curvature(g, lo, hi)
    dens = dens + 1e-3 * max(dens.max(), 1e-12)  # never a gap: a straight stretch still gets knots now and then
    cum = np.concatenate([[0.0], np.cumsum((dens[1:] + dens[:-1]) / 2)])
    t = np.interp(np.linspace(0, cum[-1], pieces + 1), cum, x)
    t[0], t[-1] = lo, hi
    return t


def _minimax(g: Callable, t: np.ndarray) -> tuple[np.ndarray, float]:
    """Knot values minimising the sup error on a dense grid: min s, |A v - g| <= s (HiGHS)."""
    from scipy.optimize import linprog
    from scipy.sparse import csr_matrix, hstack, vstack

    m = max(FIT_GRID, 16 * len(t))
    x = np.unique(np.concatenate([np.linspace(t[0], t[-1], m), t]))
    y = np.asarray(g(x), dtype=np.float64)
    k = np.clip(np.searchsorted(t, x, side="right") - 1, 0, len(t) - 2)
    w = (x - t[k]) / (t[k + 1] - t[k])
    rows = np.arange(len(x))
    A = csr_matrix((np.concatenate([1 - w, w]), (np.concatenate([rows, rows]), np.concatenate([k, k + 1]))),
                   shape=(len(x), len(t)))
    ones = csr_matrix(np.ones((len(x), 1)))
    A_ub = vstack([hstack([A, -ones]), hstack([-A, -ones])]).tocsr()
    b_ub = np.concatenate([y, -y])
    c = np.zeros(len(t) + 1)
    c[-1] = 1.0
    res = linprog(c, A_ub=A_ub, b_ub=b_ub, bounds=[(None, None)] * len(t) + [(0, None)], method="highs")
    if res.status != 0:  # pragma: no cover - a bounded feasible LP; kept as a loud failure, never a silent one
        raise BasisError(f"the minimax fit failed: {res.message}")
    return res.x[:-1], float(res.x[-1])


def sup_error(net: Callable, g: Callable, lo: float, hi: float, points: int = CHECK_POINTS) -> float:
    x = torch.linspace(lo, hi, points, dtype=torch.float64)
    return float((net(x) - torch.as_tensor(g(x.numpy()), dtype=torch.float64)).abs().max())


def univariate(g: Callable, breakpoints: int | Sequence[float] | None = None, domain=(0.0, 1.0), *,
               eps: float | None = None, placement: str = "curvature", name: str = "") -> Univariate:
    """A piecewise-linear ReLU net of the 1-D function ``g`` (numpy in, numpy out) on ``domain``.

    ``breakpoints``: the number of linear pieces, or the knots themselves; ``eps=`` instead picks the
    fewest pieces whose minimax sup error is at most ``eps``. Knot values are fitted minimax on a
    dense grid (never worse than interpolation; half its error for convex pieces), the error is then
    measured on a finer grid (``Univariate.error``).
    """
    lo, hi = _domain(domain)
    if placement not in ("curvature", "uniform"):
        raise BasisError(f"placement must be 'curvature' or 'uniform', got {placement!r}")
    if (breakpoints is None) == (eps is None):
        raise BasisError("give either breakpoints= (pieces or knots) or eps= (the sup error to reach)")
    probe = np.asarray(g(np.linspace(lo, hi, 257)), dtype=np.float64)
    if probe.shape != (257,) or not np.isfinite(probe).all():
        raise BasisError(f"g must map a numpy array to finite values of the same shape on [{lo}, {hi}]")
    if eps is not None:
        if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps > 0):
            raise BasisError(f"eps must be a finite number > 0, got {eps!r}")
        return _fewest_pieces(g, lo, hi, float(eps), placement, name)
    if isinstance(breakpoints, (int, np.integer)) and not isinstance(breakpoints, bool):
        if not 1 <= breakpoints <= MAX_KNOTS:
            raise BasisError(f"breakpoints must be between 1 and {MAX_KNOTS} pieces, got {breakpoints}")
        t = _knots(g, lo, hi, int(breakpoints), placement)
    else:
        t = np.asarray(breakpoints, dtype=np.float64)
        if t.ndim != 1 or len(t) < 2 or not (np.diff(t) > 0).all() or t[0] != lo or t[-1] != hi:
            raise BasisError(f"knots must increase strictly from {lo} to {hi}")
    v, _ = _minimax(g, t)
    u = Univariate(tuple(map(float, t)), tuple(map(float, v)), name)
    return Univariate(u.knots, u.values, name, sup_error(u, g, lo, hi))


def _fewest_pieces(g, lo, hi, eps, placement, name) -> Univariate:
    """The fewest pieces reaching ``eps``: a start from the curvature (minimax error of a convex piece
    ~ h^2 |g''| / 16), steps by the error's h^2 law until it passes, then bisection below."""
    fits: dict[int, Univariate] = {}

    def fit(n):
        if n not in fits:
            t = _knots(g, lo, hi, n, placement)
            v, _ = _minimax(g, t)
            u = Univariate(tuple(map(float, t)), tuple(map(float, v)), name)
            fits[n] = Univariate(u.knots, u.values, name, sup_error(u, g, lo, hi))
        return fits[n]

    x, root = _root_curvature(g, lo, hi)
    f = root / np.sqrt(16 * eps)
    n = int(min(MAX_KNOTS, max(1, math.ceil(float(np.sum((f[1:] + f[:-1]) / 2 * np.diff(x)))))))
    while fit(n).error > eps:
        if n >= MAX_KNOTS:
            raise BasisError(f"no piecewise-linear net with at most {MAX_KNOTS} pieces reaches sup error {eps:g} "
                             f"on [{lo}, {hi}]; raise eps or shrink the domain")
        n = min(MAX_KNOTS, max(n + 1, math.ceil(n * math.sqrt(fits[n].error / eps) * 1.02)))
    good = n  # passes; find a failing count below it
    bad = max(0, int(good * 0.85))
    while bad >= 1 and fit(bad).error <= eps:
        good, bad = bad, max(0, int(bad * 0.85))
    while good - bad > 1:
        mid = (good + bad) // 2
        if fit(mid).error <= eps:
            good = mid
        else:
            bad = mid
    return fits[good]


def _domain(domain) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in domain)
    except (TypeError, ValueError):
        raise BasisError(f"domain must be two numbers (lo, hi), got {domain!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise BasisError(f"domain must be a finite interval lo < hi, got {domain!r}")
    return lo, hi


# --- stages and bases -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Dense:
    """``v = weight @ z + bias`` (a linear layer of the basis: exponents or frequencies)."""

    weight: tuple  # rows of the [out, in] matrix
    bias: tuple

    def matrix(self) -> np.ndarray:
        return np.asarray(self.weight, dtype=np.float64).reshape(len(self.bias), -1)

    def to_dict(self) -> dict:
        return {"weight": [list(map(float, r)) for r in self.weight], "bias": list(map(float, self.bias))}


@dataclass
class Basis:
    """A basis network as stages; ``exact(x)`` the functions it approximates, ``features`` their names.

    ``stages``: ``("univariate", Univariate)`` applied to every coordinate, ``("dense", Dense)``, and
    last for the Lipschitz family ``("features", Univariate)``: its neurons ``relu(x - t_k)`` are the
    outputs (the knots of the Univariate; its values are unused).
    """

    family: str
    dim: int
    domain: tuple
    params: dict
    stages: list
    features: list = field(default_factory=list)
    error: list = field(default_factory=list)  # measured sup error per feature (basis net vs exact)

    def y(self, x: torch.Tensor) -> torch.Tensor:
        lo, hi = self.domain
        return (x.double() - lo) / (hi - lo)

    def exact(self, x: torch.Tensor) -> torch.Tensor:
        """The exact basis functions at ``x`` ([B, dim] inside the domain), float64 [B, n_features]."""
        if self.family == "poly":
            a = torch.tensor(self.params["exponents"], dtype=torch.float64)
            return torch.exp(torch.log((1 + self.y(x)) / 2) @ a.T)
        if self.family == "fourier":
            k = torch.tensor(self.params["frequencies_list"], dtype=torch.float64)
            t = 2 * math.pi * (self.y(x) @ k.T)
            return torch.cat([torch.sin(t), torch.cos(t)], dim=1)
        t = torch.tensor(self.stages[-1][1].knots[:-1], dtype=torch.float64)
        return torch.relu(x.double().unsqueeze(-1) - t).reshape(x.shape[0], -1)

    def module(self) -> BasisNetwork:
        return BasisNetwork(self)

    def to_dict(self) -> dict:
        return {"family": self.family, "dim": self.dim, "domain": list(self.domain), "params": self.params,
                "stages": [[k, s.to_dict()] for k, s in self.stages], "features": self.features, "error": self.error}

    @classmethod
    def from_dict(cls, d: dict) -> Basis:
        stages = []
        for kind, s in d["stages"]:
            if kind == "dense":
                stages.append((kind, Dense(tuple(tuple(r) for r in s["weight"]), tuple(s["bias"]))))
            else:
                stages.append((kind, Univariate.from_dict(s)))
        return cls(d["family"], int(d["dim"]), tuple(d["domain"]), d["params"], stages, list(d.get("features", [])),
                   list(d.get("error", [])))


class BasisNetwork(nn.Module):
    """The basis as a plain float64 ``nn.Module``: ``[B, dim] -> [B, n_features]``."""

    def __init__(self, basis: Basis):
        super().__init__()
        self.basis = basis

    def forward(self, x):
        h = x.double()
        for i, (kind, s) in enumerate(self.basis.stages):
            if kind == "dense":
                h = h @ torch.tensor(s.matrix(), dtype=torch.float64).T + torch.tensor(s.bias, dtype=torch.float64)
            elif kind == "univariate":
                h = s(h)
            else:
                t = torch.tensor(s.knots[:-1], dtype=torch.float64)
                h = torch.relu(h.unsqueeze(-1) - t).reshape(h.shape[0], -1)
            if i + 1 < len(self.basis.stages):
                h = torch.relu(h)  # exact: every stage's output is >= 0 on the domain
        return h


def grid(basis_or_dim, domain=(0.0, 1.0), points: int = 10_000, seed: int = 0) -> torch.Tensor:
    """A dense check grid of the box: a regular grid of about ``points`` points (dim <= 3), else the
    box's corners plus ``points`` uniform draws (from ``seed``); float64 [P, dim]."""
    dim = basis_or_dim.dim if isinstance(basis_or_dim, Basis) else int(basis_or_dim)
    lo, hi = basis_or_dim.domain if isinstance(basis_or_dim, Basis) else _domain(domain)
    if dim <= 3:
        side = max(2, round(points ** (1 / dim)))
        axis = torch.linspace(lo, hi, side, dtype=torch.float64)
        return torch.cartesian_prod(*[axis] * dim).reshape(-1, dim)
    g = torch.Generator().manual_seed(seed)
    corners = torch.tensor(list(product([lo, hi], repeat=min(dim, 12))), dtype=torch.float64)
    corners = torch.cat([corners, torch.full((len(corners), dim - corners.shape[1]), lo, dtype=torch.float64)], 1)
    return torch.cat([corners, lo + (hi - lo) * torch.rand(points, dim, generator=g, dtype=torch.float64)])


def measure(basis: Basis, points: int = 10_000) -> list[float]:
    """Sup error of every basis output against its exact function on :func:`grid`."""
    x = grid(basis, points=points)
    with torch.no_grad():
        return (basis.module()(x) - basis.exact(x)).abs().amax(0).tolist()
