"""Counter-based random numbers that are bit-identical on every machine, device and torch version.

Why not ``torch.Generator``: its streams differ between CPU and CUDA and may change between torch
releases, so a ticket stored as "seed + mask" could silently regenerate different weights.

Here every value is a pure function of ``(seed, stream, index)``:

* ``stream`` is derived from a parameter's name (CRC-32), so adding a layer never shifts the
  values of another one;
* the hash uses only 32-bit integer arithmetic carried in int64 tensors *without overflow*
  (multiplications are split into 16-bit halves), which every backend computes exactly;
* floats are built with exact operations only (shifts, exact scaling by powers of two) and, for
  the normal distribution, float64 arithmetic restricted to ``+ - * /`` and ``sqrt`` (all
  correctly rounded under IEEE 754) followed by one rounding to float32. Transcendental functions
  from libm / CUDA are never called, because their last bits differ between implementations.

The generator is a statistical one (murmur3 finaliser chained with the key), not cryptographic.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import torch

_MASK32 = 0xFFFFFFFF
_MASK16 = 0xFFFF
# Fixed constants: changing any of them changes every generated weight (a test pins values).
_C1 = 0x85EBCA6B
_C2 = 0xC2B2AE35
_GOLDEN = 0x9E3779B9


def _mulmod32(x: torch.Tensor, c: int) -> torch.Tensor:
    """(x * c) mod 2**32 for 0 <= x < 2**32 held in int64, with no intermediate above 2**49."""
    lo = x * (c & _MASK16)
    hi = ((x * (c >> 16)) & _MASK16) << 16
    return (lo + hi) & _MASK32


def _fmix32(x: torch.Tensor) -> torch.Tensor:
    x = x ^ (x >> 16)
    x = _mulmod32(x, _C1)
    x = x ^ (x >> 13)
    x = _mulmod32(x, _C2)
    return x ^ (x >> 16)


def _fmix32_int(x: int) -> int:
    x &= _MASK32
    x ^= x >> 16
    x = (x * _C1) & _MASK32
    x ^= x >> 13
    x = (x * _C2) & _MASK32
    return x ^ (x >> 16)


def stream_id(name: str) -> int:
    """Stable 32-bit stream number of a parameter name."""
    return zlib.crc32(name.encode("utf-8")) & _MASK32


def _keys(seed: int, stream: int) -> tuple[int, int]:
    if not isinstance(seed, int) or seed < 0 or seed >= 2**63:
        raise ValueError(f"seed must be an integer in [0, 2**63), got {seed!r}")
    k0 = _fmix32_int((seed & _MASK32) ^ _GOLDEN)
    k0 = _fmix32_int(k0 ^ (seed >> 32) ^ 0x7F4A7C15)
    k1 = _fmix32_int(k0 ^ stream)
    return k0, k1


def random_bits(seed: int, stream: int, count: int, offset: int = 0, device=None) -> torch.Tensor:
    """``count`` 32-bit words (int64 tensor, values in [0, 2**32)) for indices offset..offset+count."""
    if count < 0 or offset < 0 or offset + count > 2**62:
        raise ValueError("index range out of bounds")
    return bits_at(seed, stream, torch.arange(offset, offset + count, dtype=torch.int64, device=device))


def bits_at(seed: int, stream: int, idx: torch.Tensor) -> torch.Tensor:
    """32-bit words (int64) for arbitrary non-negative int64 indices ``idx`` (any shape)."""
    k0, k1 = _keys(seed, stream)
    if idx.device.type == "cpu" and idx.numel() > 4096:  # the compiled loop: same bits, ~10x faster
        from ._rng_kernels import bits_at_numpy

        return torch.from_numpy(bits_at_numpy(k0, k1, idx.numpy()))
    return _bits_at_torch(k0, k1, idx)


def _bits_at_torch(k0: int, k1: int, idx: torch.Tensor) -> torch.Tensor:
    """The reference: tensor ops only, any device."""
    lo = idx & _MASK32
    hi = idx >> 32
    h = _fmix32(lo ^ k1)
    h = _fmix32((h + _mulmod32(hi, _GOLDEN) + k0) & _MASK32)
    h = _fmix32(h ^ k1)
    return h


def uniform01(seed: int, stream: int, count: int, offset: int = 0, device=None) -> torch.Tensor:
    """float64 values in the open interval (0, 1) on a 2**-32 grid; exact on every backend."""
    bits = random_bits(seed, stream, count, offset, device)
    return (bits.to(torch.float64) + 0.5) * (2.0**-32)


_CHUNK = 1 << 22  # values generated per pass: bounds the int64/float64 temporaries (~200 MB)


def uniform(seed: int, stream: int, shape, low: float = -1.0, high: float = 1.0, device=None,
            offset: int = 0) -> torch.Tensor:
    """float32 values uniform on [low, high) with 24-bit resolution, exactly reproducible.

    ``offset`` starts at that flat index (the continuation of a longer draw)."""
    n = math.prod(shape)
    out = torch.empty(n, dtype=torch.float32, device=device)
    for lo in range(0, n, _CHUNK):
        bits = random_bits(seed, stream, min(_CHUNK, n - lo), offset + lo, device)
        u = (bits >> 8).to(torch.float32) * (2.0**-24)  # exact: 24-bit integers are float32-representable
        out[lo:lo + len(u)] = u * (high - low) + low
    return out.reshape(tuple(shape))


def uniform_at(seed: int, stream: int, idx: torch.Tensor, low: float = -1.0, high: float = 1.0) -> torch.Tensor:
    """The values :func:`uniform` (flat index) or :func:`uniform_grid` (``r * GRID_STRIDE + c``) draw at
    the indices ``idx``, bit for bit, without drawing the rest (compact tickets)."""
    return (bits_at(seed, stream, idx) >> 8).to(torch.float32) * (2.0**-24) * (high - low) + low


GRID_STRIDE = 1 << 24  # column stride of grid addressing: widths up to 16M


def uniform_grid(seed: int, stream: int, shape, low: float = -1.0, high: float = 1.0, device=None,
                 row_offset: int = 0, col_offset: int = 0) -> torch.Tensor:
    """Like :func:`uniform` for a matrix, but entry (r, c) is addressed as r * 2**24 + c.

    Appending rows or columns to the matrix leaves every existing entry unchanged, which lets a
    construction grow a source network by real neurons without redrawing the rest; the offsets
    draw just a block (rows from ``row_offset``, columns from ``col_offset``).
    """
    rows, cols = (int(shape[0]), int(math.prod(shape[1:]))) if len(shape) > 1 else (int(shape[0]), 1)
    if cols + col_offset > GRID_STRIDE:
        raise ValueError(f"grid addressing supports at most {GRID_STRIDE} columns, got {cols + col_offset}")
    out = torch.empty(rows, cols, dtype=torch.float32, device=device)
    if out.device.type == "cpu" and rows * cols > 4096:  # one compiled pass, the same floats (tested)
        from ._rng_kernels import uniform_grid as kernel
        from .threads import numba_threads

        k0, k1 = _keys(seed, stream)
        with numba_threads():
            kernel(np.int64(k0), np.int64(k1), np.int64(row_offset), np.int64(col_offset), np.int64(GRID_STRIDE),
                   np.float32(high - low), np.float32(low), out.numpy())
        return out.reshape(tuple(shape))
    step = max(1, _CHUNK // max(cols, 1))
    col_idx = torch.arange(col_offset, col_offset + cols, dtype=torch.int64, device=device)
    for r0 in range(0, rows, step):
        r = torch.arange(row_offset + r0, row_offset + min(rows, r0 + step), dtype=torch.int64, device=device)
        bits = bits_at(seed, stream, r.view(-1, 1) * GRID_STRIDE + col_idx.view(1, -1))
        out[r0:r0 + len(r)] = (bits >> 8).to(torch.float32) * (2.0**-24) * (high - low) + low
    return out.reshape(tuple(shape))


# --- normal distribution without libm ------------------------------------------------------------

_LN2 = 0.6931471805599453


def _log_unit(u: torch.Tensor) -> torch.Tensor:
    """Natural log of float64 u in (0, 1] with + - * / only (error ~1e-15)."""
    mant, expo = torch.frexp(u)  # u = mant * 2**expo, mant in [0.5, 1): exact decomposition
    # move mantissa into [sqrt(1/2), sqrt(2)) for fast series convergence
    small = mant < 0.7071067811865476
    mant = torch.where(small, mant * 2.0, mant)
    expo = torch.where(small, expo - 1, expo).to(torch.float64)
    s = (mant - 1.0) / (mant + 1.0)  # |s| < 0.172
    s2 = s * s
    # log(m) = 2 * atanh(s) = 2 * (s + s^3/3 + s^5/5 + ...); 11 terms reach 1e-17
    acc = torch.full_like(s, 1.0 / 21.0)
    for k in range(19, 0, -2):
        acc = acc * s2 + 1.0 / k
    return 2.0 * s * acc + expo * _LN2


def _cos_2pi(v: torch.Tensor) -> torch.Tensor:
    """cos(2*pi*v) for float64 v in [0, 1) with + - * / only (error ~1e-15)."""
    # fold to w in [0, 0.25] with a sign: cos is symmetric about 0.5 and antisymmetric about 0.25
    w = torch.where(v > 0.5, 1.0 - v, v)
    sign = torch.where(w > 0.25, -1.0, 1.0).to(torch.float64)
    w = torch.where(w > 0.25, 0.5 - w, w)
    x = w * (2.0 * math.pi)  # in [0, pi/2]
    x2 = x * x
    # cos x = sum_j (-1)^j x^(2j) / (2j)!, Horner from j = 11 (x^22 term < 1e-17 on [0, pi/2])
    acc = torch.full_like(x, (-1) ** 11 / math.factorial(22))
    for j in range(10, -1, -1):
        acc = acc * x2 + (-1) ** j / math.factorial(2 * j)
    return sign * acc


def normal(seed: int, stream: int, shape, mean: float = 0.0, std: float = 1.0, device=None) -> torch.Tensor:
    """float32 N(mean, std**2) by Box-Muller on two independent uniforms per value."""
    n = math.prod(shape)
    out = torch.empty(n, dtype=torch.float32, device=device)
    for lo in range(0, n, _CHUNK):
        m = min(_CHUNK, n - lo)
        u1 = uniform01(seed, stream, m, lo, device)
        u2 = uniform01(seed, stream, m, 2**40 + lo, device)  # a disjoint index range of the same stream
        z = torch.sqrt(-2.0 * _log_unit(u1)) * _cos_2pi(u2)
        out[lo:lo + m] = (z * std + mean).to(torch.float32)
    return out.reshape(tuple(shape))


_PAIR = 0x6A09E667  # the second uniform of a grid normal comes from a partner stream


def _normal_from_bits(b1: torch.Tensor, b2: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    u1 = (b1.to(torch.float64) + 0.5) * (2.0**-32)
    u2 = (b2.to(torch.float64) + 0.5) * (2.0**-32)
    z = torch.sqrt(-2.0 * _log_unit(u1)) * _cos_2pi(u2)
    return (z * std + mean).to(torch.float32)


def normal_at(seed: int, stream: int, idx: torch.Tensor, mean: float = 0.0, std: float = 1.0) -> torch.Tensor:
    """The values :func:`normal_grid` draws at grid indices ``idx`` (``r * GRID_STRIDE + c``), bit for bit."""
    return _normal_from_bits(bits_at(seed, stream, idx), bits_at(seed, _fmix32_int(stream ^ _PAIR), idx), mean, std)


def normal_grid(seed: int, stream: int, shape, mean: float = 0.0, std: float = 1.0, device=None,
                row_offset: int = 0, col_offset: int = 0) -> torch.Tensor:
    """float32 N(mean, std**2) with grid addressing (entry (r, c) at index r * 2**24 + c, as
    :func:`uniform_grid`): Box-Muller on the words of the index in two streams, + - * / and sqrt
    only, so every machine draws the same floats and growing a layer redraws nothing."""
    rows, cols = (int(shape[0]), int(math.prod(shape[1:]))) if len(shape) > 1 else (int(shape[0]), 1)
    if cols + col_offset > GRID_STRIDE:
        raise ValueError(f"grid addressing supports at most {GRID_STRIDE} columns, got {cols + col_offset}")
    out = torch.empty(rows, cols, dtype=torch.float32, device=device)
    step = max(1, _CHUNK // max(cols, 1))
    col_idx = torch.arange(col_offset, col_offset + cols, dtype=torch.int64, device=device)
    for r0 in range(0, rows, step):
        r = torch.arange(row_offset + r0, row_offset + min(rows, r0 + step), dtype=torch.int64, device=device)
        out[r0:r0 + len(r)] = normal_at(seed, stream, r.view(-1, 1) * GRID_STRIDE + col_idx.view(1, -1), mean, std)
    return out.reshape(tuple(shape))
