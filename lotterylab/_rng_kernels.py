"""Compiled (numba) versions of :func:`lotterylab.rng.bits_at` and :func:`lotterylab.rng.uniform_grid`
for CPU tensors.

Same arithmetic as the torch code (32-bit words in int64, multiplications split into 16-bit
halves so nothing overflows), so the bits are identical; a test compares the two on random
indices. It exists because drawing a 100M-entry source layer through torch's int64 ops costs
~10 s of the construction, and this loop ~1 s.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_M32 = 0xFFFFFFFF
_M16 = 0xFFFF


@njit(cache=True, inline="always")
def _mulmod32(x, c):
    lo = x * (c & _M16)
    hi = ((x * (c >> 16)) & _M16) << 16
    return (lo + hi) & _M32


@njit(cache=True, inline="always")
def _fmix32(x):
    x = x ^ (x >> 16)
    x = _mulmod32(x, 0x85EBCA6B)
    x = x ^ (x >> 13)
    x = _mulmod32(x, 0xC2B2AE35)
    return x ^ (x >> 16)


@njit(cache=True, inline="always")
def _word(k0, k1, v):
    """The 32-bit word of index v (the counter-based hash of :func:`lotterylab.rng.bits_at`)."""
    h = _fmix32((v & _M32) ^ k1)
    h = _fmix32((h + _mulmod32(v >> 32, 0x9E3779B9) + k0) & _M32)
    return _fmix32(h ^ k1)


@njit(cache=True, inline="always")
def _uniform(h, scale, low):
    """A word's uniform float32 value: its top 24 bits times 2**-24, times ``scale``, plus ``low``,
    each step rounded to float32 as torch does."""
    return np.float32(h >> 8) * np.float32(2.0**-24) * scale + low


@njit(cache=True, parallel=True)
def bits_at(k0, k1, idx, out):
    """out[i] = the 32-bit word of index idx[i] (int64 arrays, flat)."""
    for i in prange(idx.shape[0]):
        out[i] = _word(k0, k1, idx[i])


@njit(cache=True, parallel=True)
def uniform_grid(k0, k1, row0, col0, stride, scale, low, out):
    """out[r, c] = the uniform value of index (row0 + r) * stride + col0 + c: the word's top 24 bits
    as float32 times 2**-24, times ``scale``, plus ``low``, each step rounded to float32 as torch does."""
    rows, cols = out.shape
    for r in prange(rows):
        base = (row0 + r) * stride + col0
        for c in range(cols):
            out[r, c] = _uniform(_word(k0, k1, base + c), scale, low)


@njit(cache=True, parallel=True)
def uniform_rows(k0, k1, stride, scale, low, rows, indptr, cols, out):
    """out[p] = the uniform value (as :func:`uniform_grid`) of index rows[i] * stride + cols[p], for
    the entries p in indptr[i]:indptr[i + 1] of each row i: a compact ticket's kept entries, drawn
    without a gather of their addresses. (Here, beside the hash it inlines: numba's cache of a kernel
    does not notice changes to functions it inlines from another file.)"""
    for i in prange(rows.shape[0]):
        base = rows[i] * stride
        for p in range(indptr[i], indptr[i + 1]):
            out[p] = _uniform(_word(k0, k1, base + cols[p]), scale, low)


def bits_at_numpy(k0: int, k1: int, idx: np.ndarray) -> np.ndarray:
    from .threads import numba_threads

    flat = np.ascontiguousarray(idx.reshape(-1), dtype=np.int64)
    out = np.empty_like(flat)
    with numba_threads():  # torch's thread budget
        bits_at(np.int64(k0), np.int64(k1), flat, out)
    return out.reshape(idx.shape)
