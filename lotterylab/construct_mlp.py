"""Strong lottery tickets by construction: depth L+1 and 2L, fully connected and convolutional targets.

``construct(target, mode="L+1", eps=0.01, seed=0, domain=(-1, 1))`` draws ONE random source
network from ``seed`` and prunes it so that the pruned network approximates ``target`` within
``eps`` on the input box ``domain``. See ``../shared/theory.md`` §2-3 for the mathematics; the
layout used here:

* **univariate layer** (L+1: source layer 1; 2L: every odd layer): for each input unit ``j``,
  ``rho_first`` copy neurons that keep only their edge from ``j`` (weight ``a``), plus ``rho_b``
  constant neurons that keep only their own random bias ``beta`` and output ``kappa = phi(beta)``;
* **assembling rows** (the layer after a univariate layer): for each target weight ``w_ij`` a
  *product* subset sum over ``v * a`` of ``j``'s copies (ReLU-type: two instances split by the sign
  of ``a``, the sign trick, both with target ``w / (1 + slope)``; smooth activations: the copies are
  in their linear regime, candidates ``v * a * phi'(0)`` and the offset ``phi(0) * sum v`` moves into
  the bias target); the bias is a subset sum over ``v * kappa`` of the constants;
* **copy layers** (L+1 only, hidden layers 2..L): ``rho`` copies of each target neuron; each copy
  approximates ``w_ij`` by a plain subset sum over its weights from the ``rho`` copies of neuron
  ``j`` below, and its bias from that layer's constants.

Source weights are drawn uniformly, one scale per layer, with grid addressing
(:func:`lotterylab.rng.uniform_grid`): when an instance fails, the source **grows by real
neurons** — a failed copy is replaced by a new row, a failed single-row instance gets one more
candidate neuron in the layer below — and nothing already drawn changes. The error certificate
(interval bounds of the target's hidden units over the domain, propagated with the realised
subsets' l1 masses, §3.5) is computed from the realised ticket; in guarantee mode each layer's
tolerance is tightened or widened until the certificate is <= eps.

Convolutional targets (:func:`lotterylab.target.read_net`) use the same code: every source layer
is ``[rows, cols, taps]`` (a k x k conv has k*k taps, a Linear after Flatten one tap per position,
a Linear on a vector one), every (row, unit, tap) is one instance over the unit's copies at that
tap, univariate layers are 1x1 convs, and biases are carried by constant channels through the
centre tap only (inside the image at every output, so borders are exact). Residual targets are
built in 2L, whose assembling layers carry exactly the target's channels (theory.md §4.2).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

from . import activations as acts_mod
from . import rng, subsetsum
from .masks import Mask
from .models import apply_op
from .target import TargetMLP, UnsupportedTarget, read_mlp, read_net
from .tickets import Ticket

MODES = ("L+1", "2L")
FIRST_LAYER_MODES = ("sign_trick", "linearize", "identity")


class ConstructionError(ValueError):
    """Bad arguments to a construction (the message names the fix)."""


# --- the source network under construction ------------------------------------------------------

@dataclass
class _Layer:
    index: int
    w_scale: float
    b_scale: float
    act: str | None
    # weights and mask [rows, cols, taps] (taps = kernel positions; 1 for a Linear on a vector) live in
    # buffers with spare capacity, so growing by a few neurons does not copy a 100M-entry layer each time
    Wbuf: torch.Tensor
    b: torch.Tensor
    mWbuf: torch.Tensor
    mb: torch.Tensor
    R: int = 0
    C: int = 0
    prefix: str = "linears"
    geo: dict | None = None    # convolutional sources: {"op": "conv"|"linear", kernel, stride, padding}
    post: list = field(default_factory=list)  # parameter-free ops after the activation (pooling)
    centre: int = 0            # the tap that carries biases: inside the image at every output position
    input_layer: int | None = None  # source layer whose output it reads (None: the one before; -1: the input)
    add_from: int | None = None     # residual: source layer whose output is added before the activation
    links: set = field(default_factory=set)  # L+1 residual: layers added row by row to / from this one
    # roles of rows
    unit_rows: dict = field(default_factory=dict)   # univariate layer: input unit -> rows copying it
    copy_rows: dict = field(default_factory=dict)   # copy / assembling layer: target neuron -> rows
    const_rows: list = field(default_factory=list)  # constant neurons (own bias kept)

    @property
    def name(self) -> str:
        return f"{self.prefix}.{self.index}"

    @property
    def T(self) -> int:
        return self.Wbuf.shape[2]

    @property
    def W(self) -> torch.Tensor:
        return self.Wbuf[:self.R, :self.C]

    @property
    def mW(self) -> torch.Tensor:
        return self.mWbuf[:self.R, :self.C]

    def reserve(self, rows: int, cols: int) -> None:
        """Room for ``rows`` x ``cols``; reallocates with 25 % spare when it grows."""
        r_cap, c_cap = self.Wbuf.shape[:2]
        if rows <= r_cap and cols <= c_cap:
            return
        r_new = r_cap if rows <= r_cap else rows + rows // 4
        c_new = c_cap if cols <= c_cap else cols + cols // 4
        W = torch.zeros(r_new, c_new, self.T, dtype=self.Wbuf.dtype, device=self.Wbuf.device)
        M = torch.zeros(r_new, c_new, self.T, dtype=torch.bool, device=self.Wbuf.device)
        W[:self.R, :self.C] = self.W
        M[:self.R, :self.C] = self.mW
        self.Wbuf, self.mWbuf = W, M


class _Source:
    """Layers drawn from (seed, layer name) with grid addressing, growable by rows and columns."""

    def __init__(self, seed: int, device, prefix: str = "linears"):
        self.seed, self.device, self.prefix = seed, device, prefix
        self.layers: list[_Layer] = []
        self.readers: dict[int, list[int]] = {}  # layer -> layers that read its output (gain columns when it grows)
        self.grown = 0  # neurons added because an instance failed

    def add_layer(self, rows: int, cols: int, w_scale: float, b_scale: float, act: str | None, taps: int = 1,
                  geo: dict | None = None, post: list | None = None, centre: int = 0,
                  reads: int | None = None) -> _Layer:
        """A new layer reading layer ``reads`` (default: the last one; -1: the network input)."""
        k = len(self.layers)
        reads = k - 1 if reads is None else reads
        self.readers.setdefault(reads, []).append(k)
        L = _Layer(k, float(w_scale), float(b_scale), act,
                   Wbuf=torch.empty(rows, cols, taps, device=self.device), b=torch.empty(0, device=self.device),
                   mWbuf=torch.zeros(rows, cols, taps, dtype=torch.bool, device=self.device),
                   mb=torch.zeros(0, dtype=torch.bool, device=self.device), R=0, C=cols, prefix=self.prefix, geo=geo,
                   post=list(post or []), centre=centre, input_layer=None if reads == k - 1 else reads)
        self.layers.append(L)
        self.add_rows(L, rows)
        return L

    def add_rows(self, L: _Layer, n: int) -> list[int]:
        r0 = L.W.shape[0]
        if n <= 0:
            return []
        # grid addressing: entry (row, col, tap) at (row, col * taps + tap), the layout of a conv weight
        T = L.T
        w = rng.uniform_grid(self.seed, rng.stream_id(L.name + ".weight"), (n, L.W.shape[1] * T), -L.w_scale,
                             L.w_scale, self.device, row_offset=r0).view(n, -1, T)
        b = rng.uniform(self.seed, rng.stream_id(L.name + ".bias"), (n,), -L.b_scale, L.b_scale, self.device, offset=r0)
        L.reserve(r0 + n, L.C)
        L.Wbuf[r0:r0 + n, :L.C] = w
        L.mWbuf[r0:r0 + n, :L.C] = False
        L.R = r0 + n
        L.b = torch.cat([L.b, b])
        L.mb = torch.cat([L.mb, torch.zeros(n, dtype=torch.bool, device=self.device)])
        for nxt in (self.layers[i] for i in self.readers.get(L.index, [])):  # its readers gain input columns
            c0, T2 = nxt.W.shape[1], nxt.T
            w2 = rng.uniform_grid(self.seed, rng.stream_id(nxt.name + ".weight"), (nxt.W.shape[0], n * T2),
                                  -nxt.w_scale, nxt.w_scale, self.device, col_offset=c0 * T2).view(-1, n, T2)
            nxt.reserve(nxt.R, c0 + n)
            nxt.Wbuf[:nxt.R, c0:c0 + n] = w2
            nxt.mWbuf[:nxt.R, c0:c0 + n] = False
            nxt.C = c0 + n
        return list(range(r0, r0 + n))

    def widths(self) -> list[int]:
        return [self.layers[0].W.shape[1]] + [L.W.shape[0] for L in self.layers]


# --- construction ---------------------------------------------------------------------------------

@dataclass
class _Cfg:
    mode: str
    eps_param: float
    rho: int
    rho_first: int
    rho_b: int
    first_layer: str
    objective: str
    s1: float
    max_growth_rounds: int
    layer_eps: list | None = None  # per target layer (guarantee mode); None: eps_param everywhere
    copy_objective: str | None = None  # L+1 copy layers' instances (None: objective)
    compensate: bool = False  # paper mode + calibration: later weights' targets cancel earlier errors

    def eps_for(self, l: int) -> float:
        return self.layer_eps[l] if self.layer_eps else self.eps_param


def _domain_box(domain, n0: int, channels: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-input bounds (per channel for ``channels``: convolutional targets) of a box or data sample."""
    if isinstance(domain, torch.Tensor) and domain.dim() >= 2 and domain.shape[0] > 2:
        if channels and domain.dim() == 4:  # images [N, C, H, W]: bounds per channel
            flat = domain.transpose(0, 1).reshape(domain.shape[1], -1).T.double()
        else:
            flat = domain.reshape(domain.shape[0], -1).double()  # a data sample: bounds per input
        lo, hi = flat.min(0).values, flat.max(0).values
    else:
        try:
            lo_, hi_ = domain
        except (TypeError, ValueError):
            raise ConstructionError("domain must be (low, high) with scalars or per-input tensors, or a data sample "
                                    "tensor [N, ...]") from None
        lo = torch.as_tensor(lo_, dtype=torch.float64).reshape(-1).expand(n0).clone()
        hi = torch.as_tensor(hi_, dtype=torch.float64).reshape(-1).expand(n0).clone()
    if lo.numel() != n0 or hi.numel() != n0:
        raise ConstructionError(f"domain bounds have {lo.numel()} entries, the target has {n0} inputs")
    if not (torch.isfinite(lo).all() and torch.isfinite(hi).all()):
        raise ConstructionError("domain bounds must be finite")
    if (lo > hi).any():
        j = int((lo > hi).nonzero()[0])
        raise ConstructionError(f"domain has lower > upper at input {j} ({float(lo[j])} > {float(hi[j])})")
    return lo, hi


