"""Thread counts that hold: the count a user sets is the count torch and numba use.

Why this module exists: numba's OpenMP threading layer shares the OpenMP runtime with torch's
CPU kernels, and its first parallel launch sets that runtime to numba's own thread count (the
number of cores), silently undoing ``torch.set_num_threads(1)``. Every numba kernel lotterylab
calls therefore runs inside :func:`numba_threads`, which sizes numba's pool to torch's count and
puts torch's count back afterwards.

Why not numba's ``workqueue`` layer, which leaves OpenMP alone: each parallel launch costs about
0.6 ms more (measured: 1,000 solves of 200 instances, 1.16 s vs 0.54 s on 2 threads), and a
construction makes ~10^5 launches in its growth rounds: the demo's construction took 136 s instead
of ~50 s. Set ``NUMBA_THREADING_LAYER`` to choose a layer yourself.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch


def check_threads(n) -> int:
    """A thread count: a positive integer, or ValueError naming the fix."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"threads must be a positive integer, got {n!r}")
    return n


def set_threads(n: int) -> int:
    """Set torch's intra-op thread count (numba follows it at each kernel call)."""
    torch.set_num_threads(check_threads(n))
    return n


@contextmanager
def numba_threads():
    """Run numba parallel kernels on torch's thread count; yields that count.

    torch's count is put back afterwards: with the OpenMP layer a numba launch can change it.
    """
    from numba import config, set_num_threads

    n = torch.get_num_threads()
    k = max(1, min(n, config.NUMBA_NUM_THREADS))
    set_num_threads(k)
    try:
        yield k
    finally:
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
