"""What the constructions and certificates need to know about an activation function.

* ``kind``: ``"relu_like"`` (ReLU, LeakyReLU: positively homogeneous, exact sign trick) or
  ``"smooth"`` (differentiable at 0 with phi'(0) != 0: linearisation of the first layer);
* ``phi0 = phi(0)``, ``dphi0 = phi'(0)``, the Lipschitz constant ``lip``;
* ``taylor``: the coefficients ``c_k = phi^(k)(0) / k!``, k = 1..4 (ELU: of its smooth left branch;
  its right branch is exactly linear);
* ``remainder(t, matched)``: a bound on ``|phi(z) - phi(0) - c_1 z - sum_{k in matched} c_k z^k|``
  for ``|z| <= t`` (grid maximum plus half the grid step times the remainder's largest slope, with
  margin, so it is an upper bound);
* ``abs_bound(lo, hi)``: a bound on ``|phi(z)|`` for ``z`` in ``[lo, hi]``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

# THE activation table: models build from it, the target readers recognise modules and functions
# from it, the constructions and certificates read its constants. Per name: the module factory,
# the torch functions that compute it (as read from a traced forward), whether ``x.<name>()`` is a
# tensor method, phi(0), phi'(0) (None: not differentiable at 0), the Lipschitz constant, and the
# minimum (location, value) of non-monotone ones.
_TABLE = {
    "relu": (nn.ReLU, (torch.relu, F.relu), True, 0.0, None, 1.0, None),
    "leaky_relu": (lambda: nn.LeakyReLU(0.01), (F.leaky_relu,), False, 0.0, None, 1.0, None),
    "tanh": (nn.Tanh, (torch.tanh, F.tanh), True, 0.0, 1.0, 1.0, None),
    "sigmoid": (nn.Sigmoid, (torch.sigmoid, F.sigmoid), True, 0.5, 0.25, 0.25, None),
    "gelu": (nn.GELU, (F.gelu,), False, 0.0, 0.5, 1.1290, (-0.7518, -0.1700)),
    "silu": (nn.SiLU, (F.silu,), False, 0.0, 0.5, 1.0999, (-1.2785, -0.2785)),
    "elu": (nn.ELU, (F.elu,), False, 0.0, 1.0, 1.0, None),
    "softplus": (nn.Softplus, (F.softplus,), False, math.log(2.0), 0.5, 1.0, None),
    "identity": (nn.Identity, (), False, 0.0, 1.0, 1.0, None),
}
# Taylor coefficients c_k = phi^(k)(0) / k!, k = 1..4, of the smooth activations (ELU: e^z - 1, its
# left branch). GELU = z Phi(z), SiLU = z sigmoid(z), softplus = log(1 + e^z); tested against autograd.
_SQ2PI = math.sqrt(2 * math.pi)
TAYLOR = {
    "tanh": (1.0, 0.0, -1.0 / 3, 0.0),
    "sigmoid": (0.25, 0.0, -1.0 / 48, 0.0),
    "gelu": (0.5, 1.0 / _SQ2PI, 0.0, -1.0 / (6 * _SQ2PI)),
    "silu": (0.5, 0.25, 0.0, -1.0 / 48),
    "elu": (1.0, 0.5, 1.0 / 6, 1.0 / 24),
    "softplus": (0.5, 0.125, 0.0, -1.0 / 192),
    "identity": (1.0, 0.0, 0.0, 0.0),
}
# activations smooth on one side of 0 only (ELU: linear for z > 0): moment matching keeps copies with
# a > 0, so z = a x has the sign of x and the polynomial is used where it holds
LEFT_BRANCH = {"elu"}
ACTIVATIONS = {name: row[0] for name, row in _TABLE.items()}  # name -> module factory
FUNCTIONS = {fn: name for name, row in _TABLE.items() for fn in row[1]}  # torch function -> name
METHODS = {name: name for name, row in _TABLE.items() if row[2]}  # tensor method name -> name
# module classes without parameters that matter (LeakyReLU, GELU, ELU, Softplus are read with theirs)
PLAIN_MODULES = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.SiLU: "silu", nn.Identity: None}


def make_activation(name: str) -> nn.Module:
    """Activation module by name; ``"leaky_relu:0.2"`` sets the negative slope."""
    if name.startswith("leaky_relu:"):
        try:
            return nn.LeakyReLU(float(name.split(":", 1)[1]))
        except ValueError:
            raise ValueError(f"bad leaky_relu slope in {name!r}; write e.g. 'leaky_relu:0.2'") from None
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; supported: {', '.join(ACTIVATIONS)}") from None


@dataclass(frozen=True)
class Activation:
    name: str
    kind: str
    phi0: float
    dphi0: float | None
    lip: float
    slope: float = 0.0  # LeakyReLU's negative slope
    minimum: tuple | None = None

    def module(self):
        return make_activation(self.name).double()

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        return self.module()(z)

    @property
    def taylor(self) -> tuple[float, ...]:
        """c_k = phi^(k)(0) / k!, k = 1..4 (smooth activations; ELU: its left branch)."""
        return TAYLOR[self.name]

    def matched_moments(self, order: int = 3) -> tuple[int, ...]:
        """The orders k = 2..order whose Taylor term is not zero: what moment matching cancels."""
        return tuple(k for k in range(2, order + 1) if self.taylor[k - 1] != 0)

    def remainder(self, t: float, matched: tuple[int, ...] = ()) -> float:
        """Upper bound of |phi(z) - phi(0) - c_1 z - sum_{k in matched} c_k z^k| over |z| <= t (smooth
        activations). With ``matched`` on a one-sided activation (ELU) only z <= 0 counts: its copies
        then have a > 0, and for z > 0 the branch is exactly linear."""
        if self.kind != "smooth" or t <= 0 or self.name == "identity":
            return 0.0
        return _remainder(self.name, float(t), tuple(matched))

    def abs_bound(self, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        """Elementwise bound on |phi(z)| for z in [lo, hi]."""
        f = self.module()
        b = torch.maximum(f(lo.double()).abs(), f(hi.double()).abs())
        if self.minimum is not None:
            inside = (lo <= self.minimum[0]) & (hi >= self.minimum[0])
            b = torch.where(inside, torch.maximum(b, torch.full_like(b, abs(self.minimum[1]))), b)
        return b


@functools.lru_cache(maxsize=4096)
def _remainder(name: str, t: float, matched: tuple[int, ...]) -> float:
    psi = get(name)
    if not matched:  # the linearisation's bound, as it always was (tickets stay bit-identical)
        z = torch.linspace(-t, t, 4097, dtype=torch.float64, requires_grad=True)
        y = psi(z)
        (d1,) = torch.autograd.grad(y.sum(), z, create_graph=True)
        (d2,) = torch.autograd.grad(d1.sum(), z)
        z = z.detach()
        r = (y.detach() - psi.phi0 - psi.dphi0 * z).abs()
        # between grid points the remainder's slope is |phi'(z) - phi'(0)| <= max|phi''| * t
        return float(r.max()) + 2 * t / 4096 * 1.1 * float(d2.abs().max()) * t
    c = psi.taylor
    left = bool(matched) and name in LEFT_BRANCH
    z = torch.linspace(-t, 0.0 if left else t, 8193, dtype=torch.float64, requires_grad=True)
    poly = psi.phi0 + c[0] * z + sum(c[k - 1] * z ** k for k in matched)
    r = psi(z) - poly
    (dr,) = torch.autograd.grad(r.sum(), z)
    step = (t if left else 2 * t) / 8192
    # between grid points |r| grows by at most half a step times its largest slope (the slope is
    # smooth: its grid maximum with 50 % margin bounds it)
    return float(r.detach().abs().max()) + 0.5 * step * 1.5 * float(dr.abs().max())


def get(name: str) -> Activation:
    if name == "leaky_relu" or name.startswith("leaky_relu:"):
        slope = float(name.split(":", 1)[1]) if ":" in name else 0.01
        if not 0 <= slope < 1:
            raise ValueError(f"LeakyReLU slope must be in [0, 1) for the sign trick, got {slope}")
        return Activation(name, "relu_like", 0.0, None, 1.0, slope)
    if name not in _TABLE:
        raise ValueError(f"activation {name!r} cannot be handled by the constructions; supported: "
                         f"relu, leaky_relu[:slope], {', '.join(k for k in _TABLE if k != 'relu')}")
    _, _, _, phi0, d0, lip, mn = _TABLE[name]
    return Activation(name, "relu_like" if name == "relu" else "smooth", phi0, d0, lip, 0.0, mn)
