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


@njit(cache=True)
def _half_sums(x, lo, h, d):
    """Sums [2**h, d] and sizes of every subset of candidates lo..lo+h-1 (bit j: candidate lo + j)."""
    m = 1 << h
    s = np.zeros((m, d))
    c = np.zeros(m, np.int64)
    for i in range(1, m):
        j = 0
        while ((i >> j) & 1) == 0:
            j += 1
        p = i ^ (1 << j)
        for q in range(d):
            s[i, q] = s[p, q] + x[lo + j, q]
        c[i] = c[p] + 1
    return s, c


@njit(cache=True)
def _lower_bound(SB, key, value):
    """First row of SB (sorted by component ``key``) whose key component is >= value."""
    lo, hi = 0, SB.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if SB[mid, key] < value:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True)
def _linf(t, SA, i, SB, b, d):
    """l-infinity error of the pair (half-subset i, half-subset b) against target t."""
    e = 0.0
    for q in range(d):
        v = abs(t[q] - SA[i, q] - SB[b, q])
        if v > e:
            e = v
    return e


@njit(cache=True)
def _scan(SA, CA, SB, CB, key, t, tol, d, want_card, budget):
    """Best (size or error, then error) pair of half-subsets within ``tol`` (l-infinity); SB sorted by
    component ``key``. Returns (found, ia, ib, error, complete): ``complete`` is False when more than
    ``budget`` pairs fell in the windows and the scan stopped early."""
    found = False
    best_c = 1 << 30
    best_e = INF
    bi = 0
    bj = 0
    nb = SB.shape[0]
    work = 0
    for i in range(SA.shape[0]):
        r = t[key] - SA[i, key]
        b = _lower_bound(SB, key, r - tol)
        while b < nb and SB[b, key] <= r + tol:
            work += 1
            e = _linf(t, SA, i, SB, b, d)
            if e <= tol:
                c = CA[i] + CB[b]
                better = (c < best_c or (c == best_c and e < best_e)) if want_card else e < best_e
                if (not found) or better:
                    found = True
                    best_c = c
                    best_e = e
                    bi = i
                    bj = b
            b += 1
        if work > budget:
            return found, bi, bj, best_e, False
    return found, bi, bj, best_e, True


@njit(cache=True)
def _nearest_in_key(SA, SB, key, t, d):
    """For every sum of one half, the other half's nearest in the key component: the best pair by
    l-infinity error among those (an upper bound on the least error, in O(2**h log 2**h))."""
    nb = SB.shape[0]
    best_e = INF
    bi = 0
    bj = 0
    for i in range(SA.shape[0]):
        lo = _lower_bound(SB, key, t[key] - SA[i, key])
        for b in (lo - 1, lo):
            if 0 <= b < nb:
                e = _linf(t, SA, i, SB, b, d)
                if e < best_e:
                    best_e = e
                    bi = i
                    bj = b
    return bi, bj, best_e


@njit(parallel=True, cache=True)
def vector_mitm(X, T, eps, objective, out_mask, out_flag, out_exact, nb):
    """Exact vector solver by meet in the middle (small d, n <= 40): the subset sums of both halves,
    one half sorted by its widest component; each sum of the other half scans the window of that
    component within the tolerance and checks the rest. objective 1 (min_cardinality): the smallest
    subset within eps, ties by error; otherwise, or when none is within eps, the least error: an
    upper bound from each sum's nearest partner in the key component, then one scan at that error
    finds the minimum. A scan with more than 256 pairs per sum in its windows (targets far out of
    reach) stops early: ``out_exact`` is False there and the best pair found is kept (for
    min_cardinality only when no subset is within eps: ``out_flag`` marks that fallback)."""
    B, n, d = X.shape
    h1 = n // 2
    h2 = n - h1
    budget = 256 * (1 << h1)
    for blk in prange(nb):
        for inst in range(blk * B // nb, (blk + 1) * B // nb):
            x = X[inst]
            t = T[inst]
            key = 0
            wide = -1.0
            for q in range(d):
                acc = 0.0
                for j in range(n):
                    acc += abs(x[j, q])
                if acc > wide:
                    wide = acc
                    key = q
            SA, CA = _half_sums(x, 0, h1, d)
            SB0, CB0 = _half_sums(x, h1, h2, d)
            order = np.argsort(SB0[:, key])
            SB = SB0[order]
            CB = CB0[order]
            found = False
            complete = True
            ia = 0
            ib = 0
            if objective == 1:
                found, ia, ib, err, complete = _scan(SA, CA, SB, CB, key, t, eps, d, True, budget)
            out_flag[inst] = False
            if not found:
                out_flag[inst] = objective == 1
                ia, ib, err = _nearest_in_key(SA, SB, key, t, d)
                # the least error: one scan at the bound (widened by rounding; it finds that pair again)
                f2, ia2, ib2, err2, complete = _scan(SA, CA, SB, CB, key, t, err * (1 + 1e-12) + 1e-300, d,
                                                     False, budget)
                if f2 and err2 <= err:
                    ia, ib = ia2, ib2
            out_exact[inst] = complete
            out_mask[inst] = np.int64(ia) | (np.int64(order[ib]) << h1)


@njit(parallel=True, cache=True)
def vector_by_size(X, T, eps, max_size, out_mask, out_done, nb):
    """min_cardinality by increasing subset size: every subset of size 0, 1, ..., ``max_size`` in
    lexicographic order (prefix sums per level), stopping after the first size with a subset within
    eps (ties by error). That answer is exact: every smaller subset was checked. ``out_done`` is False
    where no subset up to ``max_size`` is within eps (the caller solves those in full). Small subsets
    are the rule in the papers' mode (sizes 1-4 of 20 candidates: ~6k subsets, not 2**20)."""
    B, n, d = X.shape
    for blk in prange(nb):
        idx = np.empty(n, dtype=np.int64)
        P = np.empty((n + 1, d))
        for inst in range(blk * B // nb, (blk + 1) * B // nb):
            x = X[inst]
            t = T[inst]
            for q in range(d):
                P[0, q] = 0.0
            e0 = 0.0
            for q in range(d):
                e0 = max(e0, abs(t[q]))
            out_done[inst] = e0 <= eps
            out_mask[inst] = 0
            if e0 <= eps:
                continue
            for s in range(1, min(max_size, n) + 1):
                best_e = INF
                best = np.int64(0)
                for i in range(s):
                    idx[i] = i
                lvl = 0  # prefix sums are valid up to level lvl
                while True:
                    for i in range(lvl, s):
                        for q in range(d):
                            P[i + 1, q] = P[i, q] + x[idx[i], q]
                    e = 0.0
                    for q in range(d):
                        v = abs(t[q] - P[s, q])
                        if v > e:
                            e = v
                    if e <= eps and e < best_e:
                        best_e = e
                        best = np.int64(0)
                        for i in range(s):
                            best |= np.int64(1) << idx[i]
                    # next combination: the rightmost index that can still move right
                    i = s - 1
                    while i >= 0 and idx[i] == n - s + i:
                        i -= 1
                    if i < 0:
                        break
                    idx[i] += 1
                    for j in range(i + 1, s):
                        idx[j] = idx[j - 1] + 1
                    lvl = i
                if best_e <= eps:
                    out_mask[inst] = best
                    out_done[inst] = True
                    break
