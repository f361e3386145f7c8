"""Compiled (numba) kernels for vector subset-sum instances (l-infinity error; da Cunha et al.
2023): exact enumeration for small ``2**n * d`` and a reproducible local search beyond it. See
:mod:`lotterylab.subsetsum` for the API and :mod:`lotterylab._rss_kernels` for the scalar kernels.
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


@njit(parallel=True, cache=True)
def vector_local_search(X, T, eps, restarts, seed, out_mask, nb):
    """Heuristic for large n: best-improvement single flips on the l-inf error from several starts.

    Start 0 is the empty set, start 1 a greedy forward pass; further starts are random subsets
    drawn from a hash of (seed, instance, restart), so results are reproducible.
    """
    B, n, d = X.shape
    for blk in prange(nb):
        s = np.empty(d)
        cand = np.empty(d)
        for inst in range(blk * B // nb, (blk + 1) * B // nb):
            x = X[inst]
            t = T[inst]
            best_e = INF
            best_mask = np.int64(0)
            for r in range(restarts):
                g = np.int64(0)
                if r >= 2:
                    h = np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(inst) * np.uint64(0xBF58476D1CE4E5B9) \
                        + np.uint64(r) * np.uint64(0x94D049BB133111EB)
                    h ^= h >> np.uint64(31)
                    h *= np.uint64(0xD6E8FEB86659FD93)
                    h ^= h >> np.uint64(32)
                    g = np.int64(h & np.uint64((1 << n) - 1)) if n < 63 else np.int64(h >> np.uint64(1))
                for q in range(d):
                    s[q] = 0.0
                for j in range(n):
                    if (g >> j) & 1:
                        for q in range(d):
                            s[q] += x[j, q]
                cur = 0.0
                for q in range(d):
                    cur = max(cur, abs(t[q] - s[q]))
                greedy_add_only = r == 1
                improved = True
                while improved:
                    improved = False
                    bj = -1
                    be = cur
                    for j in range(n):
                        inside = (g >> j) & 1
                        if greedy_add_only and inside:
                            continue
                        sign = -1.0 if inside else 1.0
                        e = 0.0
                        for q in range(d):
                            cand[q] = s[q] + sign * x[j, q]
                            e = max(e, abs(t[q] - cand[q]))
                        if e < be:
                            be = e
                            bj = j
                    if bj >= 0:
                        sign = -1.0 if (g >> bj) & 1 else 1.0
                        for q in range(d):
                            s[q] += sign * x[bj, q]
                        g ^= np.int64(1) << bj
                        cur = be
                        improved = True
                    elif greedy_add_only:
                        greedy_add_only = False  # then continue with flips both ways
                        improved = True
                if cur < best_e:
                    best_e = cur
                    best_mask = g
            out_mask[inst] = best_mask
