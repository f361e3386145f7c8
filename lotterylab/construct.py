"""Strong lottery tickets by construction for fully connected targets: depth L+1 and 2L.

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
subsets' l1 masses, §3.5) is computed from the realised ticket; in guarantee mode the
per-parameter tolerance is tightened or widened until the certificate is <= eps.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from . import activations as acts_mod
from . import rng, subsetsum
from .masks import Mask
from .target import TargetMLP, read_mlp
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
    W: torch.Tensor
    b: torch.Tensor
    mW: torch.Tensor
    mb: torch.Tensor
    # roles of rows
    unit_rows: dict = field(default_factory=dict)   # univariate layer: input unit -> rows copying it
    copy_rows: dict = field(default_factory=dict)   # copy / assembling layer: target neuron -> rows
    const_rows: list = field(default_factory=list)  # constant neurons (own bias kept)
    dropped: int = 0                                # rows replaced after a failed instance

    @property
    def name(self) -> str:
        return f"linears.{self.index}"


class _Source:
    """Layers drawn from (seed, layer name) with grid addressing, growable by rows and columns."""

    def __init__(self, seed: int, device):
        self.seed, self.device = seed, device
        self.layers: list[_Layer] = []
        self.grown = 0  # neurons added because an instance failed

    def add_layer(self, rows: int, cols: int, w_scale: float, b_scale: float, act: str | None) -> _Layer:
        k = len(self.layers)
        L = _Layer(k, float(w_scale), float(b_scale), act,
                   W=torch.empty(0, cols, device=self.device), b=torch.empty(0, device=self.device),
                   mW=torch.zeros(0, cols, dtype=torch.bool, device=self.device),
                   mb=torch.zeros(0, dtype=torch.bool, device=self.device))
        self.layers.append(L)
        self.add_rows(L, rows)
        return L

    def add_rows(self, L: _Layer, n: int) -> list[int]:
        r0 = L.W.shape[0]
        if n <= 0:
            return []
        w = rng.uniform_grid(self.seed, rng.stream_id(L.name + ".weight"), (n, L.W.shape[1]), -L.w_scale, L.w_scale,
                             self.device, row_offset=r0)
        b = rng.uniform(self.seed, rng.stream_id(L.name + ".bias"), (n,), -L.b_scale, L.b_scale, self.device, offset=r0)
        L.W = torch.cat([L.W, w])
        L.b = torch.cat([L.b, b])
        L.mW = torch.cat([L.mW, torch.zeros(n, L.W.shape[1], dtype=torch.bool, device=self.device)])
        L.mb = torch.cat([L.mb, torch.zeros(n, dtype=torch.bool, device=self.device)])
        nxt = self.layers[L.index + 1] if L.index + 1 < len(self.layers) else None
        if nxt is not None:  # the layer above gains input columns
            c0 = nxt.W.shape[1]
            w2 = rng.uniform_grid(self.seed, rng.stream_id(nxt.name + ".weight"), (nxt.W.shape[0], n), -nxt.w_scale,
                                  nxt.w_scale, self.device, col_offset=c0)
            nxt.W = torch.cat([nxt.W, w2], dim=1)
            nxt.mW = torch.cat([nxt.mW, torch.zeros(nxt.W.shape[0], n, dtype=torch.bool, device=self.device)], dim=1)
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


def _domain_box(domain, n0: int) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(domain, torch.Tensor) and domain.dim() >= 2 and domain.shape[0] > 2 or (
            isinstance(domain, torch.Tensor) and domain.dim() >= 2 and domain.reshape(domain.shape[0], -1).shape[1] == n0
            and domain.shape[0] > 2):
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


def target_bounds(t: TargetMLP, lo: torch.Tensor, hi: torch.Tensor) -> list[torch.Tensor]:
    """|h^l_j| bounds over the box for every layer's input (l = 0: the inputs), by interval arithmetic."""
    H = [torch.maximum(lo.abs(), hi.abs())]
    zlo, zhi = lo, hi
    for k in range(t.depth - 1):
        W, b = t.weights[k], t.biases[k]
        Wp, Wn = W.clamp(min=0), W.clamp(max=0)
        lo2 = Wp @ zlo + Wn @ zhi + b
        hi2 = Wp @ zhi + Wn @ zlo + b
        act = acts_mod.get(t.activations[k])
        f = act.module()
        # the box of phi(z) (monotone activations; GELU / SiLU: their minimum when inside)
        a_lo, a_hi = f(lo2), f(hi2)
        if act.minimum is not None:
            inside = (lo2 <= act.minimum[0]) & (hi2 >= act.minimum[0])
            a_lo = torch.where(inside, torch.full_like(a_lo, act.minimum[1]), torch.minimum(a_lo, a_hi))
        zlo, zhi = torch.minimum(a_lo, a_hi), torch.maximum(a_lo, a_hi)
        H.append(torch.maximum(zlo.abs(), zhi.abs()))
    return H


