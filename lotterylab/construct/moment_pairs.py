"""Moment-matching instances (the faithful smooth first layer, :class:`.first_layer.MomentMatching`).

Every (row, unit, tap) of a product layer is one vector subset sum over the unit's copies:
component 0 is the weight (target ``w``), the others the higher Taylor moments the subset must
cancel (target 0). Vector instances of D <= 3 components are solved exactly while ``2**n * D`` is
small and by the beam search beyond (:mod:`lotterylab.subsetsum`); everything else (ledger,
growth on failure, compensation shifts of component 0) is the scalar path's.
"""

from __future__ import annotations

import torch

from .source import SourceLayer
from .tables import candidate_values, unit_columns


def solve_moment_pairs(e, C: SourceLayer, P: SourceLayer, rows: torch.Tensor, units: torch.Tensor,
                       clear: bool = True) -> torch.Tensor:
    """Solve the weights of pairs (rows[k], units[k]) of C over the copies in P; returns ok per pair."""
    inf = e.ledgers[C.index]
    W_t = e.t.w3(inf.tl)  # [n_out, n_in, T]
    col, coef, valid, mult = e.tables(P, True)  # coef [units, 1, n, D]
    n_max, T, D = col.shape[2], C.T, coef.shape[-1]
    eps = e.first.pair_eps(e.cfg.eps_for(inf.tl))
    neuron = inf.neuron[rows]
    ok_all = torch.ones(len(rows), dtype=torch.bool)
    e.touch(C, rows)
    dev = C.mW.device
    ones = torch.ones(coef.shape[:3], dtype=torch.float64)
    chunk = max(1, e.chunk_values // (n_max * T * D))
    for c0 in range(0, len(rows), chunk):
        r, u, i = rows[c0:c0 + chunk], units[c0:c0 + chunk], neuron[c0:c0 + chunk]
        v = candidate_values(C, r, u, col, valid, ones)[:, :, 0]  # [k, T, n]: the raw weights v
        vals = v.unsqueeze(-1) * coef[u, 0].unsqueeze(1)  # [k, T, n, D]
        tgt = torch.zeros(len(r), T, D, dtype=torch.float64)
        tgt[:, :, 0] = W_t[i, u] * float(mult[0]) + inf.shift[r, u, 0]  # (compensation's shift; zero otherwise)
        res = e.run(vals.reshape(-1, n_max, D), tgt.reshape(-1, D), eps)
        ok = res.ok.view(len(r), T).all(1)
        ok_all[c0:c0 + chunk] = ok
        if clear:
            all_r, all_c = unit_columns(P, True, r, u)
            C.mW[all_r.to(dev), all_c.to(dev)] = False
        inst, jj = res.mask.nonzero(as_tuple=True)  # instance = (pair, tap)
        kk, tt = inst // T, inst % T
        keep = valid[u[kk], 0, jj]  # padding never counts
        kk, tt, jj = kk[keep], tt[keep], jj[keep]
        cols = col[u[kk], 0, jj]
        C.mW[r[kk].to(dev), cols.to(dev), tt.to(dev)] = True
        sums = res.sum.double().view(len(r), T, D)
        inf.p[r, u] = sums[:, :, 0]
        inf.mom[r, u] = torch.zeros(len(r), 2, T, dtype=torch.float64)
        inf.mom[r, u, :D - 1] = sums[:, :, 1:D].permute(0, 2, 1)
        w = C.W[r[kk].to(dev), cols.to(dev), tt.to(dev)].double().cpu().abs()
        inf.l1v[r, u] = torch.zeros(len(r) * T, dtype=torch.float64).index_add_(0, kk * T + tt, w).view(len(r), T)
        inf.ok[r, u] = ok
    return ok_all
