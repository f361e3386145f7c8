"""Candidate tables: for every input unit (and side), the source rows a subset sum may choose from."""

from __future__ import annotations

import torch

from .. import subsetsum
from ..threads import numba_threads

try:
    from .. import _table_kernels as _tk

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - numba is a hard dependency
    HAVE_NUMBA = False
from .first_layer import LinearRegime
from .source import SourceLayer


def candidate_tables(P: SourceLayer, product: bool, first: LinearRegime, limit: int = subsetsum.MAX_N):
    """``(col, coef, valid, mult)``: per input unit and side, candidate rows of ``P`` ``[units, S, n]``,
    their coefficient (the univariate weight's worth, or 1 for copies; moment matching: a vector
    ``[units, S, n, D]``), validity, and each side's
    target multiplier. Each (unit, side) keeps its most recent ``limit`` candidates (the solver's n)."""
    table = P.unit_rows if product else P.copy_rows
    return _fill(P, product, first, limit, torch.arange(len(table)), None)


def table_lengths(P: SourceLayer, product: bool) -> torch.Tensor:
    """How many candidate rows each input unit has (what :func:`extend_tables` compares)."""
    table = P.unit_rows if product else P.copy_rows
    return torch.tensor([len(table[j]) for j in range(len(table))], dtype=torch.long)


def extend_tables(P: SourceLayer, product: bool, first: LinearRegime, limit: int, old, old_lengths: torch.Tensor,
                  lengths: torch.Tensor):
    """The tables of :func:`candidate_tables` after growth appended rows to some units' lists: only
    those units' groups are built again (a growth round touches a few of the 784 inputs of a LeNet,
    and rebuilding all of them every round cost ~2 s of the demo's construction). Equal to a fresh
    build, entry for entry: every group is a function of its own unit's list, and the width is the
    largest group's, which only grows."""
    changed = (lengths != old_lengths).nonzero().flatten()  # (``lengths``: table_lengths now)
    return _fill(P, product, first, limit, changed, old)


def _fill(P: SourceLayer, product: bool, first: LinearRegime, limit: int, units: torch.Tensor, old):
    """Build the groups of ``units`` (into fresh tables, or into ``old``, whose other units stay)."""
    table = P.unit_rows if product else P.copy_rows
    n_in = len(table)
    lengths = torch.tensor([len(table[j]) for j in units.tolist()], dtype=torch.long)
    rows = torch.tensor([r for j in units.tolist() for r in table[j]], dtype=torch.long)
    unit = units.repeat_interleave(lengths)
    if product:
        a = P.W[rows.to(P.W.device), unit.to(P.W.device), 0].double().cpu()  # univariate layers: one tap
        S, side, coef_all, keep, mult = first.candidates(a, unit, P.w_scale)
    else:
        S, side, coef_all = 1, torch.zeros_like(unit), torch.ones(len(rows), dtype=torch.float64)
        keep = torch.ones_like(unit, dtype=torch.bool)
        mult = torch.ones(1, dtype=torch.float64)
    rows, unit, side, coef_all = rows[keep], unit[keep], side[keep], coef_all[keep]
    # position of each candidate within its (unit, side) group, in list order (newest last), and the
    # group's size: keep the most recent `limit` of every group
    g = unit * S + side
    order = torch.sort(g, stable=True).indices
    count = torch.bincount(g, minlength=n_in * S)
    start = torch.cumsum(count, 0) - count
    pos = torch.empty_like(g)
    pos[order] = torch.arange(len(g)) - start[g[order]]
    drop = (count[g] - limit).clamp(min=0)
    k = pos >= drop
    slot = (pos - drop)[k]
    n_max = max(1, int(count.clamp(max=limit).max()) if len(count) else 1)
    if old is None:
        col = torch.zeros(n_in, S, n_max, dtype=torch.long)
        coef = torch.zeros(n_in, S, n_max, *coef_all.shape[1:], dtype=torch.float64)  # moments: [..., D]
        valid = torch.zeros(n_in, S, n_max, dtype=torch.bool)
    else:
        col, coef, valid = (_widen(t, n_max) for t in old[:3])
        col[units], coef[units], valid[units] = 0, 0.0, False
    col[unit[k], side[k], slot] = rows[k]
    coef[unit[k], side[k], slot] = coef_all[k]
    valid[unit[k], side[k], slot] = True
    return col, coef, valid, mult


def _widen(t: torch.Tensor, n: int) -> torch.Tensor:
    """A copy of table ``t`` [units, S, width, ...] with at least ``n`` slots (new ones zero)."""
    if t.shape[2] >= n:
        return t.clone()
    out = torch.zeros(t.shape[0], t.shape[1], n, *t.shape[3:], dtype=t.dtype)
    out[:, :, :t.shape[2]] = t
    return out


def unit_columns(P: SourceLayer, product: bool, rows: torch.Tensor, units: torch.Tensor):
    """(row, column) index pairs of every candidate of each (row, unit): what a re-solve must clear."""
    table = P.unit_rows if product else P.copy_rows
    rr, cc = [], []
    for u in units.unique().tolist():
        cols = torch.tensor(table[u], dtype=torch.long)
        sel_rows = rows[units == u]
        rr.append(sel_rows.repeat_interleave(len(cols)))
        cc.append(cols.repeat(len(sel_rows)))
    return torch.cat(rr), torch.cat(cc)


def candidate_values(C: SourceLayer, rows: torch.Tensor, units: torch.Tensor, col, valid, coef) -> torch.Tensor:
    """float64 candidate values ``[k, T, S, n]`` of pairs (rows[k], units[k]) of layer C: its weight
    from each candidate row times the candidate's coefficient, 0 for padding."""
    k, (S, n), T = len(rows), col.shape[1:], C.T
    if C.Wbuf.device.type == "cpu" and HAVE_NUMBA and C.Wbuf.dtype == torch.float32:
        out = torch.empty(k, T, S, n, dtype=torch.float64)
        with numba_threads():
            _tk.candidate_values(C.Wbuf.numpy(), rows.numpy(), units.numpy(), col.numpy(), valid.numpy(),
                                 coef.numpy(), out.numpy())
        return out
    cc, vv = col[units], valid[units].unsqueeze(3)  # any device: the same values by tensor passes
    w = C.W[rows.view(-1, 1, 1).to(C.W.device), cc.to(C.W.device)].double().cpu()  # [k, S, n, T]
    w = torch.where(vv, w, torch.zeros((), dtype=torch.float64))
    return (w * coef[units].unsqueeze(3)).permute(0, 3, 1, 2).contiguous()