def _solve(values: torch.Tensor, targets: torch.Tensor, eps: float, objective: str):
    """Solve padded instances (float64, CPU); padding candidates are 0 and never help."""
    return subsetsum.solve(values.double().cpu(), targets.double().cpu(), eps, objective)


class _Constructor:
    def __init__(self, t: TargetMLP, cfg: _Cfg, seed: int, lo, hi, device):
        self.t, self.cfg, self.seed, self.device = t, cfg, seed, device
        self.lo, self.hi = lo, hi
        self.src = _Source(seed, device)
        self.H = target_bounds(t, lo, hi)
        self.stats = {"instances": 0, "failed_first_try": 0, "unresolved": 0, "solve_time_s": 0.0,
                      "mean_subset_size": 0.0, "_size_sum": 0}
        # per target layer: per kept row of the layer realising it, the data the certificate needs
        self.rows_info: list[dict] = []

    # -- helpers ---------------------------------------------------------------------------------
    def _first_act(self) -> acts_mod.Activation:
        """Activation of the univariate layers (the target's own, or identity in the idealised mode)."""
        if self.cfg.first_layer == "identity":
            return acts_mod.get("identity")
        return acts_mod.get(self.t.activations[0] if self.t.depth > 1 else "relu")

    def _run(self, values, targets, eps):
        t0 = time.perf_counter()
        res = _solve(values, targets, eps, self.cfg.objective)
        self.stats["solve_time_s"] += time.perf_counter() - t0
        self.stats["instances"] += len(targets)
        self.stats["_size_sum"] += int(res.size.sum())
        return res

    # -- univariate layers -------------------------------------------------------------------------
    def univariate_layer(self, n_in: int, psi: acts_mod.Activation, a_scale: float) -> _Layer:
        rho1, rb = self.cfg.rho_first, self.cfg.rho_b
        L = self.src.add_layer(n_in * rho1 + rb, n_in, a_scale, 1.0, psi.name)
        for j in range(n_in):
            rows = list(range(j * rho1, (j + 1) * rho1))
            L.unit_rows[j] = rows
        L.mW[torch.arange(n_in * rho1), torch.arange(n_in).repeat_interleave(rho1)] = True
        L.const_rows = list(range(n_in * rho1, n_in * rho1 + rb))
        return L

    def _kappa(self, L: _Layer) -> tuple[torch.Tensor, torch.Tensor]:
        """Usable constant rows of L and their outputs phi(beta) (float64)."""
        act = acts_mod.get(L.act) if L.act else acts_mod.get("identity")
        rows = torch.tensor(L.const_rows, dtype=torch.long)
        kappa = act(L.b[rows].double().cpu())
        usable = kappa.abs() > 1e-3  # ReLU constants with beta <= 0 output 0: useless
        return rows[usable], kappa[usable]

    # -- assembling rows (product instances over a univariate layer) ------------------------------
    def assemble(self, A: _Layer, U: _Layer, rows: list[int], neurons: list[int], l: int, psi) -> dict:
        """Solve the weights and biases of ``rows`` (row r realises target neuron neurons[r]) of layer A."""
        W_t, b_t = self.t.weights[l], self.t.biases[l]
        n_in = W_t.shape[1]
        rows_t = torch.tensor(rows, dtype=torch.long)
        neu_t = torch.tensor(neurons, dtype=torch.long)
        info = {"p": torch.zeros(len(rows), n_in, dtype=torch.float64), "q": torch.zeros(len(rows), n_in, dtype=torch.float64),
                "l1v": torch.zeros(len(rows), n_in, dtype=torch.float64), "bias_err": torch.zeros(len(rows), dtype=torch.float64)}
        ok_row = torch.ones(len(rows), dtype=torch.bool)
        a_all = U.W.double().cpu()
        sign_trick = psi.kind == "relu_like" and self.cfg.first_layer == "sign_trick"
        alpha = psi.slope
        offset = torch.zeros(len(rows), dtype=torch.float64)
        # group candidates per unit (and per sign), at most MAX_N each; pad to the largest group
        groups = []  # (unit j, columns, coefficient per column, target multiplier, is the "p" side)
        for j in range(n_in):
            cols = torch.tensor(U.unit_rows[j], dtype=torch.long)
            a = a_all[cols, j]
            if sign_trick:
                pos, neg = cols[a > 0][:subsetsum.MAX_N], cols[a < 0][:subsetsum.MAX_N]
                groups.append((j, pos, a_all[pos, j], 1.0 / (1 + alpha), True))
                groups.append((j, neg, a_all[neg, j].abs(), -1.0 / (1 + alpha), False))
            else:
                cols, a = cols[:subsetsum.MAX_N], a[:subsetsum.MAX_N]
                groups.append((j, cols, a * (psi.dphi0 if psi.kind == "smooth" else 1.0), 1.0, True))
        n_max = max(1, max(len(g[1]) for g in groups))
        Wd = A.W.double().cpu()
        eps_inst = self.cfg.eps_param / (1 + alpha) if sign_trick else self.cfg.eps_param
        G = len(groups)
        col_idx = torch.zeros(G, n_max, dtype=torch.long)
        coef = torch.zeros(G, n_max, dtype=torch.float64)
        valid = torch.zeros(G, n_max, dtype=torch.bool)
        unit = torch.tensor([g[0] for g in groups])
        mult = torch.tensor([g[3] for g in groups], dtype=torch.float64)
        is_p = torch.tensor([g[4] for g in groups])
        for gi, g in enumerate(groups):
            m = len(g[1])
            col_idx[gi, :m], coef[gi, :m], valid[gi, :m] = g[1], g[2], True
        chunk = max(1, 2_000_000 // max(G * n_max, 1))  # rows per solve call: bounded memory
        for c0 in range(0, len(rows), chunk):
            rr = rows_t[c0:c0 + chunk]
            wv = torch.where(valid, Wd[rr][:, col_idx], torch.zeros((), dtype=torch.float64))  # [r, G, n_max]
            v = wv * coef
            tgt = W_t[neu_t[c0:c0 + chunk]][:, unit] * mult  # [r, G]
            res = self._run(v.reshape(-1, n_max), tgt.reshape(-1), eps_inst)
            sel = res.mask.reshape(len(rr), G, n_max) & valid
            ok_row[c0:c0 + chunk] &= res.ok.reshape(len(rr), G).all(1)
            r_idx = rr.view(-1, 1, 1).expand_as(sel)[sel]
            c_idx = col_idx.view(1, G, n_max).expand_as(sel)[sel]
            A.mW[r_idx.to(A.mW.device), c_idx.to(A.mW.device)] = True
            sums = (v * sel).sum(2)  # realised sums [r, G]
            l1 = (wv.abs() * sel).sum(2)
            info["p"][c0:c0 + chunk, unit[is_p]] = sums[:, is_p]
            if sign_trick:
                info["q"][c0:c0 + chunk, unit[~is_p]] = sums[:, ~is_p]
            info["l1v"][c0:c0 + chunk].index_add_(1, unit, l1)
            if psi.kind == "smooth" and psi.phi0 != 0:
                offset[c0:c0 + chunk] += psi.phi0 * (wv * sel).sum((1, 2))
        # biases from the constants of U
        self._bias(A, U, rows_t, b_t[neu_t] - offset, ok_row, info)
        info["rows"], info["neurons"], info["ok"] = rows, neurons, ok_row
        info["sign_trick"], info["alpha"], info["psi"] = sign_trick, alpha, psi
        return info

    def _bias(self, A: _Layer, P: _Layer, rows_t, targets, ok_row, info):
        crow, kappa = self._kappa(P)
        if len(crow) == 0:
            raise ConstructionError(f"layer {P.index} has no usable constant neuron; raise rho_b")
        if len(crow) > subsetsum.MAX_N:  # the newest constants (added on failures) first
            crow, kappa = crow[-subsetsum.MAX_N:], kappa[-subsetsum.MAX_N:]
        v = A.W.double().cpu()[rows_t][:, crow] * kappa
        res = self._run(v, targets, self.cfg.eps_param)
        sel = res.mask
        ok_row &= res.ok
        r_idx = rows_t.view(-1, 1).expand_as(sel)[sel]
        c_idx = crow.view(1, -1).expand_as(sel)[sel]
        A.mW[r_idx.to(A.mW.device), c_idx.to(A.mW.device)] = True
        P.mb[crow[sel.any(0)].to(P.mb.device)] = True  # constants in use keep their bias
        info["bias_err"] = (res.sum.double() - targets).abs()

    # -- copy layers (plain instances over copies of the neurons below) --------------------------
    def copies(self, C: _Layer, P: _Layer, rows: list[int], neurons: list[int], l: int) -> dict:
        W_t, b_t = self.t.weights[l], self.t.biases[l]
        n_in = W_t.shape[1]
        rows_t = torch.tensor(rows, dtype=torch.long)
        neu_t = torch.tensor(neurons, dtype=torch.long)
        n_max = min(subsetsum.MAX_N, max(len(P.copy_rows[j]) for j in range(n_in)))
        col_idx = torch.zeros(n_in, n_max, dtype=torch.long)
        valid = torch.zeros(n_in, n_max, dtype=torch.bool)
        for j in range(n_in):
            cj = P.copy_rows[j][-n_max:]
            col_idx[j, :len(cj)] = torch.tensor(cj)
            valid[j, :len(cj)] = True
        Wd = C.W.double().cpu()
        info = {"p": torch.zeros(len(rows), n_in, dtype=torch.float64), "l1v": torch.zeros(len(rows), n_in, dtype=torch.float64)}
        ok_row = torch.ones(len(rows), dtype=torch.bool)
        chunk = max(1, 2_000_000 // max(n_in * n_max, 1))
        for c0 in range(0, len(rows), chunk):
            rr = rows_t[c0:c0 + chunk]
            v = torch.where(valid, Wd[rr][:, col_idx], torch.zeros((), dtype=torch.float64))
            tgt = W_t[neu_t[c0:c0 + chunk]]
            res = self._run(v.reshape(-1, n_max), tgt.reshape(-1), self.cfg.eps_param)
            sel = res.mask.reshape(len(rr), n_in, n_max) & valid
            ok_row[c0:c0 + chunk] &= res.ok.reshape(len(rr), n_in).all(1)
            r_idx = rr.view(-1, 1, 1).expand_as(sel)[sel]
            c_idx = col_idx.view(1, n_in, n_max).expand_as(sel)[sel]
            C.mW[r_idx.to(C.mW.device), c_idx.to(C.mW.device)] = True
            info["p"][c0:c0 + chunk] = (v * sel).sum(2)
            info["l1v"][c0:c0 + chunk] = (v.abs() * sel).sum(2)
        self._bias(C, P, rows_t, b_t[neu_t], ok_row, info)
        info["rows"], info["neurons"], info["ok"] = rows, neurons, ok_row
        return info

    # -- the two layouts -------------------------------------------------------------------------
    def build(self):
        t, cfg = self.t, self.cfg
        L = t.depth
        psi = self._first_act()
        if cfg.mode == "L+1":
            prev = self.univariate_layer(t.widths[0], psi, self._a_scale(psi, 0))
            for l in range(L):
                last = l == L - 1
                n_l = t.widths[l + 1]
                copies = 1 if last else cfg.rho
                rows_n = n_l * copies + (0 if last else cfg.rho_b)
                C = self.src.add_layer(rows_n, prev.W.shape[0], self._w_scale(l, psi if l == 0 else None), 1.0,
                                       None if last else t.activations[l])
                C.copy_rows = {i: list(range(i * copies, (i + 1) * copies)) for i in range(n_l)}
                C.const_rows = [] if last else list(range(n_l * copies, rows_n))
                self._solve_layer(C, prev, l, psi if l == 0 else None, growable=not last)
                prev = C
        else:  # 2L: per target layer a univariate layer (reading the previous pair's outputs) + an assembling layer
            for l in range(L):
                last = l == L - 1
                U = self.univariate_layer(t.widths[l], psi, self._a_scale(psi, l))
                A = self.src.add_layer(t.widths[l + 1], U.W.shape[0], self._w_scale(l, psi), 1.0,
                                       None if last else t.activations[l])
                A.copy_rows = {i: [i] for i in range(t.widths[l + 1])}
                self._solve_layer(A, U, l, psi, growable=False)

    def _a_scale(self, psi, l: int) -> float:
        if psi.kind == "smooth" and self.cfg.first_layer == "linearize":
            return self.cfg.s1 / max(float(self.H[l].max()), 1e-12)
        return 1.0

    def _w_scale(self, l: int, psi) -> float:
        W, b = self.t.weights[l], self.t.biases[l]
        m = max(float(W.abs().max()), float(b.abs().max()), 1e-6)
        if psi is None:
            return m
        if psi.kind == "smooth" and self.cfg.first_layer == "linearize":
            return m / (self._a_scale(psi, l) * psi.dphi0)
        return m

    def _solve_layer(self, C: _Layer, P: _Layer, l: int, psi, growable: bool):
        """Solve all rows of C; grow the source where instances fail."""
        neurons = []
        rows = []
        for i, rs in C.copy_rows.items():
            rows += rs
            neurons += [i] * len(rs)
        todo = (rows, neurons)
        infos = []
        for rnd in range(self.cfg.max_growth_rounds + 1):
            info = self.assemble(C, P, todo[0], todo[1], l, psi) if psi is not None else \
                self.copies(C, P, todo[0], todo[1], l)
            bad = (~info["ok"]).nonzero().flatten().tolist()
            if rnd == 0:
                self.stats["failed_first_try"] += len(bad)
            infos.append(info)
            if not bad or rnd == self.cfg.max_growth_rounds:
                if bad:
                    self.stats["unresolved"] += len(bad)
                break
            bad_rows = [todo[0][k] for k in bad]
            bad_neurons = [todo[1][k] for k in bad]
            if growable:
                # replace each failed copy by a fresh neuron; the failed one is pruned entirely
                C.mW[torch.tensor(bad_rows)] = False
                C.dropped += len(bad_rows)
                new = self.src.add_rows(C, len(bad_rows))
                self.src.grown += len(new)
                for r_old, r_new, i in zip(bad_rows, new, bad_neurons):
                    C.copy_rows[i] = [r for r in C.copy_rows[i] if r != r_old] + [r_new]
                todo = (new, bad_neurons)
            else:
                # one more candidate below for every unit of a failed row: a new copy neuron per unit
                C.mW[torch.tensor(bad_rows)] = False
                self._grow_candidates(P, l, psi)
                todo = (bad_rows, bad_neurons)
        self._merge_infos(C, l, infos)

    def _grow_candidates(self, P: _Layer, l: int, psi):
        """Add one candidate neuron per input unit (and one constant) to P, the layer below a failed row."""
        if P.unit_rows:  # univariate layer: a new copy keeps only its edge from its unit
            n_in = len(P.unit_rows)
            new = self.src.add_rows(P, n_in + 1)
            for j in range(n_in):
                P.unit_rows[j].append(new[j])
            P.mW[torch.tensor(new[:n_in]), torch.arange(n_in)] = True
            P.const_rows.append(new[-1])
            self.src.grown += len(new)
            return
        # a copy layer (L+1, below the output): one more copy of every neuron, solved like the others
        n_in = len(P.copy_rows)
        new = self.src.add_rows(P, n_in + 1)
        self.src.grown += len(new)
        below = self.src.layers[P.index - 1]
        l_below = P.index - 1  # in L+1, source layer k realises target layer k - 1
        if below.unit_rows:
            info = self.assemble(P, below, new[:n_in], list(range(n_in)), l_below, self._first_act())
        else:
            info = self.copies(P, below, new[:n_in], list(range(n_in)), l_below)
        for k, ok in enumerate(info["ok"].tolist()):
            if ok:
                P.copy_rows[k].append(new[k])
            else:  # a failed copy is not offered
                P.mW[new[k]] = False
        P.const_rows.append(new[-1])
        self.rows_info[l_below]["extra"].append(info)

    def _merge_infos(self, C: _Layer, l: int, infos: list[dict]):
        keep = {r for rs in C.copy_rows.values() for r in rs}
        merged = {"rows": [], "neurons": [], "items": []}
        for info in infos:
            for k, r in enumerate(info["rows"]):
                merged["items"].append((r, info, k))
        # later solves of a row (retries) replace earlier ones
        last = {}
        for r, info, k in merged["items"]:
            last[r] = (info, k)
        self.rows_info.append({"layer": C.index, "target_layer": l, "rows": {r: v for r, v in last.items() if r in keep},
                               "extra": []})

    # -- certificate -------------------------------------------------------------------------------
    def certificate(self) -> tuple[float, list[float]]:
        """A-posteriori bound on sup |target - ticket| over the box, and the bound after each layer."""
        t, cfg = self.t, self.cfg
        errs = []
        e_prev = 0.0
        for l in range(t.depth):
            last = l == t.depth - 1
            ri = self.rows_info[l]
            rows = dict(ri["rows"])
            for info in ri["extra"]:
                for k, r in enumerate(info["rows"]):
                    rows[r] = (info, k)
            C = self.src.layers[ri["layer"]]
            kept = {r for rs in C.copy_rows.values() for r in rs}
            W_t = t.weights[l]
            worst = 0.0
            Hin = self.H[l]
            for r, (info, k) in rows.items():
                if r not in kept:
                    continue
                i = info["neurons"][k]
                w = W_t[i]
                if "psi" in info:  # assembling row over a univariate layer
                    psi = info["psi"]
                    U = Hin + e_prev
                    if info["sign_trick"]:
                        a = info["alpha"]
                        p, q = info["p"][k], info["q"][k]
                        # the univariate layer's input range: the box itself for l = 0, else |h| + e
                        up, dn = (self.hi.clamp(min=0), (-self.lo).clamp(min=0)) if l == 0 else (U, U)
                        E = torch.maximum((p - a * q - w).abs() * up, (a * p - q - w).abs() * dn)
                        lip = torch.maximum((p - a * q).abs(), (a * p - q).abs())
                    else:
                        p = info["p"][k]
                        R = torch.tensor([psi.remainder(self._a_scale(psi, l) * float(u)) for u in U], dtype=torch.float64) \
                            if psi.kind == "smooth" else torch.zeros_like(U)
                        E = (p - w).abs() * U + info["l1v"][k] * R
                        lip = p.abs()
                    err = float((E + lip * e_prev).sum()) + float(info["bias_err"][k])
                else:  # copy row
                    p = info["p"][k]
                    err = float(((p - w).abs() * Hin).sum() + e_prev * info["l1v"][k].sum()) + float(info["bias_err"][k])
                worst = max(worst, err)
            M = 1.0 if last else acts_mod.get(t.activations[l]).lip
            e_prev = M * worst
            errs.append(e_prev)
        return e_prev, errs


def _auto_s1(psi: acts_mod.Activation, ep: float, t: TargetMLP) -> float:
    """Scale of the linearised first layer: its remainder costs at most ~ep/2 per assembled row.

    A row sums about ``n_in`` subsets of ~2.3 candidates of size ``m / (s1 phi'(0))`` each
    evaluated with remainder ``R(s1)``; halve s1 until that estimate fits.
    """
    n_in = t.widths[0]
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
              objective: str = "min_l1", s1: float | None = None, max_growth_rounds: int = 6, max_rounds: int = 8,
              device=None) -> Ticket:
    """Prune one random source network (drawn from ``seed``) into a ticket within ``eps`` of ``target``.

    ``eps`` bounds ``max |target(x) - ticket(x)|`` over the box ``domain``: the construction picks
    the per-parameter tolerance itself from the error certificate. ``eps_param=`` instead solves
    every subset sum to that tolerance (the papers' mode) and reports the resulting certificate.
    """
    if mode not in MODES:
        raise ConstructionError(f"mode must be one of {MODES}, got {mode!r}")
    for name, val in (("eps", eps), ("eps_param", eps_param)):
        if val is not None and (not isinstance(val, (int, float)) or not math.isfinite(val) or val <= 0):
            raise ConstructionError(f"{name} must be a finite number > 0, got {val!r}")
    if not 0 < delta < 1:
        raise ConstructionError(f"delta must be in (0, 1), got {delta}")
    if objective not in ("min_l1", "min_cardinality", "min_error"):
        raise ConstructionError(f"objective must be min_l1, min_cardinality or min_error, got {objective!r}")
    t = read_mlp(target)
    for a in t.activations:
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
            if acts_mod.get(a).kind != psi.kind:
                raise ConstructionError("2L with mixed activation kinds is not supported")
    device = torch.device(device) if device is not None else torch.device("cpu")
    lo, hi = _domain_box(domain, t.widths[0])
    t0 = time.perf_counter()

    guarantee = eps_param is None
    ep = eps_param if eps_param is not None else eps / (10.0 * t.depth)  # first guess; the certificate corrects it
    history = []
    best = None
    for rnd in range(max_rounds if guarantee else 1):
        # widths from the calibration, at the tolerance relative to the largest layer scale
        wmax = max(float(max(W.abs().max(), b.abs().max())) for W, b in zip(t.weights, t.biases))
        eps_rel = max(ep / max(wmax, 1e-6), 1e-5)
        sign = psi.kind == "relu_like" and first_layer == "sign_trick"
        r = rho or _default_rho(eps_rel, delta, product=False)
        r1 = rho_first or (2 * _default_rho(eps_rel, delta, product=True) if sign else
                           _default_rho(eps_rel, delta, product=True))
        r1 = min(r1, 2 * subsetsum.MAX_N if sign else subsetsum.MAX_N)
        rb = rho_b or min(40, 2 * r)  # ReLU: about half the constants are usable (beta > 0)
        s1_r = s1 if s1 is not None else (_auto_s1(psi, ep, t) if first_layer == "linearize" else 1.0)
        cfg = _Cfg(mode, ep, min(r, subsetsum.MAX_N), r1, rb, first_layer, objective, s1_r, max_growth_rounds)
        c = _Constructor(t, cfg, seed, lo, hi, device)
        c.build()
        cert, per_layer = c.certificate()
        history.append({"eps_param": ep, "certificate": cert, "rho": cfg.rho, "rho_first": cfg.rho_first,
                        "rho_b": cfg.rho_b})
        if not guarantee:
            best = (c, cfg, cert, per_layer)
            break
        if cert <= eps:
            best = (c, cfg, cert, per_layer)
            if cert > eps / 4 or rnd == max_rounds - 1:
                break
            ep = ep * min(2.0, 0.8 * eps / max(cert, 1e-300))  # widen: sparser, still certified
        else:
            if best is not None:
                break  # the previous, tighter round was certified
            ep = ep * 0.5 * eps / cert
    if best is None:
        raise ConstructionError(f"no certified ticket within eps={eps} after {max_rounds} rounds (last certificate "
                                f"{history[-1]['certificate']:.3g}); raise max_rounds, rho or eps")
    c, cfg, cert, per_layer = best
    return _to_ticket(c, cfg, cert, per_layer, history, t, mode, eps, eps_param, seed, lo, hi, time.perf_counter() - t0)


def _to_ticket(c: _Constructor, cfg: _Cfg, cert, per_layer, history, t: TargetMLP, mode, eps, eps_param, seed, lo, hi,
               wall) -> Ticket:
    src = c.src
    # a row whose outgoing edges are all pruned contributes nothing: prune it entirely
    for k in range(len(src.layers) - 2, -1, -1):
        L, nxt = src.layers[k], src.layers[k + 1]
        used = nxt.mW.any(0)
        L.mW[~used] = False
        L.mb[~used] = False
    widths = src.widths()
    acts = [L.act for L in src.layers[:-1]]
    init = {}
    masks = {}
    for L in src.layers:
        init[f"{L.name}.weight"] = {"dist": "uniform", "low": -L.w_scale, "high": L.w_scale, "address": "grid"}
        init[f"{L.name}.bias"] = {"dist": "uniform", "low": -L.b_scale, "high": L.b_scale}
        masks[f"{L.name}.weight"] = L.mW.cpu()
        masks[f"{L.name}.bias"] = L.mb.cpu()
    arch = {"name": "source_mlp", "activation": "relu", "input_shape": [1, 1, widths[0]], "num_classes": widths[-1],
            "kwargs": {"widths": widths, "acts": acts}}
    mask = Mask(masks)
    src_params = sum(L.W.numel() + L.b.numel() for L in src.layers)
    kept = mask.num_kept()
    report = {
        "mode": mode, "eps": eps, "eps_param": cfg.eps_param, "guarantee_mode": eps_param is None,
        "first_layer": cfg.first_layer, "objective": cfg.objective,
        "rho": cfg.rho, "rho_first": cfg.rho_first, "rho_b": cfg.rho_b,
        "certificate": cert, "certificate_per_layer": per_layer,
        "depth": {"target": t.depth, "source": len(widths) - 1},
        "widths": {"target": t.widths, "source": widths},
        "parameters": {"target": t.num_parameters(), "source": src_params, "ticket": kept,
                       "source_per_target": src_params / t.num_parameters(), "ticket_per_target": kept / t.num_parameters()},
        "subset_sum": {"instances": c.stats["instances"], "failed_first_try": c.stats["failed_first_try"],
                       "unresolved": c.stats["unresolved"], "neurons_added": src.grown,
                       "mean_subset_size": c.stats["_size_sum"] / max(c.stats["instances"], 1)},
        "timings_s": {"total": wall, "subset_sum": c.stats["solve_time_s"]},
        "rounds": history,
        "domain": {"low": lo.tolist() if lo.numel() <= 64 else [float(lo.min())],
                   "high": hi.tolist() if hi.numel() <= 64 else [float(hi.max())]},
        "theory_width_bound": _theory_bound(t, cfg, mode),
    }
    return Ticket(arch, init, seed, mask, report)


def _theory_bound(t: TargetMLP, cfg: _Cfg, mode: str) -> dict:
    """The papers' source-size formulas at the rho used here, for comparison (theory.md §2.1, §3.1)."""
    n = t.widths
    if mode == "2L":
        params = sum(2 * cfg.rho * n[i] * (n[i] + n[i + 1]) for i in range(t.depth))
        return {"formula": "sum_i 2 n_i d_{i-1} (d_{i-1} + d_i) (Pensia et al.)", "source_parameters": params}
    params = cfg.rho ** 2 * sum((n[i + 1] + 1) * (n[i] + 1) for i in range(t.depth))
    return {"formula": "rho^2 sum_l (n_l + 1)(n_{l-1} + 1) (Burkholz 2022)", "source_parameters": params}
