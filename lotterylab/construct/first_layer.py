"""First-layer schemes: how a univariate layer's copies carry an input unit into the next layer's sums.

A univariate layer keeps, for every input unit ``j``, copy neurons with one edge ``a`` from ``j``;
the layer above approximates a target weight ``w`` by a subset sum over products ``v * a``. The
scheme decides what those products are worth (Burkholz 2022, arXiv:2205.02321 §3; Pensia et al.
2020, arXiv:2006.07990 for ReLU):

* :class:`SignTrick` (ReLU-type): ``relu(a x)`` is ``a x`` for one sign of ``x`` only, so each
  weight is two instances, over the copies with ``a > 0`` and with ``a < 0``, with targets
  ``+-w / (1 + slope)``. Exact.
* :class:`LinearRegime` (``linearize``: smooth activations with ``phi'(0) != 0``): small ``a``
  keep the copies in their linear regime, candidates ``v a phi'(0)``; the remainder of the
  linearisation enters the certificate and ``phi(0)`` moves into the bias target.
* :class:`MomentMatching` (``moments``: smooth activations; the default for GELU, SiLU, ELU,
  softplus): each weight is a two-component subset sum that also cancels the copies' lowest
  non-zero Taylor term above the linear one, ``sum v a^k ~ 0`` (k = 2, or 3 for tanh and sigmoid),
  so what remains is of order k + 1 and ``linearize``'s quadratic remainder, which forces scales
  ~1e-5 and unsolvable sums above, is gone.
* ``identity``: the papers' idealised first layer (no activation), a :class:`LinearRegime` with
  the identity; labelled as such in the report.

Chosen once per construction by :func:`first_layer_for`.
"""

from __future__ import annotations

import torch

from .. import activations as acts_mod
from .config import ConstructionError


