"""Compiled (numba) scan of a fully connected ticket's mask for :func:`lotterylab.compact.compact`.

One pass over the kept rows of a layer's bool mask lists the entries whose column is wanted
(inputs that are live, or constant neurons), row-major, as CSR (row pointers and the columns'
positions) with each entry's row. Tensor indexing did the same in five passes over the 203M-entry
mask of the demo's ticket. Two parallel passes (count, then fill at each row's offset) keep the
order fixed.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def used_columns(W, rows):
    """OR of the rows ``rows`` of W (a bool matrix's bytes as uint64 words, 8 columns per word):
    which columns any of those rows keeps, without copying the rows out."""
    C = W.shape[1]
    out = np.zeros(C, np.uint64)
    B = 512
    for b in prange((C + B - 1) // B):  # column blocks: each thread owns its columns
        c1 = min(C, (b + 1) * B)
        for i in range(rows.shape[0]):
            r = rows[i]
            for c in range(b * B, c1):
                out[c] |= W[r, c]
    return out


@njit(cache=True, parallel=True)
def row_entries(M, rows, colpos, compress):
    """Entries (rows[i], c) of the bool matrix M with colpos[c] >= 0, row by row. Returns (indptr
    [len(rows) + 1], colpos of each entry, each entry's row: i, or with ``compress`` its rank among
    the rows that have entries)."""
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
    rank = np.cumsum(counts[1:] > 0) - 1
    indptr = np.cumsum(counts)
    out = np.empty(indptr[R], np.int64)
    row_of = np.empty(indptr[R], np.int64)
    for i in prange(R):
        r = rows[i]
        p = indptr[i]
        who = rank[i] if compress else i
        for c in range(C):
            if M[r, c] and colpos[c] >= 0:
                out[p] = colpos[c]
                row_of[p] = who
                p += 1
    return indptr, out, row_of


@njit(cache=True, parallel=True)
def merge_rows(indptr, cols, channel, w, scale, P):
    """Per row (entries indptr[i]:indptr[i + 1]), the sum of ``w[j] * scale[cols[j]]`` over the entries
    of each channel ``channel[cols[j]]`` (< P), added in entry order from 0.0 (the order
    ``index_add_`` adds in); returns (indptr, each sum's row, channels ascending, sums)."""
    R = indptr.shape[0] - 1
    counts = np.zeros(R + 1, np.int64)
    for i in prange(R):
        seen = np.zeros(P, np.bool_)
        n = 0
        for j in range(indptr[i], indptr[i + 1]):
            ch = channel[cols[j]]
            if not seen[ch]:
                seen[ch] = True
                n += 1
        counts[i + 1] = n
    out_ptr = np.cumsum(counts)
    out_row = np.empty(out_ptr[R], np.int64)
    out_ch = np.empty(out_ptr[R], np.int64)
    out_v = np.empty(out_ptr[R], np.float64)
    for i in prange(R):
        acc = np.zeros(P, np.float64)
        seen = np.zeros(P, np.bool_)
        for j in range(indptr[i], indptr[i + 1]):
            ch = channel[cols[j]]
            acc[ch] += w[j] * scale[cols[j]]
            seen[ch] = True
        p = out_ptr[i]
        for c in range(P):
            if seen[c]:
                out_row[p] = i
                out_ch[p] = c
                out_v[p] = acc[c]
                p += 1
    return out_ptr, out_row, out_ch, out_v
