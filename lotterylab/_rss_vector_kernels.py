"""Compiled (numba) kernels for vector subset-sum instances (l-infinity error; da Cunha et al.
2023): exact enumeration for small ``2**n * d`` (the beam search beyond it is in
:mod:`lotterylab._mrss_kernels`). See :mod:`lotterylab.subsetsum` for the API.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

INF = np.inf


@njit(parallel=True, cache=True)
def vector_brute_force(X, T, eps, objective, k, out_mask, out_flag, nb):
    """Exact multidimensional (l-infinity) solver over all 2**n subsets in Gray-code order.

    objective: 0 min_error, 1 min_cardinality, 2 min_l1, 3 fixed_size (k).
    """
    B, n, d = X.shape
    for blk in prange(nb):
        s = np.empty(d)
        norms = np.empty(n)
        for inst in range(blk * B // nb, (blk + 1) * B // nb):
            x = X[inst]
            t = T[inst]
            for j in range(n):
                acc = 0.0
                for q in range(d):
                    acc += abs(x[j, q])
                norms[j] = acc
            for q in range(d):
                s[q] = 0.0
            g = np.int64(0)
            card = 0
            l1 = 0.0
            # among subsets within eps: smallest primary (size or l1), then smallest error
            best_p = INF
            best_e = INF
            best_mask = np.int64(0)
            any_ok = False
            fb_e = INF
            fb_mask = np.int64(0)
            total = np.int64(1) << n
            for i in range(total):
                if i > 0:
                    j = 0
                    while ((i >> j) & 1) == 0:
                        j += 1
                    bit = np.int64(1) << j
                    if g & bit:
                        for q in range(d):
                            s[q] -= x[j, q]
                        card -= 1
                        l1 -= norms[j]
                    else:
                        for q in range(d):
                            s[q] += x[j, q]
                        card += 1
                        l1 += norms[j]
                    g ^= bit
                e = 0.0
                for q in range(d):
                    v = abs(t[q] - s[q])
                    if v > e:
                        e = v
                if objective == 0:
                    if e < best_e:
                        best_e = e
                        best_mask = g
                    continue
                if objective == 3:
                    if card == k and e < best_e:
                        best_e = e
                        best_mask = g
                    continue
                if e < fb_e:
                    fb_e = e
                    fb_mask = g
                if e <= eps:
                    p = float(card) if objective == 1 else l1
                    if (not any_ok) or p < best_p or (p == best_p and e < best_e):
                        any_ok = True
                        best_p = p
                        best_e = e
                        best_mask = g
            if objective == 1 or objective == 2:
                out_mask[inst] = best_mask if any_ok else fb_mask
                out_flag[inst] = not any_ok
            else:
                out_mask[inst] = best_mask
                out_flag[inst] = False
