"""The three bases as builders, with the error split that makes ``eps`` a guarantee.

``eps`` is, for every family, the sup readout error the ticket guarantees over the family's unit
ball (with the ideal readout; :meth:`UniversalTicket.fit_readout` is least squares and is measured):

* ``poly``: ``h = c_0 + sum_a c_a prod_i ((1 + y_i) / 2) ** a_i`` with ``sum |c_a| <= 1``, degree <= p;
* ``fourier``: ``h = c_0 + sum_k a_k sin(2 pi k.y) + b_k cos(2 pi k.y)`` with ``sum |a_k| + |b_k| <= 1``;
* ``lipschitz``: ``h = c_0 + (1/dim) sum_i g_i(x_i)`` with every ``g_i`` ``lipschitz``-Lipschitz.

``y`` is ``x`` mapped from the domain box onto ``[0, 1]^dim``. For poly and fourier every basis
output is within ``eps`` of its exact function, so the unit ball is within ``eps``. Each error is
split between stages along the chain's Lipschitz constants (exp: 1, the exponent layer: ``p``,
sin: ``2 pi``) and, inside a univariate net, 60 % to the piecewise-linear basis and 40 % to the
subset sums. For lipschitz, knots ``eps / lipschitz`` apart interpolate within ``eps / 2`` and the
features are built within ``eps / (2 lipschitz (2 N + 1))`` (the readout's l1 norm is at most
``lipschitz (2 N + 1)``).
"""

from __future__ import annotations

import math
from itertools import product

import numpy as np

from .basis import MAX_FEATURES, Basis, BasisError, Dense, Univariate, _domain, measure, univariate

BASIS_SHARE = 0.6
DENSE_COPIES = 256        # first-layer neurons per coordinate of a dense block (prune.layout)
MAX_SOURCE = 200_000_000  # source parameters


def exponents(dim: int, degree: int) -> list[tuple]:
    """Every multi-index ``a`` with ``1 <= |a| <= degree``, by total degree then lexicographically."""
    out = [a for a in product(range(degree + 1), repeat=dim) if 1 <= sum(a) <= degree]
    return sorted(out, key=lambda a: (sum(a), [-v for v in a]))


def frequency_vectors(dim: int, frequencies: int) -> list[tuple]:
    """Every ``k`` in ``{-K..K}^dim``, not 0, first non-zero entry positive (``-k`` gives the same features)."""
    out = []
    for k in product(range(-frequencies, frequencies + 1), repeat=dim):
        nz = [v for v in k if v]
        if nz and nz[0] > 0:
            out.append(k)
    return sorted(out, key=lambda k: (sum(map(abs, k)), [-v for v in k]))


def feature_count(family: str, dim: int, degree=None, frequencies=None, breakpoints=None) -> int:
    if family == "poly":
        return math.comb(dim + degree, degree) - 1
    if family == "fourier":
        return (2 * frequencies + 1) ** dim - 1
    return dim * breakpoints


def check(family: str, dim, degree, frequencies, breakpoints, domain, eps) -> tuple[float, float]:
    """Refuse a bad request before any work; returns the domain."""
    from .basis import FAMILIES

    if family not in FAMILIES:
        raise BasisError(f"family must be one of {FAMILIES}, got {family!r}")
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
        raise BasisError(f"dim must be a whole number >= 1, got {dim!r}")
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and 0 < eps < 1):
        raise BasisError(f"eps must be a number in (0, 1), got {eps!r}")
    given = {"degree": degree, "frequencies": frequencies, "breakpoints": breakpoints}
    owner = {"degree": "poly", "frequencies": "fourier", "breakpoints": "lipschitz"}
    for name, val in given.items():
        if val is None:
            if owner[name] == family and name != "breakpoints":  # (lipschitz picks its knots from eps)
                raise BasisError(f"family {family!r} needs {name}=")
            continue
        if owner[name] != family:
            raise BasisError(f"{name}= is for family {owner[name]!r}, not {family!r}")
        if not isinstance(val, int) or isinstance(val, bool) or val < 1:
            raise BasisError(f"{name} must be a whole number >= 1, got {val!r}")
    lo, hi = _domain(domain)
    n = feature_count(family, dim, degree, frequencies, breakpoints or 1)
    knob = {"poly": "degree", "fourier": "frequencies", "lipschitz": "breakpoints"}[family]
    if n > MAX_FEATURES:
        raise BasisError(f"{family} with dim={dim} has {n:,} basis functions, over the limit of {MAX_FEATURES:,}: "
                         f"the readout's Gram matrix and the source would not fit a workstation; lower the {knob} or dim")
    dense = n * dim * DENSE_COPIES if family != "lipschitz" else 0  # the dense block's mix layer dominates the source
    if dense > MAX_SOURCE:
        raise BasisError(f"{family} with dim={dim} and {n:,} basis functions needs a source of about {dense:,} "
                         f"parameters (over {MAX_SOURCE:,}); lower the {knob} or dim")
    return lo, hi