class LinearRegime:
    """Copies in their linear regime: one instance per weight, candidates ``v * a * phi'(0)``."""

    sides = 1
    dim = 1  # components of each instance (moment matching: > 1)

    def __init__(self, psi: acts_mod.Activation, name: str, s1: float = 1.0):
        self.psi, self.name, self.s1 = psi, name, s1
        self.scaled = name in ("linearize", "moments")  # input weights of scale s1 / |h|: the remainder stays small

    def candidates(self, a: torch.Tensor, unit: torch.Tensor, a_max: float = 1.0):
        """(sides, side of each candidate, coefficient, kept, target multiplier per side); ``a_max``
        is the univariate layer's weight scale."""
        d0 = self.psi.dphi0 if self.psi.kind == "smooth" else 1.0
        keep = torch.ones_like(unit, dtype=torch.bool)
        return 1, torch.zeros_like(unit), a * d0, keep, torch.ones(1, dtype=torch.float64)

    def pair_eps(self, ep: float) -> float:
        return ep

    @property
    def bias_offset(self) -> float | None:
        """phi(0) of every selected copy adds to the row: moved into the bias target."""
        return self.psi.phi0 if self.psi.kind == "smooth" and self.psi.phi0 != 0 else None

    def realised(self, h: torch.Tensor, p, q, lin) -> torch.Tensor:
        """Pre-activation of assembled rows on inputs ``h`` (the first-order part)."""
        return lin(h, p)

    def input_parts(self, h: torch.Tensor) -> list[torch.Tensor]:
        """What each effective weight multiplies (compensation's features)."""
        return [h]

    def effective(self, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """[R, units, sides, T] effective weights of realised sums."""
        return p.unsqueeze(2)

    def side_targets(self, D: torch.Tensor) -> torch.Tensor:
        """Shifts of the side targets that move the effective weights by ``D`` [R, b, sides, T]."""
        return D

    def a_scale(self, h_max: float) -> float:
        return self.s1 / max(h_max, 1e-12) if self.scaled else 1.0

    def remainder(self, s1: float) -> float:
        """Bound on what one copy's term misses at |a x| <= s1, per unit of |v|."""
        return self.psi.remainder(s1)

    def w_scale(self, m: float, a_scale: float) -> float:
        return m / (a_scale * self.psi.dphi0) if self.scaled else m

    def product_error(self, p, q, l1v, w, U, up_dn, a_scale: float, mom=None):
        """Certificate terms of an assembled row: (error for input bound U, Lipschitz, gap) per pair."""
        if self.psi.kind == "smooth" and self.psi.name != "identity":
            R = torch.tensor([self.psi.remainder(a_scale * float(x)) for x in U.flatten()],
                             dtype=torch.float64).view(1, -1, 1)
        else:
            R = torch.zeros_like(U)
        return (p - w).abs() * U + l1v * R, p.abs(), (p - w).abs()


class SignTrick(LinearRegime):
    """ReLU-type copies: two instances per weight, split by the sign of ``a`` (exact)."""

    sides = 2

    def __init__(self, psi: acts_mod.Activation):
        super().__init__(psi, "sign_trick")

    def candidates(self, a: torch.Tensor, unit: torch.Tensor, a_max: float = 1.0):
        alpha = self.psi.slope  # side 0: a > 0, side 1: a < 0 (a = 0 is no candidate)
        mult = torch.tensor([1.0 / (1 + alpha), -1.0 / (1 + alpha)], dtype=torch.float64)
        return 2, (a < 0).long(), a.abs(), a != 0, mult

    def pair_eps(self, ep: float) -> float:
        return ep / (1 + self.psi.slope)

    @property
    def bias_offset(self) -> float | None:
        return None

    def realised(self, h, p, q, lin):
        a = self.psi.slope
        out = lin(h.clamp(min=0), p - a * q)
        neg = h.clamp(max=0)
        # inputs that are outputs of a ReLU have no negative side: its product is exactly zero (skip
        # it: half the float64 convolutions of a ReLU CNN's refinement)
        return out + lin(neg, a * p - q) if bool(neg.any()) else out

    def input_parts(self, h):
        return [h.clamp(min=0), h.clamp(max=0)]

    def effective(self, p, q):
        a = self.psi.slope
        return torch.stack([p - a * q, a * p - q], 2)

    def side_targets(self, D):
        a = self.psi.slope
        return torch.stack([(D[:, :, 0] - a * D[:, :, 1]), (a * D[:, :, 0] - D[:, :, 1])], 2) / (1 - a * a)

    def a_scale(self, h_max: float) -> float:
        return 1.0

    def w_scale(self, m: float, a_scale: float) -> float:
        return m

    def product_error(self, p, q, l1v, w, U, up_dn, a_scale: float, mom=None):
        a = self.psi.slope
        up, dn = up_dn  # the univariate layer's input range on each side of 0
        E = torch.maximum((p - a * q - w).abs() * up, (a * p - q - w).abs() * dn)
        lip = torch.maximum((p - a * q).abs(), (a * p - q).abs())
        gap = torch.maximum((p - a * q - w).abs(), (a * p - q - w).abs())
        return E, lip, gap


class MomentMatching(LinearRegime):
    """Copies of scale ``s1`` whose subsets also cancel the next Taylor terms (the faithful smooth scheme).

    A copy contributes ``v (phi(a x) - phi(0)) = sum_k c_k v a^k x^k + v r(a x)``. Each weight is one
    vector instance over the copies of its input unit: component 0 is ``c_1 v a`` (target ``w``),
    component j is ``c_k v a (s1 a / a_max)^(k-1)`` for the j-th matched order k (target 0), i.e. the
    k-th moment times ``U_l^(k-1)`` with ``U_l = s1 / a_max`` the layer's input bound: one tolerance
    bounds every term's error by ``tolerance * |x|`` on the box. ELU's polynomial holds for z < 0 only,
    so its copies are those with ``a > 0`` (then ``a x`` has the sign of ``x`` and the right branch is
    exact). The remainder ``r`` is of order ``max(matched) + 1`` or more and enters the certificate.
    """

    def __init__(self, psi: acts_mod.Activation, s1: float = 1.0, order: int = 3):
        super().__init__(psi, "moments", s1)
        # the lowest non-zero order only: with s1 chosen small (sizes.auto_s1) the next one is already below
        # the tolerance (ELU's cubic term at s1 ~ 1e-4), and each component costs subset-sum resolution
        self.orders = psi.matched_moments(order)[:1]
        self.dim = 1 + len(self.orders)
        self.left = psi.name in acts_mod.LEFT_BRANCH

    def candidates(self, a: torch.Tensor, unit: torch.Tensor, a_max: float = 1.0):
        c = self.psi.taylor
        z = a * (self.s1 / a_max)  # a times the layer's input bound: |z| <= s1
        coef = torch.stack([c[0] * a] + [c[k - 1] * a * z ** (k - 1) for k in self.orders], -1)
        keep = a > 0 if self.left else a != 0
        return 1, torch.zeros_like(unit), coef, keep, torch.ones(1, dtype=torch.float64)

    def product_error(self, p, q, l1v, w, U, up_dn, a_scale: float, mom=None):
        # |e(x)| <= |p - w| |x| + sum_k |c_k M_k| |x|^k + sum |v| |r(a x)|; the solver's component j is
        # c_k M_k U_l^(k-1), so its term is |component| * U * (U / U_l)^(k-1)
        E = (p - w).abs() * U
        U_l = self.s1 / a_scale
        for j, k in enumerate(self.orders):
            E = E + mom[:, :, j].abs() * U * (U / U_l) ** (k - 1)
        R = torch.tensor([self.psi.remainder(a_scale * float(x), self.orders) for x in U.flatten()],
                         dtype=torch.float64).view(U.shape)
        return E + l1v * R, p.abs(), (p - w).abs()

    def remainder(self, s1: float) -> float:
        return self.psi.remainder(s1, self.orders)


def default_first_layer(psi: acts_mod.Activation) -> str:
    """The sign trick for ReLU-type activations; moment matching where the linearisation's remainder is
    quadratic (GELU, SiLU, ELU, softplus: linearising needs scales ~1e-5); else (tanh, sigmoid: cubic)
    the scalar linearisation, which is exact enough in 2L and far cheaper on large targets."""
    if psi.kind == "relu_like":
        return "sign_trick"
    return "moments" if psi.matched_moments(2) else "linearize"


def first_layer_for(psi: acts_mod.Activation, name: str, s1: float = 1.0) -> LinearRegime:
    """The scheme ``name`` for the target's first activation ``psi``; refused where it cannot hold."""
    if name == "sign_trick":
        if psi.kind != "relu_like":
            raise ConstructionError(f"the sign trick needs a ReLU-type activation, the target uses {psi.name}; use "
                                    f"first_layer='linearize' (or 'identity')")
        return SignTrick(psi)
    if name == "linearize":
        if psi.kind != "smooth":
            raise ConstructionError(f"linearize needs a smooth activation with phi'(0) != 0, the target uses "
                                    f"{psi.name}")
        return LinearRegime(psi, name, s1)
    if name == "moments":
        if psi.kind != "smooth":
            raise ConstructionError(f"moment matching needs a smooth activation with phi'(0) != 0, the target uses "
                                    f"{psi.name}; use first_layer='sign_trick'")
        return MomentMatching(psi, s1)
    return LinearRegime(acts_mod.get("identity"), "identity")
