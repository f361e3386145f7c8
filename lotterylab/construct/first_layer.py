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

    def __init__(self, psi: acts_mod.Activation, name: str, s1: float = 1.0):
        self.psi, self.name, self.s1 = psi, name, s1
        self.scaled = name == "linearize"  # input weights of scale s1 / |h|: the remainder stays small

    def candidates(self, a: torch.Tensor, unit: torch.Tensor):
        """(sides, side of each candidate, coefficient, kept, target multiplier per side)."""
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

    def w_scale(self, m: float, a_scale: float) -> float:
        return m / (a_scale * self.psi.dphi0) if self.scaled else m

    def product_error(self, p, q, l1v, w, U, up_dn, a_scale: float):
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

    def candidates(self, a: torch.Tensor, unit: torch.Tensor):
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

    def product_error(self, p, q, l1v, w, U, up_dn, a_scale: float):
        a = self.psi.slope
        up, dn = up_dn  # the univariate layer's input range on each side of 0
        E = torch.maximum((p - a * q - w).abs() * up, (a * p - q - w).abs() * dn)
        lip = torch.maximum((p - a * q).abs(), (a * p - q).abs())
        gap = torch.maximum((p - a * q - w).abs(), (a * p - q - w).abs())
        return E, lip, gap


def default_first_layer(psi: acts_mod.Activation) -> str:
    return "sign_trick" if psi.kind == "relu_like" else "linearize"


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
    return LinearRegime(acts_mod.get("identity"), "identity")
