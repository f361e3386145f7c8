"""Compiled (numba) convolution with a sparse kernel, for :mod:`lotterylab.sparse_conv`.

Each output map is ``sum_k val[k] * shift(x[ch[k]], off[k])`` over its entries, in entry order: on a
zero-padded input laid out flat with the padded row pitch, a kernel tap is a constant offset, so
every entry is one contiguous multiply-add over the output (the columns past the output width are
computed and dropped). Each output element is summed by one thread in entry order, so the result
does not depend on the thread count.
"""

from __future__ import annotations

from numba import njit, prange


@njit(cache=True, parallel=True, boundscheck=False)
def conv_entries(xp, ip, ch, off, val, out, span):
    """out[n, r, :span] += sum over k in ip[r]:ip[r+1] of val[k] * xp[n, ch[k], off[k]:off[k] + span]."""
    N = xp.shape[0]
    R = out.shape[1]
    for t in prange(N * R):
        n = t // R
        r = t % R
        o = out[n, r]
        for k in range(ip[r], ip[r + 1]):
            xi = xp[n, ch[k]]
            v = val[k]
            s = off[k]
            for p in range(span):
                o[p] += v * xi[s + p]
