"""Compiled (numba) gather of subset-sum candidates for CPU sources; see
:meth:`lotterylab.construct.engine.Engine.solve_pairs`.

One pass builds every instance's candidate values straight from the source's weight buffer, in
the solver's layout, instead of five tensor passes (gather, float64 copy, validity, coefficient,
transpose) over ~30 values per instance. Each value is ``float64(W[row, col, tap]) * coef`` (0 for
padding), the same IEEE operations as the tensor path, so the values are bit-identical.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def candidate_values(W, rows, units, col, valid, coef, out):
    """out[k, t, s, j] = valid[u, s, j] ? float64(W[rows[k], col[u, s, j], t]) * coef[u, s, j] : 0 * coef,
    with u = units[k]."""
    K = rows.shape[0]
    T = out.shape[1]
    S = out.shape[2]
    n = out.shape[3]
    for k in prange(K):
        r = rows[k]
        u = units[k]
        for t in range(T):
            for s in range(S):
                for j in range(n):
                    c = coef[u, s, j]
                    w = np.float64(W[r, col[u, s, j], t]) if valid[u, s, j] else 0.0
                    out[k, t, s, j] = w * c