def _input_of(t: TargetMLP, k: int) -> int:
    """The layer whose output layer k reads (-1: the network input)."""
    return t.geometry[k].get("input", k - 1) if t.geometry else k - 1


def _add_of(t: TargetMLP, k: int) -> dict | None:
    """Residual addition before layer k's activation: {"kind": "identity" | "layer", "from": j}."""
    return t.geometry[k].get("add") if t.geometry else None


def target_bounds(t: TargetMLP, lo: torch.Tensor, hi: torch.Tensor) -> list[torch.Tensor]:
    """|h| bounds over the box of every layer's input (per unit / channel), by interval arithmetic."""
    out = {-1: (lo, hi)}  # each layer's output box (after activation and pooling; a shortcut: linear)
    H = []
    for k in range(t.depth):
        zlo, zhi = out[_input_of(t, k)]
        H.append(torch.maximum(zlo.abs(), zhi.abs()))
        if k == t.depth - 1:
            break
        W, b = t.w3(k), t.biases[k]
        if t.geometry and max(t.geometry[k]["padding"]) > 0:  # zero padding: 0 is among the inputs
            zlo, zhi = zlo.clamp(max=0), zhi.clamp(min=0)
        # per unit (channel) bounds: every tap of the kernel may see any value of its channel
        Wp, Wn = W.clamp(min=0).sum(2), W.clamp(max=0).sum(2)
        lo2 = Wp @ zlo + Wn @ zhi + b
        hi2 = Wp @ zhi + Wn @ zlo + b
        add = _add_of(t, k)
        if add is not None:  # a residual branch adds its own box
            alo, ahi = out[add["from"]]
            lo2, hi2 = lo2 + alo, hi2 + ahi
        act = acts_mod.get(t.activations[k] or "identity")
        f = act.module()
        # the box of phi(z) (monotone activations; GELU / SiLU: their minimum when inside)
        a_lo, a_hi = f(lo2), f(hi2)
        if act.minimum is not None:
            inside = (lo2 <= act.minimum[0]) & (hi2 >= act.minimum[0])
            a_lo = torch.where(inside, torch.full_like(a_lo, act.minimum[1]), torch.minimum(a_lo, a_hi))
        zlo, zhi = torch.minimum(a_lo, a_hi), torch.maximum(a_lo, a_hi)
        for op in (t.geometry[k]["post"] if t.geometry else []):  # max/avg pooling keeps values in the box,
            if op["op"] == "avgpool2d" and max(op["padding"]) > 0 and op.get("count_include_pad", True):
                zlo, zhi = zlo.clamp(max=0), zhi.clamp(min=0)  # unless padded zeros are averaged in
        out[k] = (zlo, zhi)
    return H


def _solve(values: torch.Tensor, targets: torch.Tensor, eps: float, objective: str):
    """Solve padded instances (float64, CPU); padding candidates are 0 and never help."""
    return subsetsum.solve(values.double().cpu(), targets.double().cpu(), eps, objective)


