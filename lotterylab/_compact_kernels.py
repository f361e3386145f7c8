"""Compiled (numba) scan of a fully connected ticket's mask for :func:`lotterylab.compact.compact`.

One pass over the kept rows of a layer's bool mask lists the entries whose column is wanted
(inputs that are live, or constant neurons), row-major, as CSR (row pointers and the columns'
positions). Tensor indexing did the same in five passes over the 203M-entry mask of the demo's
ticket. Two parallel passes (count, then fill at each row's offset) keep the order fixed.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def row_entries(M, rows, colpos):
    """Entries (rows[i], c) of the bool matrix M with colpos[c] >= 0, row by row: returns
    (indptr [len(rows) + 1], colpos of each entry in column order)."""
    R = rows.shape[0]
    C = M.shape[1]
    counts = np.zeros(R + 1, np.int64)
    for i in prange(R):
        r = rows[i]
        n = 0
        for c in range(C):
            if M[r, c] and colpos[c] >= 0:
                n += 1
        counts[i + 1] = n
    indptr = np.cumsum(counts)
    out = np.empty(indptr[R], np.int64)
    for i in prange(R):
        r = rows[i]
        p = indptr[i]
        for c in range(C):
            if M[r, c] and colpos[c] >= 0:
                out[p] = colpos[c]
                p += 1
    return indptr, out


@njit(cache=True, parallel=True)
def merge_rows(indptr, ch, vals, P):
    """Per row, the sum of ``vals`` over the entries of each channel ``ch`` (< P), added in entry order
    from 0.0 (the order ``index_add_`` adds in); returns (indptr, channels ascending, sums)."""
    R = indptr.shape[0] - 1
    counts = np.zeros(R + 1, np.int64)
    for i in prange(R):
        seen = np.zeros(P, np.bool_)
        n = 0
        for j in range(indptr[i], indptr[i + 1]):
            if not seen[ch[j]]:
                seen[ch[j]] = True
                n += 1
        counts[i + 1] = n
    out_ptr = np.cumsum(counts)
    out_ch = np.empty(out_ptr[R], np.int64)
    out_v = np.empty(out_ptr[R], np.float64)
    for i in prange(R):
        acc = np.zeros(P, np.float64)
        seen = np.zeros(P, np.bool_)
        for j in range(indptr[i], indptr[i + 1]):
            acc[ch[j]] += vals[j]
            seen[ch[j]] = True
        p = out_ptr[i]
        for c in range(P):
            if seen[c]:
                out_ch[p] = c
                out_v[p] = acc[c]
                p += 1
    return out_ptr, out_ch, out_v
