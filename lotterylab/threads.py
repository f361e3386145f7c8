"""Thread counts that hold: the count a user sets is the count torch and numba use.

Why this module exists: numba's default OpenMP threading layer shares the OpenMP runtime with
torch's CPU kernels, and its first parallel launch sets that runtime to numba's own thread count
(the number of cores), silently undoing ``torch.set_num_threads(1)``. Its idle threads also spin,
so two lotterylab processes side by side slowed each other far more than the core count explains.
lotterylab therefore asks numba for its ``workqueue`` layer (plain threads, no OpenMP state, no
spinning) unless the user chose a layer through ``NUMBA_THREADING_LAYER``, sizes numba's pool to
torch's thread count before each parallel kernel, and restores torch's count afterwards in case
another layer is in force.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager

import torch

_USER_LAYER = "NUMBA_THREADING_LAYER" in os.environ
os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")
if "numba" in sys.modules and not _USER_LAYER:  # imported before lotterylab: set it before any parallel launch
    sys.modules["numba"].config.THREADING_LAYER = "workqueue"


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
    set_num_threads(max(1, min(n, config.NUMBA_NUM_THREADS)))
    try:
        yield max(1, min(n, config.NUMBA_NUM_THREADS))
    finally:
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