class _Constructor:
    """Builds the source layer by layer; every subset-sum instance is one (row, input unit) pair.

    A failed pair gets one more candidate: a new copy neuron of its unit in the layer below (for a
    copy layer, that new copy is itself solved first), and only the failed pairs are solved again.
    A failed bias gets a new constant neuron below. Per-row results (realised sums, l1 masses,
    bias errors) are kept for the certificate.
    """

    def __init__(self, t: TargetMLP, cfg: _Cfg, seed: int, lo, hi, device, const_inputs=None, scale_biases=None,
                 calibration: torch.Tensor | None = None):
        self.t, self.cfg, self.seed, self.device = t, cfg, seed, device
        self.log = lambda text: None  # construct(log=...) sets a stage printer
        # bias correction (paper mode): realised and target outputs of every layer on a data sample
        self.calib = calibration
        self._t_outs = t.forward(calibration) if calibration is not None else None
        self._calib_cache: dict[int, tuple[int, torch.Tensor]] = {}
        self._t_pre: dict[int, torch.Tensor] = {}
        self.bias_shift: dict[int, float] = {}  # target layer -> largest |correction| of its rows
        self.const_inputs = const_inputs if const_inputs is not None else torch.zeros(0, dtype=torch.long)
        # layer scales follow the target's own biases (before constant inputs were folded into them)
        self.scale_biases = list(scale_biases if scale_biases is not None else t.biases)
        self.lo, self.hi = lo, hi
        self.src = _Source(seed, device, prefix="layers" if t.geometry else "linears")
        self.H = target_bounds(t, lo, hi)
        self.psi = self._first_act()
        self.stats = {"instances": 0, "failed_first_try": 0, "unresolved": 0, "solve_time_s": 0.0, "_size_sum": 0,
                      "zero_weights": 0}
        self.info: dict[int, dict] = {}  # source layer index -> per-row tensors
        self._comp: dict[int, torch.Tensor] = {}  # source layer index -> Cholesky factor of its inverse moment
        self.comp_shift: dict[int, float] = {}  # target layer -> largest target shift from compensation
        self.comp_block: dict[int, int] = {}
        self._tab_cache: dict[tuple[int, bool], tuple[int, tuple]] = {}

    def _first_act(self) -> acts_mod.Activation:
        """Activation of the univariate layers (the target's own, or identity in the idealised mode)."""
        if self.cfg.first_layer == "identity":
            return acts_mod.get("identity")
        return acts_mod.get(self.t.activations[0] if self.t.depth > 1 else "relu")

    @property
    def sign_trick(self) -> bool:
        return self.psi.kind == "relu_like" and self.cfg.first_layer == "sign_trick"

    def _run(self, values, targets, eps, copies: bool = False):
        t0 = time.perf_counter()
        res = _solve(values, targets, eps, (self.cfg.copy_objective or self.cfg.objective) if copies else
                     self.cfg.objective)
        self.stats["solve_time_s"] += time.perf_counter() - t0
        self.stats["instances"] += len(targets)
        self.stats["_size_sum"] += int(res.size.sum())
        return res

    # -- layers ------------------------------------------------------------------------------------
    def univariate_layer(self, n_in: int, a_scale: float, b_scale: float, spatial: bool = False,
                         reads: int | None = None) -> _Layer:
        """Copies of each input unit (a 1x1 conv on a feature map) plus constant neurons."""
        rho1, rb = self.cfg.rho_first, self.cfg.rho_b
        geo = {"op": "conv", "kernel": [1, 1], "stride": [1, 1], "padding": [0, 0]} if spatial else {"op": "linear"}
        L = self.src.add_layer(n_in * rho1 + rb, n_in, a_scale, b_scale, self.psi.name, geo=geo, reads=reads)
        L.unit_rows = {j: list(range(j * rho1, (j + 1) * rho1)) for j in range(n_in)}
        L.mW[torch.arange(n_in * rho1), torch.arange(n_in).repeat_interleave(rho1), 0] = True
        L.const_rows = list(range(n_in * rho1, n_in * rho1 + rb))
        return L

    def _new_info(self, C: _Layer, n_in: int, tl: int, product: bool):
        # "neuron": target neuron realised by each row (-1: a constant or unused row); p, q, l1v per (row, unit, tap)
        T = C.T
        self.info[C.index] = {"tl": tl, "product": product, "neuron": torch.full((0,), -1, dtype=torch.long),
                              "p": torch.zeros(0, n_in, T, dtype=torch.float64),
                              "q": torch.zeros(0, n_in, T, dtype=torch.float64),
                              "l1v": torch.zeros(0, n_in, T, dtype=torch.float64),
                              "ok": torch.zeros(0, n_in, dtype=torch.bool),
                              "bias_err": torch.zeros(0, dtype=torch.float64),
                              "bias_ok": torch.zeros(0, dtype=torch.bool),
                              "bias_real": torch.zeros(0, dtype=torch.float64),
                              "shift": torch.zeros(0, n_in, 2, T, dtype=torch.float64)}

    def _fit_info(self, C: _Layer):
        inf = self.info[C.index]
        R = C.W.shape[0]
        for k in ("p", "q", "l1v", "ok", "shift"):
            if inf[k].shape[0] < R:
                inf[k] = torch.cat([inf[k], torch.zeros(R - inf[k].shape[0], *inf[k].shape[1:], dtype=inf[k].dtype)])
        for k in ("bias_err", "bias_ok", "bias_real", "neuron"):
            if inf[k].shape[0] < R:
                fill = -1 if k == "neuron" else 0
                inf[k] = torch.cat([inf[k], torch.full((R - inf[k].shape[0],), fill, dtype=inf[k].dtype)])

    # -- candidate tables ------------------------------------------------------------------------
    def _tables(self, P: _Layer, product: bool):
        """Per input unit (and sign): candidate columns in P, coefficient, target multiplier (cached until
        P grows: compensation solves a layer in many small calls)."""
        key = (P.index, product)
        hit = self._tab_cache.get(key)
        if hit is not None and hit[0] == P.R:
            return hit[1]
        out = self._build_tables(P, product)
        self._tab_cache[key] = (P.R, out)
        return out

    def _build_tables(self, P: _Layer, product: bool):
        table = P.unit_rows if product else P.copy_rows
        n_in = len(table)
        lengths = torch.tensor([len(table[j]) for j in range(n_in)], dtype=torch.long)
        rows = torch.tensor([r for j in range(n_in) for r in table[j]], dtype=torch.long)
        unit = torch.arange(n_in).repeat_interleave(lengths)
        alpha = self.psi.slope
        if product:
            a = P.W[rows.to(P.W.device), unit.to(P.W.device), 0].double().cpu()  # univariate layers: one tap
            if self.sign_trick:  # side 0: a > 0, side 1: a < 0 (a = 0 is no candidate)
                S, side, coef_all = 2, (a < 0).long(), a.abs()
                keep = a != 0
                mult = torch.tensor([1.0 / (1 + alpha), -1.0 / (1 + alpha)], dtype=torch.float64)
            else:
                d0 = self.psi.dphi0 if self.psi.kind == "smooth" else 1.0
                S, side, coef_all = 1, torch.zeros_like(unit), a * d0
                keep = torch.ones_like(unit, dtype=torch.bool)
                mult = torch.ones(1, dtype=torch.float64)
        else:
            S, side, coef_all = 1, torch.zeros_like(unit), torch.ones(len(rows), dtype=torch.float64)
            keep = torch.ones_like(unit, dtype=torch.bool)
            mult = torch.ones(1, dtype=torch.float64)
        rows, unit, side, coef_all = rows[keep], unit[keep], side[keep], coef_all[keep]
        # position of each candidate within its (unit, side) group, in list order (newest last), and the
        # group's size: keep the most recent MAX_N of every group
        g = unit * S + side
        order = torch.sort(g, stable=True).indices
        count = torch.bincount(g, minlength=n_in * S)
        start = torch.cumsum(count, 0) - count
        pos = torch.empty_like(g)
        pos[order] = torch.arange(len(g)) - start[g[order]]
        drop = (count[g] - subsetsum.MAX_N).clamp(min=0)
        k = pos >= drop
        slot = (pos - drop)[k]
        n_max = max(1, int(count.clamp(max=subsetsum.MAX_N).max()) if len(count) else 1)
        col = torch.zeros(n_in, S, n_max, dtype=torch.long)
        coef = torch.zeros(n_in, S, n_max, dtype=torch.float64)
        valid = torch.zeros(n_in, S, n_max, dtype=torch.bool)
        col[unit[k], side[k], slot] = rows[k]
        coef[unit[k], side[k], slot] = coef_all[k]
        valid[unit[k], side[k], slot] = True
        return col, coef, valid, mult

    # -- solving pairs ---------------------------------------------------------------------------
    def _solve_pairs(self, C: _Layer, P: _Layer, rows: torch.Tensor, units: torch.Tensor, clear: bool = True) -> torch.Tensor:
        """Solve the weights of instances (rows[k], units[k]) of layer C over candidates in P; returns ok.

        ``clear``: a re-solve first removes the pair's earlier selection (a first solve has none)."""
        inf = self.info[C.index]
        product = inf["product"]
        W_t = self.t.w3(inf["tl"])  # [n_out, n_in, T]
        col, coef, valid, mult = self._tables(P, product)
        S, n_max, T = col.shape[1], col.shape[2], C.T
        ep = self.cfg.eps_for(inf["tl"])
        eps = ep / (1 + self.psi.slope) if (product and self.sign_trick) else ep
        neuron = inf["neuron"][rows]
        ok_all = torch.ones(len(rows), dtype=torch.bool)
        chunk = max(1, 1_500_000 // (S * n_max * T))
        taps = torch.arange(T)
        for c0 in range(0, len(rows), chunk):
            r, u, i = rows[c0:c0 + chunk], units[c0:c0 + chunk], neuron[c0:c0 + chunk]
            cc = col[u]  # [k, S, n_max]
            vv = valid[u].unsqueeze(3)
            w = C.W[r.view(-1, 1, 1), cc].double().cpu()  # [k, S, n_max, T]
            w = torch.where(vv, w, torch.zeros((), dtype=torch.float64))
            v = w * coef[u].unsqueeze(3)
            tgt = W_t[i, u].unsqueeze(1) * mult.view(1, -1, 1)  # [k, S, T]
            tgt = tgt + inf["shift"][r, u, :S]  # (compensation; zero otherwise)
            # one instance per (pair, tap, side): the same candidates at every tap of the kernel
            res = self._run(v.permute(0, 3, 1, 2).reshape(-1, n_max), tgt.permute(0, 2, 1).reshape(-1), eps,
                            copies=not product)
            sel = res.mask.reshape(len(r), T, S, n_max).permute(0, 2, 3, 1) & vv  # [k, S, n_max, T]
            ok = res.ok.reshape(len(r), T * S).all(1)
            ok_all[c0:c0 + chunk] = ok
            # replace this pair's previous selection (over ALL of the unit's candidates) by the new one
            if clear:
                all_r, all_c = self._unit_columns(P, product, r, u)
                C.mW[all_r.to(C.mW.device), all_c.to(C.mW.device)] = False
            rr = r.view(-1, 1, 1, 1).expand_as(sel)
            ci = cc.unsqueeze(3).expand_as(sel)
            ti = taps.view(1, 1, 1, -1).expand_as(sel)
            C.mW[rr[sel].to(C.mW.device), ci[sel].to(C.mW.device), ti[sel].to(C.mW.device)] = True
            sums = (v * sel).sum(2)  # [k, S, T]
            inf["p"][r, u] = sums[:, 0]
            if S == 2:
                inf["q"][r, u] = sums[:, 1]
            inf["l1v"][r, u] = (w.abs() * sel).sum((1, 2))
            inf["ok"][r, u] = ok
        return ok_all

    @staticmethod
    def _unit_columns(P: _Layer, product: bool, rows: torch.Tensor, units: torch.Tensor):
        """(row, column) index pairs of every candidate of each (row, unit): what a re-solve must clear."""
        table = P.unit_rows if product else P.copy_rows
        rr, cc = [], []
        for u in units.unique().tolist():
            cols = torch.tensor(table[u], dtype=torch.long)
            sel_rows = rows[units == u]
            rr.append(sel_rows.repeat_interleave(len(cols)))
            cc.append(cols.repeat(len(sel_rows)))
        return torch.cat(rr), torch.cat(cc)

    def _solve_biases(self, C: _Layer, P: _Layer, rows: torch.Tensor) -> torch.Tensor:
        inf = self.info[C.index]
        neuron = inf["neuron"][rows]
        targets = self.t.biases[inf["tl"]][neuron].clone()
        if inf["product"] and self.psi.kind == "smooth" and self.psi.phi0 != 0:
            # phi(0) of every selected copy (at every tap) adds up: move it into the bias target
            cols = torch.tensor([c for j in P.unit_rows for c in P.unit_rows[j]], dtype=torch.long)
            Wsel = (C.W[rows][:, cols].double().cpu() * C.mW[rows][:, cols].cpu())
            targets -= self.psi.phi0 * Wsel.sum((1, 2))
        true_targets = targets.clone()
        if self.calib is not None:
            shift = self._mean_error(C, rows)
            targets -= shift
            self.bias_shift[inf["tl"]] = max(self.bias_shift.get(inf["tl"], 0.0), float(shift.abs().max()))
        crow = torch.tensor(P.const_rows, dtype=torch.long)
        kappa = self._const_value(P, crow)
        use = kappa.abs() > 1e-3  # ReLU constants with beta <= 0 output 0: useless
        crow, kappa = crow[use][-subsetsum.MAX_N:], kappa[use][-subsetsum.MAX_N:]
        if len(crow) == 0:
            raise ConstructionError(f"source layer {P.index} has no usable constant neuron; raise rho_b")
        tc = C.centre  # constants reach the bias through one tap that is inside the image everywhere
        w = C.W[rows][:, crow, tc].double().cpu()
        res = self._run(w * kappa, targets, self.cfg.eps_for(inf["tl"]))
        allc = torch.tensor(P.const_rows, dtype=torch.long)  # clear any earlier choice, then set this one
        C.mW[rows.view(-1, 1).expand(-1, len(allc)), allc.view(1, -1).expand(len(rows), -1), tc] = False
        sel = res.mask
        C.mW[rows.view(-1, 1).expand_as(sel)[sel], crow.view(1, -1).expand_as(sel)[sel], tc] = True
        self._keep_constant(P, crow[sel.any(0)])
        # the certificate measures the realised bias against the target's own (a correction is an error there)
        inf["bias_err"][rows] = (res.sum.double() - true_targets).abs()
        inf["bias_real"][rows] = res.sum.double()
        inf["bias_ok"][rows] = res.ok
        return res.ok

    # -- bias correction on a calibration sample ------------------------------------------------------
    # Every pruned weight misses its target by up to eps_param, and in L+1 every copy carries its own
    # error into the next layer; over real inputs these errors have a mean, which shifts each unit like a
    # wrong bias. Solving the bias for "target bias - mean error over the sample" removes that shift
    # (the bias correction of post-training quantisation). It changes only which constants are kept.
    @staticmethod
    def _lin(h: torch.Tensor, w3: torch.Tensor, geo: dict | None) -> torch.Tensor:
        """Layer C's pre-activation (no bias) for inputs h [N, cols, ...] and weights [rows, cols, taps]."""
        if geo is not None and geo.get("op") == "conv":
            kh, kw = geo["kernel"]
            return F.conv2d(h, w3.reshape(w3.shape[0], w3.shape[1], kh, kw), None, geo["stride"], geo["padding"])
        return h.reshape(h.shape[0], -1) @ w3.reshape(w3.shape[0], -1).T

    def _calib_pre(self, C: _Layer, rows: torch.Tensor) -> torch.Tensor:
        """Realised pre-activation (without bias) of ``rows`` of C on the calibration sample."""
        inf = self.info[C.index]
        P = self.src.layers[self._reads(C)]
        if inf["product"]:  # through the univariate layer: its effective weights p (and q, sign trick)
            h = self._calib_out(self._reads(P))
            p, q = inf["p"][rows], inf["q"][rows]
            if self.sign_trick:
                a = self.psi.slope
                return self._lin(h.clamp(min=0), p - a * q, C.geo) + self._lin(h.clamp(max=0), a * p - q, C.geo)
            return self._lin(h, p, C.geo)  # linearised copies: the first-order part (phi(0) is in the bias)
        cols = torch.tensor([c for rs in P.copy_rows.values() for c in rs], dtype=torch.long)
        w = (C.W[rows][:, cols] * C.mW[rows][:, cols]).double().cpu()
        return self._lin(self._calib_out(P.index)[:, cols], w, C.geo)

    def _calib_out(self, k: int) -> torch.Tensor:
        """Realised output of source layer k's rows on the calibration sample (-1: the sample)."""
        if k < 0:
            return self.calib
        L = self.src.layers[k]
        hit = self._calib_cache.get(k)
        if hit is not None and hit[0] == L.R:
            return hit[1]
        z = self._calib_pre(L, torch.arange(L.R))
        z = z + self.info[k]["bias_real"][:L.R].view(1, -1, *[1] * (z.dim() - 2))
        if L.add_from is not None:
            z = z + self._calib_out(L.add_from)
        if L.act is not None:
            z = acts_mod.get(L.act).module()(z)
        for op in L.post:
            z = apply_op(op, z)
        self._calib_cache[k] = (L.R, z)
        return z

    def _mean_error(self, C: _Layer, rows: torch.Tensor) -> torch.Tensor:
        """Mean over the sample (and positions) of realised minus target pre-activation, per row."""
        inf = self.info[C.index]
        tl = inf["tl"]
        if tl not in self._t_pre:  # the target's pre-activation (no bias) of layer tl, once per layer
            src = _input_of(self.t, tl)
            self._t_pre[tl] = self._lin(self.calib if src < 0 else self._t_outs[src], self.t.w3(tl),
                                        self._geo(tl)["geo"])
        z_t = self._t_pre[tl]
        z = self._calib_pre(C, rows)
        d = z - z_t[:, inf["neuron"][rows]]
        return d.transpose(0, 1).reshape(len(rows), -1).mean(1)

    def _grow_unit(self, P: _Layer, units: list[int]):
        """One more candidate neuron for each of ``units`` in layer P (and its own solution if P is a copy layer)."""
        if P.unit_rows:  # two copies per unit: with the sign trick each lands on a random side
            units = [j for j in units for _ in range(2)]
            new = self.src.add_rows(P, len(units))
            for r, j in zip(new, units):
                P.unit_rows[j].append(r)
            P.mW[torch.tensor(new), torch.tensor(units), 0] = True
        else:
            # layers joined by row-by-row skips grow together, so row r stays a copy of the same channel
            group = self._group(P)
            added = {}
            for M in group:
                added[M.index] = self.src.add_rows(M, len(units))
                self._fit_info(M)
                self.info[M.index]["neuron"][torch.tensor(added[M.index])] = torch.tensor(units)
            for M in group:
                self._solve_rows(M, self.src.layers[self._reads(M)], added[M.index])
                for r, j in zip(added[M.index], units):
                    M.copy_rows[j].append(r)
            new = [r for rs in added.values() for r in rs]
        self.src.grown += len(new)

    def _group(self, P: _Layer) -> list[_Layer]:
        """P and every layer joined to it by row-by-row skips (L+1 residual), in build order."""
        seen, todo = {P.index}, [P.index]
        while todo:
            for k in self.src.layers[todo.pop()].links:
                if k not in seen:
                    seen.add(k)
                    todo.append(k)
        return [self.src.layers[k] for k in sorted(seen)]

    def _reads(self, P: _Layer) -> int:
        return P.index - 1 if P.input_layer is None else P.input_layer

    def _partner(self, P: _Layer) -> _Layer | None:
        """The copy layer P adds row by row (L+1 residual), if any."""
        if P.add_from is None or P.add_from < 0 or P.add_from not in self.info or self.cfg.mode != "L+1":
            return None
        return self.src.layers[P.add_from]

    def _const_value(self, P: _Layer, rows: torch.Tensor) -> torch.Tensor:
        """Output of constant rows of P (its bias, plus the constant added by a row-by-row skip)."""
        z = P.b[rows].double().cpu()
        partner = self._partner(P)
        if partner is not None and partner.act is not None:  # (a linear shortcut's constant rows are pruned: 0)
            z = z + self._const_value(partner, rows)
        act = acts_mod.get(P.act) if P.act else acts_mod.get("identity")
        return act(z)

    def _keep_constant(self, P: _Layer, rows: torch.Tensor) -> None:
        """Constants in use keep their bias, and so do the constants their skip adds."""
        P.mb[rows] = True
        partner = self._partner(P)
        if partner is not None and partner.act is not None:
            self._keep_constant(partner, rows)

    def _grow_constants(self, P: _Layer, n: int = 2):
        for M in self._group(P):  # (joined layers keep equal layouts)
            new = self.src.add_rows(M, n)
            M.const_rows.extend(new)
            if M.index in self.info:
                self._fit_info(M)
            self.src.grown += len(new)

    def _settle_pairs(self, C: _Layer, P: _Layer, r: torch.Tensor, u: torch.Tensor) -> None:
        """Solve pairs (r[k], u[k]) of C; failed pairs get one more candidate each round and are solved again."""
        ok = self._solve_pairs(C, P, r, u, clear=False)
        self.stats["failed_first_try"] += int((~ok).sum())
        for _ in range(self.cfg.max_growth_rounds):
            if ok.all():
                break
            r, u = r[~ok], u[~ok]
            self._grow_unit(P, sorted(set(u.tolist())))
            self._fit_info(C)
            ok = self._solve_pairs(C, P, r, u)
        self.stats["unresolved"] += int((~ok).sum())

    # -- error compensation on the calibration sample --------------------------------------------
    # Bias correction removes the mean of the errors; their spread remains: each row's pre-activation
    # error is sum_f d_f z_f over its input features z. Solving the inputs in order and shifting the
    # subset-sum targets of the inputs not yet solved by the least-squares best response to the errors
    # already made (optimal brain surgeon / GPTQ: with H = E[z z^T] and U the upper Cholesky factor of
    # H^-1, errors d_B of a block B move the later targets by d_B U_BB^-1 U_BR) cancels the part of the
    # error that correlated inputs can absorb. Every instance is still solved to eps_param, around its
    # shifted target; the certificate measures weights against the target's own.
    # at most this many (example, position) rows estimate a conv layer's H (seeded subsample); layers with
    # more effective weights per row than COMP_FEATURES (e.g. a Linear head over a whole feature map: an
    # H of 25k x 25k) are solved without compensation
    COMP_ROWS = 20_000
    COMP_FEATURES = 4096

    def _features(self, C: _Layer, P: _Layer) -> torch.Tensor | None:
        """[rows, n_in * S * T]: what each effective weight of C multiplies on the calibration sample
        (conv layers: every (example, output position) is a row; its patch is the features), or None
        where the layer is left uncompensated (too many weights per row; conv layers in L+1)."""
        inf = self.info[C.index]
        if inf["product"]:
            h = self._calib_out(self._reads(P)).double()
            parts = [h.clamp(min=0), h.clamp(max=0)] if self.sign_trick else [h]
        else:  # copy layers: every copy of unit j carries about the target's h_j
            parts = [self._t_outs[_input_of(self.t, inf["tl"])].double()]
        S, N, n_in = len(parts), parts[0].shape[0], inf["p"].shape[1]
        if n_in * S * C.T > self.COMP_FEATURES:
            return None
        if C.geo is not None and C.geo.get("op") == "conv":
            if self.cfg.mode == "L+1":  # measured: it raised the error of a small L+1 ResNet 1.6x (copy errors
                return None             # dominate there and the target's activations are a poor model of them)
            x = torch.stack(parts, 2)  # [N, C, S, H, W]: unfold's channel index is (c * S + s), taps row-major
            x = x.reshape(N, -1, *x.shape[3:])
            Z = F.unfold(x, C.geo["kernel"], padding=C.geo["padding"], stride=C.geo["stride"])
            Z = Z.transpose(1, 2).reshape(-1, Z.shape[1])
            if Z.shape[0] > self.COMP_ROWS:
                g = torch.Generator().manual_seed(self.seed)
                Z = Z[torch.randperm(Z.shape[0], generator=g)[:self.COMP_ROWS]]
        elif parts[0].dim() > 2:  # a Linear layer reading a feature map: unit = channel, tap = position
            Z = torch.stack(parts, 2).reshape(N, -1)
        else:
            Z = torch.stack(parts, 2)  # [N, n_in, S]
            if inf["tl"] == 0 and len(self.const_inputs):
                Z[:, self.const_inputs] = 0.0
            Z = Z.reshape(N, -1)
        return Z if Z.shape[1] == n_in * S * C.T else None

    def _comp_factor(self, C: _Layer, P: _Layer) -> torch.Tensor | None:
        if C.index not in self._comp:
            Z = self._features(C, P)
            if Z is None:
                self._comp[C.index] = None
                return None
            H = Z.T @ Z / Z.shape[0]
            d = H.diagonal().clone()
            dead = d <= 1e-12 * float(d.max().clamp(min=1e-300))
            H[dead] = 0.0
            H[:, dead] = 0.0
            idx = torch.arange(len(d))
            H[idx, idx] = torch.where(dead, torch.ones_like(d), d + 0.01 * float(d[~dead].mean()))  # 1% damping
            Hi = torch.cholesky_inverse(torch.linalg.cholesky(H))
            self._comp[C.index] = torch.linalg.cholesky(Hi, upper=True)
        return self._comp[C.index]

    def _solve_compensated(self, C: _Layer, P: _Layer, rows: torch.Tensor, units: torch.Tensor, U) -> None:
        inf = self.info[C.index]
        S = 2 if inf["product"] and self.sign_trick else 1
        a = self.psi.slope if S == 2 else 0.0
        n_in, R, T = inf["p"].shape[1], len(rows), C.T
        # blocks of units between updates: about 48 solver calls per large layer (one unit per call costs
        # 16x the calls for a few % less error on LeNet), single units in small layers
        bs = max(1, min(16, n_in // 48))
        self.comp_block[inf["tl"]] = bs
        w = self.t.w3(inf["tl"])[inf["neuron"][rows]]  # [R, n_in, T]
        # weights that are exactly 0 in the target (pruned, e.g. by IMP) stay 0 and absorb nothing (as in
        # SparseGPT): the ticket keeps the target's sparsity and those pairs need no solving
        live = w.ne(0)
        delta = torch.zeros(R, n_in, S, T, dtype=torch.float64)  # shift of each effective weight's target
        for b0 in range(0, len(units), bs):
            ub = units[b0:b0 + bs]
            D = delta[:, ub]  # [R, b, S, T]
            # sign trick: the side targets p*, q* move so that the effective weights (p - a q, a p - q) move by D
            sides = torch.stack([(D[:, :, 0] - a * D[:, :, 1]), (a * D[:, :, 0] - D[:, :, 1])], 2) / (1 - a * a) \
                if S == 2 else D
            inf["shift"][rows.view(-1, 1), ub.view(1, -1), :S] = sides
            r, u = rows.repeat_interleave(len(ub)), ub.repeat(R)
            nz = live[:, ub].any(-1).reshape(-1)
            self.stats["zero_weights"] += int((~nz).sum())
            self._settle_pairs(C, P, r[nz], u[nz])
            p, q = inf["p"][rows][:, ub], inf["q"][rows][:, ub]  # [R, b, T]
            real = torch.stack([p - a * q, a * p - q], 2) if S == 2 else p.unsqueeze(2)
            d = (real - w[:, ub].unsqueeze(2) - D).reshape(R, -1)
            fB = (ub.view(-1, 1) * (S * T) + torch.arange(S * T)).reshape(-1)
            f0 = int(fB.max()) + 1
            if f0 < n_in * S * T:
                K = torch.linalg.solve_triangular(U[fB][:, fB], U[fB][:, f0:], upper=True)
                keep = live[:, f0 // (S * T):].unsqueeze(2).expand(-1, -1, S, -1).reshape(R, -1)
                delta.view(R, -1)[:, f0:] += (d @ K) * keep
        tl = inf["tl"]
        self.comp_shift[tl] = max(self.comp_shift.get(tl, 0.0), float(delta.abs().max()))

    def _solve_rows(self, C: _Layer, P: _Layer, rows: list[int]):
        """Solve every pair and the bias of ``rows``; repair failures by growing P."""
        inf = self.info[C.index]
        self._fit_info(C)
        n_in = inf["p"].shape[1]
        rows_t = torch.tensor(rows, dtype=torch.long)
        units = torch.arange(n_in)
        if inf["tl"] == 0 and len(self.const_inputs):  # folded into the bias: no weight to build
            keep = torch.ones(n_in, dtype=torch.bool)
            keep[self.const_inputs] = False
            units = units[keep]
        U = self._comp_factor(C, P) if self.cfg.compensate and self.calib is not None else None
        if U is not None:
            self._solve_compensated(C, P, rows_t, units, U)
        else:
            r, u = rows_t.repeat_interleave(len(units)), units.repeat(len(rows))
            # a weight that is exactly 0 (pruned targets, e.g. found by IMP) is met exactly by the empty
            # subset under every objective: nothing to solve or keep
            nz = self.t.w3(inf["tl"])[inf["neuron"][r], u].reshape(len(r), -1).ne(0).any(1)
            self.stats["zero_weights"] += int((~nz).sum())
            self._settle_pairs(C, P, r[nz], u[nz])
        bad = rows_t
        okb = self._solve_biases(C, P, bad)
        self.stats["failed_first_try"] += int((~okb).sum())
        for _ in range(self.cfg.max_growth_rounds):
            if okb.all():
                break
            bad = bad[~okb]
            self._grow_constants(P, 4)
            self._fit_info(C)
            okb = self._solve_biases(C, P, bad)
        self.stats["unresolved"] += int((~okb).sum())

    # -- the two layouts -------------------------------------------------------------------------
    def _geo(self, l: int) -> dict:
        """Source layer geometry of target layer l: taps, op description, post ops, bias tap."""
        if not self.t.geometry:
            return {"taps": 1, "geo": {"op": "linear"}, "post": [], "centre": 0}
        g = self.t.geometry[l]
        kh, kw = g["kernel"]
        if g["kind"] == "conv":
            ph, pw = g["padding"]
            op = {"op": "conv", "kernel": [kh, kw], "stride": g["stride"], "padding": [ph, pw]}
            centre = ph * kw + pw  # tap (ph, pw) reads input (y * stride) at every output y: always inside
        else:
            op, centre = {"op": "linear"}, 0
        post = [o for o in g.get("post", []) if o["op"] != "flatten"]  # the source's Linear flattens its input
        return {"taps": kh * kw, "geo": op, "post": post, "centre": centre}

    def _spatial_in(self, l: int) -> bool:
        return bool(self.t.geometry) and len(self.t.geometry[l]["in_shape"]) == 3

    def build(self):
        t, cfg = self.t, self.cfg
        L = t.depth
        if cfg.mode == "L+1":
            # residual targets: a layer that adds a branch gets the branch's row layout (row r of both
            # copies the same target channel), and the source adds branch row r to row r: the skip is exact
            c_of = {-1: self.univariate_layer(t.weights[0].shape[1], self._a_scale(0), self._b_scale(0),
                                              spatial=self._spatial_in(0)).index}
            for l in range(L):
                self.log(f"layer {l + 1}/{L}: solving {t.weights[l].numel():,} target weights")
                last = l == L - 1
                n_l, n_in = t.weights[l].shape[:2]
                prev = self.src.layers[c_of[_input_of(t, l)]]
                add = _add_of(t, l)
                partner = self.src.layers[c_of[add["from"]]] if add is not None else None
                if partner is not None:
                    rows_n = partner.R
                else:
                    copies = 1 if last else cfg.rho
                    rows_n = n_l * copies + (0 if last else cfg.rho_b)
                g = self._geo(l)
                C = self.src.add_layer(rows_n, prev.R, self._w_scale(l, _input_of(t, l) < 0),
                                       2.0 if last else self._b_scale_after(l),
                                       None if last else t.activations[l], g["taps"], g["geo"], g["post"],
                                       g["centre"], reads=prev.index)
                C.add_from = partner.index if partner is not None else None
                self._new_info(C, n_in, l, product=_input_of(t, l) < 0)
                self._fit_info(C)
                if partner is not None:
                    C.copy_rows = {i: list(rs) for i, rs in partner.copy_rows.items()}
                    C.const_rows = list(partner.const_rows)
                    self.info[C.index]["neuron"][:] = self.info[partner.index]["neuron"][:rows_n]
                    partner.links.add(C.index)
                    C.links.add(partner.index)
                else:
                    C.copy_rows = {i: list(range(i * copies, (i + 1) * copies)) for i in range(n_l)}
                    C.const_rows = [] if last else list(range(n_l * copies, rows_n))
                    self.info[C.index]["neuron"][:n_l * copies] = torch.arange(n_l).repeat_interleave(copies)
                self._solve_rows(C, prev, [r for rs in C.copy_rows.values() for r in rs])
                c_of[l] = C.index
        else:  # 2L: per target layer a univariate layer (reading the previous pair's outputs) + an assembling layer
            # residual targets: U reads the assembling layer of the target layer's input, and the
            # assembling layers (which carry exactly the target's channels) add their branch as the target does
            a_of = {-1: -1}  # target layer -> its assembling layer in the source
            for l in range(L):
                self.log(f"layer {l + 1}/{L}: solving {t.weights[l].numel():,} target weights")
                last = l == L - 1
                n_out, n_in = t.weights[l].shape[:2]
                U = self.univariate_layer(n_in, self._a_scale(l), self._b_scale(l), spatial=self._spatial_in(l),
                                          reads=a_of[_input_of(t, l)])
                g = self._geo(l)
                A = self.src.add_layer(n_out, U.W.shape[0], self._w_scale(l, True), 1.0,
                                       None if last else t.activations[l], g["taps"], g["geo"], g["post"],
                                       g["centre"])
                add = _add_of(t, l)
                A.add_from = a_of[add["from"]] if add is not None else None
                a_of[l] = A.index
                A.copy_rows = {i: [i] for i in range(n_out)}
                self._new_info(A, n_in, l, product=True)
                self._fit_info(A)
                self.info[A.index]["neuron"][:] = torch.arange(n_out)
                self._solve_rows(A, U, list(range(n_out)))

    def _a_scale(self, l: int) -> float:
        if self.psi.kind == "smooth" and self.cfg.first_layer == "linearize":
            return self.cfg.s1 / max(float(self.H[l].max()), 1e-12)
        return 1.0

    def _b_scale(self, l: int) -> float:
        """Bias scale of the constant neurons that carry target layer l's biases (read by its product layer)."""
        return _reach_scale(self.psi.name, float(self.t.biases[l].abs().max()), self._w_scale(l, True))

    def _b_scale_after(self, l: int) -> float:
        """Bias scale of L+1 copy layer l, whose constant neurons carry the biases of the layers reading it."""
        readers = [k for k in range(self.t.depth) if _input_of(self.t, k) == l]
        if not readers:
            return 2.0
        max_bias = max(float(self.t.biases[k].abs().max()) for k in readers)
        return _reach_scale(self.t.activations[l] or "identity", max_bias, min(self._w_scale(k, False) for k in readers))

    def _w_scale(self, l: int, product: bool) -> float:
        # product layers: 1.5x the largest target parameter, so targets stay within 2/3 of the scale where
        # sums of products are dense (at the edge of the range they fail far more often); plain layers: 1x,
        # since larger candidates raise the l1 masses that amplify errors (theory.md §3.5)
        W, b = self.t.weights[l], self.scale_biases[l]
        m = (1.5 if product else 1.0) * max(float(W.abs().max()), float(b.abs().max()), 1e-6)
        if product and self.psi.kind == "smooth" and self.cfg.first_layer == "linearize":
            return m / (self._a_scale(l) * self.psi.dphi0)
        return m

    # -- certificate -------------------------------------------------------------------------------
    def certificate(self) -> tuple[float, list[float]]:
        """A-posteriori bound on sup |target - ticket| over the box, and the bound after each layer.

        Also sets ``self.own`` / ``self.amp``: per layer, the error it adds by itself and the factor
        by which it amplifies the error it receives (e_l <= own_l + amp_l * e_(l-1), about), which
        guarantee mode uses to give each layer its own tolerance."""
        t = self.t
        errs = []
        self.own, self.amp = [], []
        e_out = {-1: 0.0}  # sup error of each target layer's output (residual graphs: per layer, not a chain)
        layers = [k for k in sorted(self.info)]
        for l, k in enumerate(layers):
            e_prev = e_out[_input_of(t, l)]
            inf, C = self.info[k], self.src.layers[k]
            rows = torch.tensor([r for rs in C.copy_rows.values() for r in rs], dtype=torch.long)
            neu = inf["neuron"][rows]
            w = t.w3(l)[neu]  # [R, n_in, T]; every tap of a unit reads values within the unit's bounds
            p, q, l1v = inf["p"][rows], inf["q"][rows], inf["l1v"][rows]
            Hin = self.H[l].view(1, -1, 1)
            if inf["product"]:
                U = Hin + e_prev
                if self.sign_trick:
                    a = self.psi.slope
                    # the univariate layer's input range: the box itself for l = 0, else |h| + e
                    up, dn = ((self.hi.clamp(min=0).view(1, -1, 1), (-self.lo).clamp(min=0).view(1, -1, 1))
                              if _input_of(t, l) < 0 else (U, U))
                    E = torch.maximum((p - a * q - w).abs() * up, (a * p - q - w).abs() * dn)
                    lip = torch.maximum((p - a * q).abs(), (a * p - q).abs())
                    gap = torch.maximum((p - a * q - w).abs(), (a * p - q - w).abs())
                else:
                    if self.psi.kind == "smooth" and self.psi.name != "identity":
                        R = torch.tensor([self.psi.remainder(self._a_scale(l) * float(x)) for x in U.flatten()],
                                         dtype=torch.float64).view(1, -1, 1)
                    else:
                        R = torch.zeros_like(U)
                    E = (p - w).abs() * U + l1v * R
                    lip = p.abs()
                    gap = (p - w).abs()
                err = (E + lip * e_prev).sum((1, 2))
                own, coef = (E - gap * e_prev).sum((1, 2)), (lip + gap).sum((1, 2))
            else:
                err = ((p - w).abs() * Hin).sum((1, 2)) + e_prev * l1v.sum((1, 2))
                own, coef = ((p - w).abs() * Hin).sum((1, 2)), l1v.sum((1, 2))
            err = err + inf["bias_err"][rows]
            act = t.activations[l] if l < t.depth - 1 else None
            M = 1.0 if act is None else acts_mod.get(act).lip
            add = _add_of(t, l)
            e_add = e_out[add["from"]] if add is not None else 0.0  # the residual branch's error adds
            self.own.append(M * float((own + inf["bias_err"][rows]).max()))
            self.amp.append(M * float(coef.max()))
            e_out[l] = M * (float(err.max()) + e_add)
            errs.append(e_out[l])
        return e_out[t.depth - 1], errs

    def unresolved_per_layer(self) -> list[dict]:
        """Per target layer: weight and bias instances left outside their tolerance after every growth round."""
        out = []
        for k in sorted(self.info):
            inf, C = self.info[k], self.src.layers[k]
            rows = torch.tensor([r for rs in C.copy_rows.values() for r in rs], dtype=torch.long)
            ok = inf["ok"][rows]
            if inf["tl"] == 0 and len(self.const_inputs):  # folded inputs have no weights to build
                ok[:, self.const_inputs] = True
            bad_b = ~inf["bias_ok"][rows]
            out.append({"weights": int((~ok).sum()), "biases": int(bad_b.sum()),
                        "max_bias_error": float(inf["bias_err"][rows][bad_b].max()) if bad_b.any() else 0.0})
        return out

    def sensitivities(self) -> list[float]:
        """d(final bound) / d(error added at layer l's output): products of the later amplifications
        along every path (a chain: the product of the amp of all later layers)."""
        t = self.t
        sens = [0.0] * t.depth
        sens[-1] = 1.0
        for c in range(t.depth - 1, -1, -1):
            src = _input_of(t, c)
            if src >= 0:
                sens[src] += sens[c] * self.amp[c]
            add = _add_of(t, c)
            if add is not None and add["from"] >= 0:
                act = t.activations[c] if c < t.depth - 1 else None
                sens[add["from"]] += sens[c] * (1.0 if act is None else acts_mod.get(act).lip)
        return sens


def _reach_scale(act: str, max_bias: float, w_scale: float) -> float:
    """Bias scale of constant neurons with activation ``act`` that must reach bias targets up to
    ``max_bias`` with weights of scale ``w_scale``: U[-2, 2] as in the LT-existence code, widened for
    an unbounded activation (ReLU-type) until the largest target lies within 2/3 of the largest
    constant x weight product, the rule the weights follow. (MNIST's folded border pixels give
    first-layer biases near -8, which constants up to 2 left unresolved.) A bounded activation
    saturates, so a wider scale would not give larger constants."""
    if float(acts_mod.get(act).module()(torch.tensor(100.0))) < 50.0:
        return 2.0
    return max(2.0, 1.5 * max_bias / w_scale)


def _auto_s1(psi: acts_mod.Activation, ep: float, t: TargetMLP) -> float:
    """Scale of the linearised first layer: its remainder costs at most ~ep/2 per assembled row.

    A row sums about ``n_in`` subsets of ~2.3 candidates of size ``m / (s1 phi'(0))`` each
    evaluated with remainder ``R(s1)``; halve s1 until that estimate fits.
    """
    n_in = t.widths[0] * t.w3(0).shape[2]  # instances per row: units x kernel taps
    m = max(float(t.weights[0].abs().max()), float(t.biases[0].abs().max()), 1e-6)
    s1 = 0.5
    while s1 > 1e-6 and n_in * 2.3 * m / (s1 * psi.dphi0) * psi.remainder(s1) > ep / 2:
        s1 /= 2
    return s1


def _default_rho(eps_rel: float, delta: float, product: bool) -> int:
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


def construct(target: nn.Module, mode: str = "L+1", eps: float = 0.01, seed: int = 0, domain=(-1.0, 1.0), *,
              eps_param: float | None = None, delta: float = 0.01, rho: int | None = None,
              rho_first: int | None = None, rho_b: int | None = None, first_layer: str | None = None,
              objective: str | None = None, s1: float | None = None, max_growth_rounds: int = 40,
              max_rounds: int = 8, input_shape=None, calibration: torch.Tensor | None = None,
              copy_objective: str | None = None, compensate: bool = False, log=None) -> Ticket:
    """Prune one random source network (drawn from ``seed``) into a ticket within ``eps`` of ``target``.

    ``eps`` bounds ``max |target(x) - ticket(x)|`` over the box ``domain``: the construction picks
    the per-parameter tolerance itself from the error certificate. ``eps_param=`` instead solves
    every subset sum to that tolerance (the papers' mode) and reports the resulting certificate.
    The construction runs on the CPU (its solver kernels are compiled for it); the ticket's
    networks go to any device with ``ticket.network(device)``.

    Convolutional targets (Conv2d / BatchNorm / pooling / Linear head, see
    :func:`lotterylab.target.read_net`) need ``input_shape=(C, H, W)`` unless the model carries it
    (zoo models) or ``domain`` is an image sample; their domain bounds are per channel.

    ``calibration=`` (paper mode only): inputs, e.g. a few thousand training examples, on which every
    unit's bias is solved for its target minus the mean error the pruned weights below it cause there
    (bias correction). Weights are untouched; the report records the largest shift per layer.
    ``compensate=True`` (needs ``calibration``; fully connected layers, and conv layers in 2L) also solves each layer's inputs
    in blocks, in order, and shifts the subset-sum targets of the inputs not yet solved so that they
    cancel, in least squares over the sample, the errors already made (GPTQ-style error compensation).
    ``log``: a callable that receives one line per layer and round (progress of long constructions).
    """
    if mode not in MODES:
        raise ConstructionError(f"mode must be one of {MODES}, got {mode!r}")
    for name, val in (("eps", eps), ("eps_param", eps_param)):
        if val is not None and (not isinstance(val, (int, float)) or not math.isfinite(val) or val <= 0):
            raise ConstructionError(f"{name} must be a finite number > 0, got {val!r}")
    if not 0 < delta < 1:
        raise ConstructionError(f"delta must be in (0, 1), got {delta}")
    if objective is None:  # guarantee mode keeps l1 masses small (they amplify errors); paper mode as the papers
        objective = "min_l1" if eps_param is None else "min_cardinality"
    for name, val in (("objective", objective), ("copy_objective", copy_objective or objective)):
        if val not in ("min_l1", "min_cardinality", "min_error"):
            raise ConstructionError(f"{name} must be min_l1, min_cardinality or min_error, got {val!r}")
    t = _read_target(target, input_shape, domain)
    for a in t.activations:
        if a is not None:  # (None: a residual shortcut layer, linear)
            acts_mod.get(a)  # refuses activations the constructions cannot handle
    first_name = t.activations[0] if t.depth > 1 else "relu"
    psi = acts_mod.get(first_name)
    if first_layer is None:
        first_layer = "sign_trick" if psi.kind == "relu_like" else "linearize"
    if first_layer not in FIRST_LAYER_MODES:
        raise ConstructionError(f"first_layer must be one of {FIRST_LAYER_MODES}, got {first_layer!r}")
    if first_layer == "sign_trick" and psi.kind != "relu_like":
        raise ConstructionError(f"the sign trick needs a ReLU-type activation, the target uses {first_name}; use "
                                f"first_layer='linearize' (or 'identity')")
    if first_layer == "linearize" and psi.kind != "smooth":
        raise ConstructionError(f"linearize needs a smooth activation with phi'(0) != 0, the target uses {first_name}")
    if mode == "2L" and first_layer != "identity":
        for a in t.activations:
            if a is not None and acts_mod.get(a).kind != psi.kind:
                raise ConstructionError("2L with mixed activation kinds is not supported")
    device = torch.device("cpu")
    if t.geometry:
        _check_net(t, psi, first_layer)
    lo, hi = _domain_box(domain, t.widths[0], channels=bool(t.geometry))
    t0 = time.perf_counter()
    scale_biases = list(t.biases)  # scales and widths follow the target's own biases, not the folded ones
    t, const_inputs = _fold_constant_inputs(t, lo, hi)
    calib = _calibration_sample(calibration, t, eps_param)
    if compensate and calib is None:
        raise ConstructionError("compensate=True needs calibration= (a sample of inputs, e.g. 2000 training "
                                "examples) and eps_param=: it cancels errors in least squares over that sample")

    guarantee = eps_param is None
    ep = eps_param if eps_param is not None else eps / (10.0 * t.depth)  # first guess; the certificate corrects it
    layer_eps = [ep] * t.depth
    history = []
    best = None
    for rnd in range(max_rounds if guarantee else 1):
        ep = min(layer_eps)
        # widths from the calibration, at the tolerance relative to the largest layer scale
        wmax = max(float(max(W.abs().max(), b.abs().max())) for W, b in zip(t.weights, scale_biases))
        eps_rel = max(ep / max(wmax, 1e-6), 1e-5)
        sign = psi.kind == "relu_like" and first_layer == "sign_trick"
        r = rho or _default_rho(eps_rel, delta, product=False)
        r1 = rho_first or (2 * _default_rho(eps_rel, delta, product=True) if sign else
                           _default_rho(eps_rel, delta, product=True))
        r1 = min(r1, 2 * subsetsum.MAX_N if sign else subsetsum.MAX_N)
        rb = rho_b or min(40, 2 * r)  # ReLU: about half the constants are usable (beta > 0)
        s1_r = s1 if s1 is not None else (_auto_s1(psi, layer_eps[0], t) if first_layer == "linearize" else 1.0)
        if first_layer == "linearize" and s1_r < 2e-5:
            raise ConstructionError(
                f"linearising {psi.name} in the first layer needs input weights of scale {s1_r:.1e} for "
                f"eps_param={ep:.2e} (its quadratic remainder), which makes the next layer's subset sums unsolvable; "
                f"use first_layer='identity' (idealised, labelled in the report) or a larger eps")
        cfg = _Cfg(mode, ep, min(r, subsetsum.MAX_N), r1, rb, first_layer, objective, s1_r, max_growth_rounds,
                   list(layer_eps) if guarantee else None, copy_objective, compensate)
        c = _Constructor(t, cfg, seed, lo, hi, device, const_inputs, scale_biases, calib)
        if log is not None:
            c.log = log
            log(f"round {rnd + 1}: eps_param {ep:.3g}" if guarantee else f"paper mode, eps_param {ep:.3g}")
        c.build()
        cert, per_layer = c.certificate()
        history.append({"eps_param": ep, "layer_eps": list(layer_eps), "certificate": cert, "rho": cfg.rho,
                        "rho_first": cfg.rho_first, "rho_b": cfg.rho_b})
        if not guarantee:
            best = (c, cfg, cert, per_layer)
            break
        if cert <= eps:
            best = (c, cfg, cert, per_layer)
            if cert > eps / 4 or rnd == max_rounds - 1:
                break
            layer_eps = _retune(layer_eps, c, 0.8 * eps)  # widen: sparser, still certified
        else:
            if best is not None:
                break  # the previous, tighter round was certified
            if len(history) >= 2 and cert > history[-2]["certificate"] / 1.5:
                raise ConstructionError(f"the certificate stopped improving ({history[-2]['certificate']:.3g} -> "
                                        f"{cert:.3g}) while tightening eps_param to {ep:.2e}; unresolved subset sums: "
                                        f"{c.stats['unresolved']}. Raise rho / rho_b, or eps")
            layer_eps = _retune(layer_eps, c, 0.5 * eps)
    if best is None:
        raise ConstructionError(f"no certified ticket within eps={eps} after {max_rounds} rounds (last certificate "
                                f"{history[-1]['certificate']:.3g}); raise max_rounds, rho or eps")
    c, cfg, cert, per_layer = best
    ticket = _to_ticket(c, cfg, cert, per_layer, history, t, mode, eps, eps_param, seed, lo, hi,
                        time.perf_counter() - t0)
    ticket.report["constant_inputs_folded"] = len(const_inputs)
    # pruned targets (IMP) hold far fewer weights than their shape: the count to compare tickets with
    ticket.report["parameters"]["target_nonzero"] = sum(int(p.count_nonzero()) for p in target.parameters())
    ticket.report["bias_correction"] = None if calib is None else {
        "samples": int(calib.shape[0]), "max_shift_per_layer": [c.bias_shift.get(l, 0.0) for l in range(t.depth)]}
    ticket.report["compensation"] = None if not c.comp_shift else {
        "block_per_layer": [c.comp_block.get(l) for l in range(t.depth)],
        "max_target_shift_per_layer": [c.comp_shift.get(l) for l in range(t.depth)]}
    return ticket


def _calibration_sample(calibration, t: TargetMLP, eps_param) -> torch.Tensor | None:
    if calibration is None:
        return None
    if eps_param is None:
        raise ConstructionError("calibration= corrects biases in paper mode only (pass eps_param=); guarantee mode "
                                "certifies the worst case, which a mean correction does not improve")
    x = torch.as_tensor(calibration)
    n0 = t.widths[0] if not t.geometry else math.prod(t.input_shape)
    if x.dim() < 2 or x.shape[0] < 1 or x[0].numel() != n0:
        raise ConstructionError(f"calibration must be a sample [N, ...] of inputs with {n0} values each, got shape "
                                f"{tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ConstructionError("calibration sample has non-finite values")
    shape = tuple(t.input_shape) if t.geometry else (n0,)
    return x.reshape(x.shape[0], *shape).to("cpu", torch.float64)


def _fold_constant_inputs(t: TargetMLP, lo: torch.Tensor, hi: torch.Tensor) -> tuple[TargetMLP, torch.Tensor]:
    """Inputs that take one value over the whole domain (e.g. MNIST's border pixels over the data's box)
    contribute a constant: fold ``w_ij * c_j`` into the first layer's bias and drop their weights, so no
    subset sum is spent on them. Exact on the domain. Fully connected targets only (a padded conv
    would see zeros, not the constant, at image borders)."""
    const = lo == hi
    if t.geometry or not bool(const.any()):
        return t, const.nonzero().flatten()[:0]
    W0 = t.weights[0].clone()
    b0 = t.biases[0] + W0[:, const] @ lo[const]
    W0[:, const] = 0.0
    return replace(t, weights=[W0] + list(t.weights[1:]), biases=[b0] + list(t.biases[1:])), const.nonzero().flatten()


def _retune(layer_eps: list[float], c: _Constructor, goal: float) -> list[float]:
    """New per-layer tolerances: each layer's share of the certificate (its own error times the
    amplification of every layer after it) scaled to an equal part of ``goal``."""
    L = len(layer_eps)
    sens = c.sensitivities()
    out = []
    for l in range(L):
        contrib = c.own[l] * sens[l]
        f = (goal / L) / max(contrib, 1e-300)
        out.append(layer_eps[l] * min(2.0, max(f, 1e-4)))
    return out


def _read_target(target: nn.Module, input_shape, domain) -> TargetMLP:
    shape = input_shape
    if shape is None:
        shape = (getattr(target, "lotterylab_arch", None) or {}).get("input_shape")
    if shape is None and isinstance(domain, torch.Tensor) and domain.dim() == 4:
        shape = tuple(domain.shape[1:])
    if shape is not None:
        return read_net(target, shape)
    try:
        return read_mlp(target)
    except UnsupportedTarget as e:
        if "Conv2d" in str(e):
            raise UnsupportedTarget(f"{e}. Convolutional targets are supported: pass input_shape=(C, H, W)") from None
        raise


def _check_net(t: TargetMLP, psi: acts_mod.Activation, first_layer: str) -> None:
    """Convolutional layouts the construction cannot make exact at image borders are refused."""
    for name, g in zip(t.names, t.geometry):
        if g["kind"] == "conv":
            (kh, kw), (ph, pw) = g["kernel"], g["padding"]
            if 2 * ph > kh - 1 or 2 * pw > kw - 1:
                raise ConstructionError(f"layer {name!r}: padding {g['padding']} > (kernel - 1) / 2 leaves no kernel "
                                        f"tap inside the image at every output, so biases cannot be carried exactly")
            if max(ph, pw) > 0 and first_layer == "linearize" and psi.phi0 != 0:
                raise ConstructionError(f"layer {name!r}: a zero-padded conv after linearised {psi.name} copies "
                                        f"(phi(0) = {psi.phi0:.3g} != 0) would be wrong at image borders; use "
                                        f"first_layer='identity' or an activation with phi(0) = 0")
        for op in g.get("post", []):
            if op["op"] == "avgpool2d" and max(op["padding"]) > 0 and op.get("count_include_pad", True):
                raise ConstructionError(f"after layer {name!r}: AvgPool2d with padding and count_include_pad=True "
                                        f"makes constant channels non-constant at borders; use count_include_pad=False")


def _to_ticket(c: _Constructor, cfg: _Cfg, cert, per_layer, history, t: TargetMLP, mode, eps, eps_param, seed, lo, hi,
               wall) -> Ticket:
    src = c.src
    reads = [k - 1 if L.input_layer is None else L.input_layer for k, L in enumerate(src.layers)]
    adds = {L.add_from for L in src.layers if L.add_from is not None}
    # a row whose outgoing edges are all pruned contributes nothing: prune it entirely (when the
    # next layer is its only reader)
    for k in range(len(src.layers) - 2, -1, -1):
        L, nxt = src.layers[k], src.layers[k + 1]
        if k in adds or reads.count(k) != 1 or reads[k + 1] != k:
            continue
        used = nxt.mW.any(0).any(-1)
        L.mW[~used] = False
        L.mb[~used] = False
    widths = src.widths()
    acts = [L.act for L in src.layers[:-1]]
    init = {}
    masks = {}
    plan = []
    end = {-1: -1}  # source layer -> plan position of its output (after activation and pooling)
    for k, L in enumerate(src.layers):
        init[f"{L.name}.weight"] = {"dist": "uniform", "low": -L.w_scale, "high": L.w_scale, "address": "grid"}
        init[f"{L.name}.bias"] = {"dist": "uniform", "low": -L.b_scale, "high": L.b_scale}
        rows, cols = L.W.shape[:2]
        if L.geo is not None and L.geo["op"] == "conv":
            plan.append(dict(L.geo, **{"in": cols, "out": rows}))
            masks[f"{L.name}.weight"] = L.mW.cpu().reshape(rows, cols, *L.geo["kernel"])
        else:
            plan.append({"op": "linear", "in": cols * L.T, "out": rows})
            masks[f"{L.name}.weight"] = L.mW.cpu().reshape(rows, cols * L.T)
        masks[f"{L.name}.bias"] = L.mb.cpu()
        if L.input_layer is not None and end[reads[k]] != len(plan) - 2:  # not the op just before
            plan[-1]["input"] = end[reads[k]]
        if L.add_from is not None:
            plan[-1]["add"] = end[L.add_from]
        if L.act is not None:
            plan.append({"op": "act", "name": L.act})
        plan.extend(dict(op) for op in L.post)
        end[k] = len(plan) - 1
    if t.geometry:
        arch = {"name": "source_net", "activation": "relu", "input_shape": list(t.input_shape),
                "num_classes": widths[-1], "kwargs": {"plan": plan}}
    else:
        arch = {"name": "source_mlp", "activation": "relu", "input_shape": [1, 1, widths[0]],
                "num_classes": widths[-1], "kwargs": {"widths": widths, "acts": acts}}
    mask = Mask(masks)
    src_params = sum(L.W.numel() + L.b.numel() for L in src.layers)
    kept = mask.num_kept()
    report = {
        "mode": mode, "eps": eps, "eps_param": cfg.eps_param, "layer_eps": cfg.layer_eps, "guarantee_mode": eps_param is None,
        "first_layer": cfg.first_layer, "objective": cfg.objective,
        "copy_objective": cfg.copy_objective or cfg.objective,
        "rho": cfg.rho, "rho_first": cfg.rho_first, "rho_b": cfg.rho_b,
        "certificate": cert, "certificate_per_layer": per_layer,
        "depth": {"target": _longest_path([_input_of(t, k) for k in range(t.depth)],
                                          [(_add_of(t, k) or {}).get("from") for k in range(t.depth)]),
                  "source": _longest_path(reads, [L.add_from for L in src.layers])},
        "widths": {"target": t.widths, "source": widths},
        "parameters": {"target": t.num_parameters(), "source": src_params, "ticket": kept,
                       "source_per_target": src_params / t.num_parameters(), "ticket_per_target": kept / t.num_parameters()},
        "subset_sum": {"instances": c.stats["instances"], "zero_weights_skipped": c.stats["zero_weights"],
                       "failed_first_try": c.stats["failed_first_try"],
                       "unresolved": c.stats["unresolved"], "neurons_added": src.grown,
                       "mean_subset_size": c.stats["_size_sum"] / max(c.stats["instances"], 1),
                       "unresolved_per_layer": c.unresolved_per_layer()},
        "timings_s": {"total": wall, "subset_sum": c.stats["solve_time_s"]},
        "rounds": history,
        "domain": {"low": lo.tolist() if lo.numel() <= 64 else [float(lo.min())],
                   "high": hi.tolist() if hi.numel() <= 64 else [float(hi.max())]},
        "theory_width_bound": _theory_bound(t, cfg, mode),
    }
    return Ticket(arch, init, seed, mask, report)


def _longest_path(inputs: list[int], adds: list) -> int:
    """Weight layers on the longest input -> output path (a residual addition skips the layer)."""
    d = {-1: 0}
    for k, (i, a) in enumerate(zip(inputs, adds)):
        d[k] = max(1 + d[i], d[a] if a is not None else 0)
    return d[len(inputs) - 1]


def _theory_bound(t: TargetMLP, cfg: _Cfg, mode: str) -> dict:
    """The papers' source-size formulas at the rho used here, for comparison (theory.md §2.1, §3.1)."""
    n_in = [t.w3(i).shape[1] for i in range(t.depth)]
    n_out = [t.w3(i).shape[0] for i in range(t.depth)]
    if mode == "2L":
        params = sum(2 * cfg.rho * n_in[i] * (n_in[i] + n_out[i] * t.w3(i).shape[2]) for i in range(t.depth))
        return {"formula": "sum_i 2 n_i d_{i-1} (d_{i-1} + d_i) (Pensia et al.)", "source_parameters": params}
    params = cfg.rho ** 2 * sum((n_out[i] + 1) * (n_in[i] + 1) * t.w3(i).shape[2] for i in range(t.depth))
    return {"formula": "rho^2 sum_l (n_l + 1)(n_{l-1} + 1) (Burkholz 2022)", "source_parameters": params}
