"""Construction families: each lays out the source's layers over the shared engine.

A family decides which source layers exist, what their rows are for (copies of an input unit,
copies of a target neuron, constants) and which rows the engine solves; the engine, the
certificate and the refinements are shared. Register a new family with :func:`register_family`;
``construct(mode=name)`` then builds it, and the conformance battery in the tests runs over it.

* ``"L+1"`` (Burkholz 2022, arXiv:2205.02321): one univariate layer, then per target layer a copy
  layer of ``rho`` copies of each target neuron (the last layer: one), each copy approximating
  ``w_ij`` by a plain subset sum over the copies of neuron ``j`` below. Residual targets: a layer
  that adds a branch gets the branch's row layout and adds it row by row.
* ``"2L"`` (Pensia et al. 2020, arXiv:2006.07990; CNNs and ResNets: Burkholz ICML'22,
  arXiv:2205.02343): per target layer a univariate layer and an assembling layer that carries
  exactly the target's neurons (channels), so residual additions are the target's own.
"""

from __future__ import annotations

import torch

from .sizes import a_scale, b_scale, b_scale_after, w_scale
from .source import layer_shape, spatial_input


class Family:
    """A layout of source layers over the shared engine (subclass and register to add one)."""

    name = ""
    joins_rows = False               # layers added row by row (their constants add too)
    compensates_convolutions = True  # compensation on conv layers (declined where measured to hurt)
    kernel_instances = False         # k x k layers: one vector instance per kernel (structured tickets)

    def build(self, e) -> None:
        raise NotImplementedError

    def source_depth(self, target_depth: int) -> int:
        raise NotImplementedError

    def theory_bound(self, t, rho: int) -> dict:
        """The paper's source-size formula at the rho used, for comparison."""
        raise NotImplementedError


FAMILIES: dict[str, Family] = {}


def register_family(cls: type[Family]) -> type[Family]:
    if not cls.name or cls.name in FAMILIES:
        raise ValueError(f"construction family needs a new name, got {cls.name!r}")
    FAMILIES[cls.name] = cls()
    return cls


def univariate_layer(e, n_in: int, a: float, b: float, spatial: bool = False, reads: int | None = None,
                     rho1: int | None = None, init: str = "uniform"):
    """Copies of each input unit (a 1x1 conv on a feature map) plus constant neurons."""
    rho1, rb = rho1 or e.cfg.rho_first, e.cfg.rho_b
    geo = {"op": "conv", "kernel": [1, 1], "stride": [1, 1], "padding": [0, 0]} if spatial else {"op": "linear"}
    L = e.src.add_layer(n_in * rho1 + rb, n_in, a, b, e.psi.name, geo=geo, reads=reads, init=init)
    L.unit_rows = {j: list(range(j * rho1, (j + 1) * rho1)) for j in range(n_in)}
    L.mW[torch.arange(n_in * rho1), torch.arange(n_in).repeat_interleave(rho1), 0] = True
    L.const_rows = list(range(n_in * rho1, n_in * rho1 + rb))
    return L


@register_family
class LPlusOne(Family):
    name = "L+1"
    joins_rows = True
    # measured: compensation raised the error of a small L+1 ResNet 1.6x (copy errors dominate there and
    # the target's activations are a poor model of them)
    compensates_convolutions = False

    def source_depth(self, target_depth: int) -> int:
        return target_depth + 1

    def build(self, e) -> None:
        t, cfg = e.t, e.cfg
        L = t.depth
        # residual targets: a layer that adds a branch gets the branch's row layout (row r of both
        # copies the same target channel), and the source adds branch row r to row r: the skip is exact
        c_of = {-1: univariate_layer(e, t.weights[0].shape[1], a_scale(e, 0), b_scale(e, 0),
                                     spatial=spatial_input(t, 0)).index}
        for l in range(L):
            e.log(f"layer {l + 1}/{L}: solving {t.weights[l].numel():,} target weights")
            last = l == L - 1
            n_l, n_in = t.weights[l].shape[:2]
            prev = e.src.layers[c_of[t.input_of(l)]]
            add = t.add_of(l)
            partner = e.src.layers[c_of[add["from"]]] if add is not None else None
            if partner is not None:
                rows_n = partner.R
            else:
                copies = 1 if last else cfg.rho
                rows_n = n_l * copies + (0 if last else cfg.rho_b)
            g = layer_shape(t, l)
            C = e.src.add_layer(rows_n, prev.R, w_scale(e, l, t.input_of(l) < 0),
                                2.0 if last else b_scale_after(e, l),
                                None if last else t.activations[l], g["taps"], g["geo"], g["post"],
                                g["centre"], reads=prev.index)
            C.add_from = partner.index if partner is not None else None
            ledger = e.new_ledger(C, n_in, l, product=t.input_of(l) < 0)
            if partner is not None:
                C.copy_rows = {i: list(rs) for i, rs in partner.copy_rows.items()}
                C.const_rows = list(partner.const_rows)
                ledger.neuron[:] = e.ledgers[partner.index].neuron[:rows_n]
                partner.links.add(C.index)
                C.links.add(partner.index)
            else:
                C.copy_rows = {i: list(range(i * copies, (i + 1) * copies)) for i in range(n_l)}
                C.const_rows = [] if last else list(range(n_l * copies, rows_n))
                ledger.neuron[:n_l * copies] = torch.arange(n_l).repeat_interleave(copies)
            e.solve_rows(C, prev, [r for rs in C.copy_rows.values() for r in rs])
            c_of[l] = C.index

    def theory_bound(self, t, rho: int) -> dict:
        n_in = [t.w3(i).shape[1] for i in range(t.depth)]
        n_out = [t.w3(i).shape[0] for i in range(t.depth)]
        params = rho ** 2 * sum((n_out[i] + 1) * (n_in[i] + 1) * t.w3(i).shape[2] for i in range(t.depth))
        return {"formula": "rho^2 sum_l (n_l + 1)(n_{l-1} + 1) (Burkholz 2022)", "source_parameters": params}


