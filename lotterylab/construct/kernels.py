"""Structured tickets' instances (da Cunha et al. 2023): whole kernels kept or pruned as one vector.

The engine (:mod:`lotterylab.construct.engine`) hands k x k layers of a family with
``kernel_instances`` here: at ``"kernel"`` granularity one vector subset sum per (row, unit, side)
over the unit's candidates' whole kernels, at ``"filter"`` granularity one per (unit, side) over
every row's kernel at once. Both fill the same ledger the certificate and refinements read.
"""

from __future__ import annotations

import torch

from .. import subsetsum
from .source import SourceLayer
from .tables import candidate_values, unit_columns


def solve_kernel_pairs(e, C: SourceLayer, P: SourceLayer, rows: torch.Tensor, units: torch.Tensor,
                       clear: bool = True) -> torch.Tensor:
    """Structured tickets (da Cunha et al. 2023): one vector instance per (pair, side) over whole
    kernels. Candidate m contributes ``coef_m * W[row, m, :]`` (all T taps at once) and is kept or
    pruned as a whole kernel; l-infinity error over the taps."""
    if e.cfg.granularity == "filter":
        return solve_filter_units(e, C, P, rows, units)
    inf = e.ledgers[C.index]
    W_t = e.t.w3(inf.tl)
    col, coef, valid, mult = e.tables(P, inf.product, subsetsum.MAX_N_VECTOR)
    S, n_max, T = col.shape[1], col.shape[2], C.T
    ep = e.cfg.eps_for(inf.tl)
    eps = e.first.pair_eps(ep) if inf.product else ep
    neuron = inf.neuron[rows]
    ok_all = torch.ones(len(rows), dtype=torch.bool)
    e.touch(C, rows)
    dev = C.mW.device
    chunk = max(1, e.chunk_values // (S * n_max * T))
    for c0 in range(0, len(rows), chunk):
        r, u, i = rows[c0:c0 + chunk], units[c0:c0 + chunk], neuron[c0:c0 + chunk]
        v = candidate_values(C, r, u, col, valid, coef)  # [k, T, S, n]
        tgt = W_t[i, u].unsqueeze(1) * mult.view(1, -1, 1) + inf.shift[r, u, :S]  # [k, S, T]
        res = e.run(v.permute(0, 2, 3, 1).reshape(-1, n_max, T), tgt.reshape(-1, T), eps,
                       copies=not inf.product)
        ok = res.ok.view(len(r), S).all(1)
        ok_all[c0:c0 + chunk] = ok
        if clear:
            all_r, all_c = unit_columns(P, inf.product, r, u)
            C.mW[all_r.to(dev), all_c.to(dev)] = False
        inst, jj = res.mask.nonzero(as_tuple=True)  # instance = (pair, side)
        kk, ss = inst // S, inst % S
        keep = valid[u[kk], ss, jj]
        kk, ss, jj = kk[keep], ss[keep], jj[keep]
        cols = col[u[kk], ss, jj]
        C.mW[r[kk].to(dev), cols.to(dev)] = True  # the whole kernel: every tap
        sums = res.sum.double().view(len(r), S, T)
        inf.p[r, u] = sums[:, 0]
        if S == 2:
            inf.q[r, u] = sums[:, 1]
        w = C.W[r[kk].to(dev), cols.to(dev)].double().cpu().abs()  # [m, T]
        inf.l1v[r, u] = torch.zeros(len(r), T, dtype=torch.float64).index_add_(0, kk, w)
        inf.ok[r, u] = ok
    return ok_all

def solve_filter_units(e, C: SourceLayer, P: SourceLayer, rows: torch.Tensor, units: torch.Tensor) -> torch.Tensor:
    """Structured tickets at filter granularity: one subset of input unit j's expansion channels serves
    every output kernel at once (a vector of outputs x taps entries), so a kept expansion channel
    keeps all its kernels and only whole filters are pruned. Returns ok per given (row, unit) pair:
    that of its unit."""
    inf = e.ledgers[C.index]
    W_t = e.t.w3(inf.tl)
    col, coef, valid, mult = e.tables(P, inf.product, subsetsum.MAX_N_VECTOR)
    S, n_max, T = col.shape[1], col.shape[2], C.T
    eps = e.first.pair_eps(e.cfg.eps_for(inf.tl)) if inf.product else e.cfg.eps_for(inf.tl)
    rows_all = C.copy_row_index()
    R = len(rows_all)
    uu = units.unique()
    e.touch(C, rows_all)
    dev = C.mW.device
    cu = col[uu]  # [k, S, n]
    Wsel = C.W[rows_all.to(dev)][:, cu.to(dev)].double().cpu()  # [R, k, S, n, T]
    vals = Wsel * (coef[uu] * valid[uu]).unsqueeze(0).unsqueeze(-1)
    vals = vals.permute(1, 2, 3, 0, 4).reshape(len(uu) * S, n_max, R * T)
    tgt = W_t[inf.neuron[rows_all]][:, uu].permute(1, 0, 2).unsqueeze(1) * mult.view(1, -1, 1, 1)  # [k, S, R, T]
    tgt = tgt + inf.shift[rows_all][:, uu, :S].permute(1, 2, 0, 3)
    res = e.run(vals, tgt.reshape(-1, R * T), eps, copies=not inf.product)
    ok_u = res.ok.view(len(uu), S).all(1)
    all_r, all_c = unit_columns(P, inf.product, rows_all.repeat(len(uu)), uu.repeat_interleave(R))
    C.mW[all_r.to(dev), all_c.to(dev)] = False
    inst, jj = res.mask.nonzero(as_tuple=True)
    kk, ss = inst // S, inst % S
    keep = valid[uu[kk], ss, jj]
    kk, ss, jj = kk[keep], ss[keep], jj[keep]
    cols = col[uu[kk], ss, jj].unique()
    C.mW[rows_all.view(-1, 1).to(dev), cols.view(1, -1).to(dev)] = True  # every kernel of a kept filter
    sums = res.sum.double().view(len(uu), S, R, T)
    for side, field in ((0, inf.p), (1, inf.q)):
        if side < S:
            field[rows_all.view(-1, 1), uu.view(1, -1)] = sums[:, side].permute(1, 0, 2)
    chosen = torch.zeros(len(uu), S, n_max, dtype=torch.float64).index_put_((kk, ss, jj), torch.ones(len(kk),
                                                                            dtype=torch.float64))
    inf.l1v[rows_all.view(-1, 1), uu.view(1, -1)] = (Wsel.abs() * chosen.unsqueeze(-1)).sum((2, 3))  # [R, k, T]
    inf.ok[rows_all.view(-1, 1), uu.view(1, -1)] = ok_u.view(1, -1)
    pos = torch.searchsorted(uu, units)
    return ok_u[pos]