def monomials(dim: int, degree: int, domain=(0.0, 1.0), eps: float = 1e-3, _margin: float = 0.0,
              _errors: tuple | None = None) -> Basis:
    """The monomial basis (log -> exponents -> exp) within ``eps`` of every monomial."""
    lo, hi = check("poly", dim, degree, None, None, domain, eps)
    e_log, e_exp = _errors or (eps / (2 * degree), eps / 2)
    log = univariate(lambda x: -np.log((1 + (x - lo) / (hi - lo)) / 2), domain=(lo, hi), eps=e_log, name="-log((1+y)/2)")
    alpha = exponents(dim, degree)
    top = degree * (math.log(2) + _margin) + _margin
    exp = univariate(lambda u: np.exp(-u), domain=(0.0, top), eps=e_exp, name="exp(-u)")
    dense = Dense(tuple(tuple(float(v) for v in a) for a in alpha), tuple(0.0 for _ in alpha))
    b = Basis("poly", dim, (lo, hi), {"degree": degree, "exponents": [list(a) for a in alpha]},
              [("univariate", log), ("dense", dense), ("univariate", exp)])
    b.features = [_poly_name(a) for a in alpha]
    b.error = measure(b)
    return b


def _poly_name(a) -> str:  # u_i = (1 + y_i) / 2
    return "*".join(f"u{i + 1}" + (f"^{v}" if v > 1 else "") for i, v in enumerate(a) if v)


def fourier(dim: int, frequencies: int, domain=(0.0, 1.0), eps: float = 1e-2, _margin: float = 0.0,
            _error: float | None = None) -> Basis:
    """sin and cos of ``2 pi k.y`` for every frequency vector up to ``frequencies``, within ``eps``."""
    lo, hi = check("fourier", dim, None, frequencies, None, domain, eps)
    ks = frequency_vectors(dim, frequencies)
    rows, bias = [], []
    for quarter in (0.0, 0.25):  # cos(2 pi t) = sin(2 pi (t + 1/4))
        for k in ks:
            shift = sum(max(0, -v) for v in k)  # an integer: the outputs stay >= 0, the sine unchanged
            rows.append(tuple(v / (hi - lo) for v in k))
            bias.append(shift - sum(v * lo for v in k) / (hi - lo) + quarter)
    top = max(sum(map(abs, k)) for k in ks) + 0.25 + _margin
    sin = univariate(lambda t: np.sin(2 * np.pi * t), domain=(0.0, top), eps=_error or eps, name="sin(2 pi t)")
    b = Basis("fourier", dim, (lo, hi), {"frequencies": frequencies, "frequencies_list": [list(k) for k in ks]},
              [("dense", Dense(tuple(rows), tuple(bias))), ("univariate", sin)])
    b.features = [f"sin{list(k)}" for k in ks] + [f"cos{list(k)}" for k in ks]
    b.error = measure(b)
    return b


def lipschitz(dim: int, breakpoints: int, domain=(0.0, 1.0)) -> Basis:
    """The features ``relu(x_i - t_k)`` on ``breakpoints`` equal pieces of the domain (exact)."""
    lo, hi = check("lipschitz", dim, None, None, breakpoints, domain, 0.5)
    t = np.linspace(lo, hi, breakpoints + 1)
    u = Univariate(tuple(map(float, t)), tuple(0.0 for _ in t), "relu(x - t_k)", 0.0)
    b = Basis("lipschitz", dim, (lo, hi), {"breakpoints": breakpoints}, [("features", u)])
    b.features = [f"relu(x{i + 1}-{v:.4g})" for i in range(dim) for v in t[:-1]]
    b.error = [0.0] * len(b.features)
    return b


def plan(family: str, dim: int, degree, frequencies, breakpoints, domain, eps: float, lip: float):
    """The basis for a guarantee of ``eps``, its stages' input ranges and construction budgets."""
    lo, hi = check(family, dim, degree, frequencies, breakpoints, domain, eps)
    if family == "poly":  # feature error <= E_exp + 1 * (E_dense + degree * E_log)
        E_log, E_dense, E_exp = 3 * eps / (8 * degree), eps / 8, eps / 2
        margin = E_log + E_dense  # upstream errors the exp net must still see inside its domain
        basis = monomials(dim, degree, (lo, hi), eps, margin, (BASIS_SHARE * E_log, BASIS_SHARE * E_exp))
        z_top = math.log(2) + E_log
        ranges = [(lo, hi), (0.0, z_top), basis.stages[2][1].domain]
        budgets = [(1 - BASIS_SHARE) * E_log, E_dense, (1 - BASIS_SHARE) * E_exp]
    elif family == "fourier":  # feature error <= E_sin + 2 pi E_dense (the dense layer is cheap: small share)
        E_dense, E_sin = eps / (20 * math.pi), 0.9 * eps
        basis = fourier(dim, frequencies, (lo, hi), eps, E_dense, BASIS_SHARE * E_sin)
        ranges = [(lo, hi), basis.stages[1][1].domain]
        budgets = [E_dense, (1 - BASIS_SHARE) * E_sin]
    else:
        if not (isinstance(lip, (int, float)) and math.isfinite(lip) and lip > 0):
            raise BasisError(f"lipschitz must be a finite number > 0, got {lip!r}")
        n = breakpoints or max(1, math.ceil((hi - lo) * lip / eps))
        if dim * n > MAX_FEATURES:
            raise BasisError(f"eps={eps:g} with lipschitz={lip:g} on [{lo}, {hi}] needs {n} knots per coordinate, "
                             f"{dim * n:,} features, over the limit of {MAX_FEATURES:,}; raise eps")
        basis = lipschitz(dim, n, (lo, hi))
        ranges = [(lo, hi)]
        budgets = [eps / (2 * lip * (2 * n + 1))]
    return basis, ranges, budgets
