"""An exact mixed-integer solver for vector subset sum (HiGHS through ``scipy.optimize.milp``).

The reference the beam-search heuristic of :mod:`lotterylab.subsetsum` is measured against
(``benchmarks/structured.py``, ``tests/test_mrss.py``); it is far too slow for constructions.
One MILP per instance over binaries ``b[n]`` and the error bound ``t``:

* ``min_error``: minimise ``t`` subject to ``|y_q - sum_i b_i x_iq| <= t`` for every coordinate;
* ``min_cardinality``: minimise ``sum b_i`` subject to ``|y_q - sum_i b_i x_iq| <= eps``; when that is
  infeasible, the ``min_error`` optimum is returned and ``fallback`` is set.

A time limit per instance bounds the work; an instance stopped by it keeps the best subset found
(``info["status"]`` says which instances were proven optimal). Needs scipy
(``pip install lotterylab[milp]``).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from .subsetsum import SubsetSumResult, _validate


def _milp():
    try:
        from scipy.optimize import Bounds, LinearConstraint, milp
    except ImportError:  # pragma: no cover - the test extra installs scipy
        raise RuntimeError("the exact MILP baseline needs scipy (HiGHS): pip install 'lotterylab[milp]'") from None
    return Bounds, LinearConstraint, milp


def _one(x: np.ndarray, y: np.ndarray, eps: float, cardinality: bool, time_limit: float):
    """(chosen bool[n], proven optimal, feasible within eps) for one instance."""
    Bounds, LinearConstraint, milp = _milp()
    n, d = x.shape
    if cardinality:  # min sum b  s.t.  y - eps <= X^T b <= y + eps
        res = milp(np.ones(n), constraints=LinearConstraint(x.T, y - eps, y + eps), integrality=np.ones(n),
                   bounds=Bounds(0, 1), options={"time_limit": time_limit})
        if res.x is not None:
            return res.x > 0.5, res.status == 0, True
        if res.status == 1:  # stopped by the time limit before any feasible subset: report a failure
            return np.zeros(n, dtype=bool), False, False
    # min t  s.t.  X^T b - t <= y  and  -X^T b - t <= -y
    A = np.zeros((2 * d, n + 1))
    A[:d, :n], A[d:, :n] = x.T, -x.T
    A[:, n] = -1.0
    c = np.zeros(n + 1)
    c[n] = 1.0
    integ = np.ones(n + 1)
    integ[n] = 0
    res = milp(c, constraints=LinearConstraint(A, -np.inf, np.concatenate([y, -y])), integrality=integ,
               bounds=Bounds(np.zeros(n + 1), np.r_[np.ones(n), np.inf]), options={"time_limit": time_limit})
    chosen = res.x[:n] > 0.5 if res.x is not None else np.zeros(n, dtype=bool)
    return chosen, res.status == 0 and not cardinality, False


def solve_milp(values: torch.Tensor, targets: torch.Tensor, eps: float, objective: str = "min_error",
               time_limit: float = 10.0) -> SubsetSumResult:
    """Solve vector (or scalar) instances one MILP at a time; see the module docs."""
    eps = _validate(values, targets, eps, objective, None)
    if objective not in ("min_error", "min_cardinality"):
        raise ValueError(f"the MILP baseline solves min_error and min_cardinality, not {objective!r}")
    if not (isinstance(time_limit, (int, float)) and time_limit > 0):
        raise ValueError(f"time_limit must be a positive number of seconds, got {time_limit!r}")
    X = values.detach().to("cpu", torch.float64)
    Y = targets.detach().to("cpu", torch.float64)
    if X.dim() == 2:
        X, Y = X.unsqueeze(2), Y.unsqueeze(1)
    B, n, _ = X.shape
    mask = torch.zeros(B, n, dtype=torch.bool)
    proven = torch.zeros(B, dtype=torch.bool)
    seconds = torch.zeros(B, dtype=torch.float64)
    for i in range(B):
        t0 = time.perf_counter()
        chosen, opt, _ = _one(X[i].numpy(), Y[i].numpy(), eps, objective == "min_cardinality", float(time_limit))
        seconds[i] = time.perf_counter() - t0
        mask[i] = torch.from_numpy(chosen)
        proven[i] = opt
    s = (X * mask.unsqueeze(-1)).sum(1)
    err = (Y - s).abs().amax(1)
    ok = err <= eps
    if values.dim() == 2:
        s = s.squeeze(1)
    fallback = ~ok if objective == "min_cardinality" else torch.zeros(B, dtype=torch.bool)
    return SubsetSumResult(mask=mask, sum=s.to(values.dtype), error=err.to(values.dtype), ok=ok, fallback=fallback,
                           objective=objective, eps=eps, exact=bool(proven.all()), method="milp-highs",
                           info={"proven_optimal": proven, "seconds": seconds, "time_limit": float(time_limit)})