@register_family
class TwoL(Family):
    name = "2L"

    def source_depth(self, target_depth: int) -> int:
        return 2 * target_depth

    init = "uniform"  # the source's weight distribution

    def copies(self, e, l: int) -> int:
        """Copies of each input unit in target layer l's univariate layer."""
        return e.cfg.rho_first

    def weight_scale(self, e, l: int) -> float:
        """The assembling layer's weight scale (uniform: the half-width)."""
        return w_scale(e, l, True)

    def build(self, e) -> None:
        # per target layer a univariate layer (reading the previous pair's outputs) + an assembling layer;
        # residual targets: U reads the assembling layer of the target layer's input, and the assembling
        # layers (which carry exactly the target's channels) add their branch as the target does
        t = e.t
        L = t.depth
        a_of = {-1: -1}  # target layer -> its assembling layer in the source
        for l in range(L):
            e.log(f"layer {l + 1}/{L}: solving {t.weights[l].numel():,} target weights")
            last = l == L - 1
            n_out, n_in = t.weights[l].shape[:2]
            U = univariate_layer(e, n_in, a_scale(e, l), b_scale(e, l), spatial=spatial_input(t, l),
                                 reads=a_of[t.input_of(l)], rho1=self.copies(e, l), init=self.init)
            g = layer_shape(t, l)
            A = e.src.add_layer(n_out, U.W.shape[0], self.weight_scale(e, l), 1.0,
                                None if last else t.activations[l], g["taps"], g["geo"], g["post"], g["centre"],
                                init=self.init)
            add = t.add_of(l)
            A.add_from = a_of[add["from"]] if add is not None else None
            a_of[l] = A.index
            A.copy_rows = {i: [i] for i in range(n_out)}
            ledger = e.new_ledger(A, n_in, l, product=True)
            ledger.neuron[:] = torch.arange(n_out)
            e.solve_rows(A, U, list(range(n_out)))

    def theory_bound(self, t, rho: int) -> dict:
        n_in = [t.w3(i).shape[1] for i in range(t.depth)]
        n_out = [t.w3(i).shape[0] for i in range(t.depth)]
        params = sum(2 * rho * n_in[i] * (n_in[i] + n_out[i] * t.w3(i).shape[2]) for i in range(t.depth))
        return {"formula": "sum_i 2 n_i d_{i-1} (d_{i-1} + d_i) (Pensia et al.)", "source_parameters": params}


@register_family
class Structured(TwoL):
    """Structured strong tickets (da Cunha, d'Amore, Natale, NeurIPS 2023, arXiv:2311.09858).

    The 2L layout with a Gaussian source: per target conv layer a 1x1 expansion layer (each
    expansion channel tied to one input channel) and a k x k layer. Each target kernel
    ``K[o, j, :, :]`` is approximated, in l-infinity over its k*k entries, by a subset of input
    channel j's expansion channels' *whole* kernels ``a_m * W[o, m, :, :]`` (normally-scaled-normal
    vectors): one multidimensional subset sum per (o, j) and side, so the ticket keeps or prunes
    whole kernels, and expansion channels no kernel uses are removed entirely (filter pruning).
    Linear layers (and 1x1 convs) are the D = 1 case: every weight its own "kernel". Biases come from
    constant channels through the centre tap, as in 2L: they fold exactly into the compact network's
    biases. Candidate counts per layer come from the MRSS calibration (``sizes.kernel_rho``).
    """

    name = "structured"
    kernel_instances = True
    compensates_convolutions = False  # kernel instances take their targets as given
    init = "normal"

    def copies(self, e, l: int) -> int:
        T = e.t.w3(l).shape[2]
        if T == 1 or not e.t.geometry or e.t.geometry[l]["kind"] != "conv":
            return e.cfg.rho_first
        if e.cfg.rho_kernel:
            return e.cfg.rho_kernel
        from .sizes import kernel_rho

        m = max(float(e.t.weights[l].abs().max()), float(e.scale_biases[l].abs().max()), 1e-6)
        n = kernel_rho(T, e.cfg.eps_for(l) / m, e.cfg.delta)
        return n * e.first.sides  # the sign trick: about half of the copies land on each side

    def build(self, e) -> None:
        from .. import subsetsum
        from .config import ConstructionError

        for l in range(e.t.depth):
            n_out, T = e.t.w3(l).shape[0], e.t.w3(l).shape[2]
            conv = bool(e.t.geometry) and e.t.geometry[l]["kind"] == "conv"
            if e.cfg.granularity == "filter" and conv and T > 1 and n_out * T > subsetsum.MAX_D:
                raise ConstructionError(
                    f"granularity='filter' solves one subset per input channel for all {n_out} output kernels of "
                    f"target layer {l} at once: {n_out} x {T} = {n_out * T} entries, above the solver's limit on d "
                    f"({subsetsum.MAX_D}); use granularity='kernel' (whole kernels and unused filters pruned)")
        super().build(e)

    def weight_scale(self, e, l: int) -> float:
        # N(0, m^2) with m the largest target parameter: targets lie in [-m, m], as in the calibration
        # (NSN candidates, targets uniform on [-1, 1]^D)
        return w_scale(e, l, True) / 1.5

    def theory_bound(self, t, rho: int) -> dict:
        return {"formula": "n = poly(d, c) polylog(1/eps) per layer (da Cunha et al. 2023; exponents not "
                           "retrieved): see the MRSS calibration for the measured n", "source_parameters": None}
