"""Batched random subset sum: approximate each target by the sum of a subset of its candidates.

``solve(values, targets, eps, objective=..., k=None)`` solves B independent instances in one call:

* ``values [B, n]`` and ``targets [B]`` (scalar instances, ``n <= 32``), or ``values [B, n, d]``
  and ``targets [B, d]`` (vector instances, l-infinity error; da Cunha et al. 2023; ``n <= 512``,
  ``d <= 49``);
* objectives (all exact for scalar instances):

  - ``min_error``: the best subset (meet in the middle);
  - ``min_cardinality``: the smallest subset within ``eps``, ties by smaller error; when none is
    within ``eps`` the best-error subset is returned and ``fallback`` is set;
  - ``min_l1``: among subsets within ``eps`` the one with the smallest ``sum |x_i|`` (it bounds
    error amplification in depth-L+1 tickets), ``fallback`` as above;
  - ``fixed_size``: the best subset with exactly ``k`` elements (Natale et al. 2024).

Vector instances are solved exactly by enumerating all ``2**n`` subsets while
``2**n * d <= VECTOR_EXACT_BUDGET``. Small vectors (``d <= 3``, 16 <= n <= 40: moment matching's
instances) are solved exactly for ``min_error`` and ``min_cardinality`` by a compiled meet in the
middle instead (both halves' sums, one sorted by its widest component, a window scan per sum; a
target far out of reach stops a scan early and says ``exact=False``). Exactly solved
``min_cardinality`` vector instances first try subsets by increasing size (:func:`staged_max_size`):
the first size with a subset within ``eps`` is the answer, the rest go to the full solver. Beyond
exact solving ``min_error`` and ``min_cardinality`` use a compiled beam search
(:mod:`lotterylab._mrss_kernels`: candidates by decreasing norm, ``beam_width`` states kept by l2
residual, then l-infinity flips and swaps) and the result says ``exact=False``. The beam search's
quality against an exact MILP (HiGHS) is measured in ``benchmarks/structured.py``; the heuristic
always runs on the CPU (tensors on other devices are copied there and back).

On CPU the work runs in compiled numba kernels (:mod:`lotterylab._rss_kernels`) over
``torch.get_num_threads()`` threads; on other devices (CUDA) in batched torch code on that
device. Decisions are made in float64 whatever the input dtype, so a float32 and a float64 call
on the same numbers choose the same subsets. Work is chunked, so memory stays bounded.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch

from .threads import numba_threads

OBJECTIVES = ("min_error", "min_cardinality", "min_l1", "fixed_size")
MAX_N = 32                   # scalar instances (exact solvers)
MAX_N_VECTOR = 512           # vector instances (exact below VECTOR_EXACT_BUDGET, beam search above)
MAX_D = 49                   # vector dimension: up to a 7x7 kernel
VECTOR_EXACT_BUDGET = 2**22  # 2**n * d per instance; n <= 20 at d <= 4
# d <= 3 (moment matching) from 16 candidates on: exact by meet in the middle (enumeration costs 2**n)
MITM_MIN_N, MITM_MAX_N, MITM_MAX_D = 16, 40, 3
BEAM_WIDTH = 1024            # states the vector heuristic keeps per level (quality vs time: docs/benchmarks.md)
CHUNK = 1 << 17  # instances per kernel call: bounds the float64 copies and outputs held at once
# solve_on: the fewest instances worth a task of their own (a scalar instance takes ~1-10 us in
# constructions, a beam-searched one milliseconds; a Ray task costs ~2 ms to schedule)
PART_MIN_SCALAR = 32768
PART_MIN_BEAM = 8

try:  # numba is a hard dependency; the torch path stays usable (and tested) without it
    from . import _mrss_kernels as _kb
    from . import _rss_kernels as _k
    from . import _rss_vector_kernels as _kv

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - exercised only where numba is missing
    _k = _kv = _kb = None
    HAVE_NUMBA = False


@dataclass
class SubsetSumResult:
    mask: torch.Tensor        # bool [B, n]: the chosen subsets
    sum: torch.Tensor         # [B] or [B, d]: achieved sums (input dtype)
    error: torch.Tensor       # [B]: |target - sum| (l-infinity for vectors)
    ok: torch.Tensor          # bool [B]: error <= eps
    fallback: torch.Tensor    # bool [B]: no subset within eps, the best-error subset is returned instead
    objective: str
    eps: float
    exact: bool = True        # False when the vector heuristic ran
    method: str = ""
    info: dict = field(default_factory=dict)

    @property
    def size(self) -> torch.Tensor:
        return self.mask.sum(dim=1)

    def summary(self) -> dict:
        e = self.error.double()
        B = e.numel()
        q = (lambda p: float(torch.quantile(e, p))) if B else (lambda p: float("nan"))
        return {"instances": B, "objective": self.objective, "eps": self.eps, "exact": self.exact,
                "method": self.method, "failure_rate": float((~self.ok).double().mean()) if B else 0.0,
                "fallbacks": int(self.fallback.sum()), "mean_size": float(self.size.double().mean()) if B else 0.0,
                "error_median": q(0.5), "error_p99": q(0.99), "error_max": float(e.max()) if B else float("nan")}


def _validate(values, targets, eps, objective, k):
    if not isinstance(values, torch.Tensor) or not isinstance(targets, torch.Tensor):
        raise TypeError("values and targets must be torch tensors")
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
    if values.dim() not in (2, 3):
        raise ValueError(f"values must be [B, n] or [B, n, d], got shape {tuple(values.shape)}")
    if not values.is_floating_point() or not targets.is_floating_point():
        raise TypeError(f"values and targets must be floating point, got {values.dtype} and {targets.dtype}")
    B, n = values.shape[:2]
    vector = values.dim() == 3
    n_max = MAX_N_VECTOR if vector else MAX_N
    if n < 1 or n > n_max:
        raise ValueError(f"n (candidates per instance) must be in 1..{n_max} for {'vector' if vector else 'scalar'} "
                         f"instances, got {n}: the limit on n was hit; split the instance or use fewer candidates")
    if vector and not 1 <= values.shape[2] <= MAX_D:
        raise ValueError(f"vector dimension d must be in 1..{MAX_D} (a 7x7 kernel), got {values.shape[2]}: the limit "
                         f"on d was hit; solve the vector in parts or use smaller kernels")
    want = (B,) if values.dim() == 2 else (B, values.shape[2])
    if tuple(targets.shape) != want:
        raise ValueError(f"targets must have shape {want} for values of shape {tuple(values.shape)}, "
                         f"got {tuple(targets.shape)}")
    if targets.device != values.device:
        raise ValueError(f"values on {values.device} but targets on {targets.device}; put both on one device")
    try:
        eps = float(eps)
    except (TypeError, ValueError):
        raise TypeError(f"eps must be a number, got {eps!r}") from None
    if not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be finite and >= 0, got {eps}")
    if objective == "fixed_size":
        if k is None or not isinstance(k, int) or not 0 <= k <= n:
            raise ValueError(f"fixed_size needs an integer k in 0..{n}, got {k!r}")
    elif k is not None:
        raise ValueError(f"k is only used by objective='fixed_size', not {objective!r}")
    # a sum is finite when every term is (NaN and inf propagate); only an overflowing sum needs the
    # element-wise check, which is chunked: isfinite on all of 10M x 32 values would double the memory
    if not (torch.isfinite(values.sum(dtype=torch.float64)) and torch.isfinite(targets.sum(dtype=torch.float64))):
        for lo in range(0, B, CHUNK):
            if not (torch.isfinite(values[lo:lo + CHUNK]).all() and torch.isfinite(targets[lo:lo + CHUNK]).all()):
                raise ValueError("values and targets must be finite (found NaN or inf)")
    return eps


BACKENDS = ("auto", "numba", "torch", "brute_force", "beam")


def solve(values: torch.Tensor, targets: torch.Tensor, eps: float, objective: str = "min_error",
          k: int | None = None, *, backend: str = "auto", beam_width: int = BEAM_WIDTH) -> SubsetSumResult:
    """Solve ``values.shape[0]`` independent subset-sum instances at once (see module docs).

    ``backend``: ``auto`` (compiled kernels on CPU, torch elsewhere), ``numba``, ``torch``
    (meet in the middle for min_error, enumeration otherwise, on the tensors' device) or
    ``brute_force`` (enumerate all 2**n subsets on the device: the reference, n <= 24) or ``beam``
    (vector instances: the beam-search heuristic at any size, as used beyond exact enumeration).
    An exact MILP for vector instances is :func:`lotterylab.subsetsum_milp.solve_milp`.
    ``beam_width`` is used by the vector heuristic only (exactly solved instances do not need it).
    """
    eps = _validate(values, targets, eps, objective, k)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if isinstance(beam_width, bool) or not isinstance(beam_width, int) or beam_width < 1:
        raise ValueError(f"beam_width must be a positive integer, got {beam_width!r}")
    B, n = values.shape[:2]
    vector = values.dim() == 3
    device = values.device
    if backend == "numba" and (not HAVE_NUMBA or device.type != "cpu"):
        raise ValueError("backend='numba' needs numba and CPU tensors")
    use_numba = backend == "numba" or (backend == "auto" and HAVE_NUMBA and device.type == "cpu")
    brute = backend == "brute_force"
    if backend == "beam" and not vector:
        raise ValueError("backend='beam' is the vector heuristic; scalar instances are solved exactly")
    mitm = (vector and use_numba and n >= MITM_MIN_N and n <= MITM_MAX_N
            and values.shape[2] <= MITM_MAX_D and objective in ("min_error", "min_cardinality"))
    if backend == "beam" or (vector and not mitm and (1 << n) * values.shape[2] > VECTOR_EXACT_BUDGET
                             and backend in ("auto", "numba")):
        return _solve_beam(values, targets, eps, objective, beam_width)
    # outputs in the input dtype; float64 only per chunk (10M instances at n = 15: ~0.3 GB of output)
    mask = torch.empty(B, n, dtype=torch.bool, device=device)
    sums = torch.empty(targets.shape, dtype=values.dtype, device=device)
    err = torch.empty(B, dtype=values.dtype, device=device)
    ok = torch.empty(B, dtype=torch.bool, device=device)
    fallback = torch.zeros(B, dtype=torch.bool, device=device)
    with numba_threads() if use_numba else nullcontext():
        exact = _solve_chunks(values, targets, eps, objective, k, vector, use_numba, brute,
                              (mask, sums, err, ok, fallback), mitm)
    method = ("numba" if use_numba else f"{'brute_force' if brute else 'torch'}-{device.type}") + \
        ("-vector" if vector else "")
    return SubsetSumResult(mask=mask, sum=sums, error=err, ok=ok,
                           fallback=fallback, objective=objective, eps=eps, exact=exact,
                           method=method + ("" if exact else "-heuristic"))


def solve_on(executor, values: torch.Tensor, targets: torch.Tensor, eps: float, objective: str = "min_error",
             k: int | None = None, *, beam_width: int = BEAM_WIDTH) -> SubsetSumResult:
    """:func:`solve` with the instances split into contiguous parts that run on ``executor``'s workers
    (:mod:`lotterylab.executors`); every instance is solved on its own, so the result is the same,
    bit for bit, as ``solve`` in one process. The instances go to the workers once through
    ``executor.put`` (Ray's object store); each task reads its slice. Small batches, where shipping
    costs more than solving, are solved here."""
    B, n = values.shape[:2]
    beam = values.dim() == 3 and (1 << n) * values.shape[2] > VECTOR_EXACT_BUDGET
    min_part = PART_MIN_BEAM if beam else PART_MIN_SCALAR
    parts = min(4 * executor.workers, B // min_part)
    if executor.name == "serial" or parts < 2 or values.device.type != "cpu":
        return solve(values, targets, eps, objective, k, beam_width=beam_width)
    eps = _validate(values, targets, eps, objective, k)  # (before any part is shipped)
    X = values.detach().to(torch.float64).contiguous().numpy()
    T = targets.detach().to(torch.float64).contiguous().numpy()
    cuts = [B * i // parts for i in range(parts + 1)]
    if executor.shares_objects:  # once into the object store; every task reads its slice of it
        Xr, Tr = executor.put(X), executor.put(T)
        calls = [(Xr, Tr, cuts[i], cuts[i + 1]) for i in range(parts)]
    else:  # (a pickled argument: send each part only its own slice)
        calls = [(X[cuts[i]:cuts[i + 1]], T[cuts[i]:cuts[i + 1]], 0, cuts[i + 1] - cuts[i]) for i in range(parts)]
    outs = executor.map(_solve_part, [(*c, eps, objective, k, beam_width) for c in calls])
    cat = [torch.from_numpy(np.concatenate([o[j] for o in outs])) for j in range(5)]
    return SubsetSumResult(mask=cat[0], sum=cat[1].to(values.dtype), error=cat[2].to(values.dtype), ok=cat[3],
                           fallback=cat[4], objective=objective, eps=eps, exact=all(o[5] for o in outs),
                           method=outs[0][6] + f"-{executor.name}")


def _solve_part(X, T, lo: int, hi: int, eps, objective, k, beam_width):
    """One part of :func:`solve_on`, in a worker: numpy in and out (Ray hands arrays over without copies)."""
    r = solve(torch.from_numpy(np.array(X[lo:hi])), torch.from_numpy(np.array(T[lo:hi])), eps, objective, k,
              beam_width=beam_width)
    return (r.mask.numpy(), r.sum.numpy(), r.error.numpy(), r.ok.numpy(), r.fallback.numpy(), r.exact, r.method)


def _solve_chunks(values, targets, eps, objective, k, vector, use_numba, brute, outs, mitm=False) -> bool:
    """Fill the outputs chunk by chunk; returns whether every chunk was solved exactly."""
    mask, sums, err, ok, fallback = outs
    B, n = values.shape[:2]
    exact = True
    for lo in range(0, B, CHUNK):
        hi = min(lo + CHUNK, B)
        X = values[lo:hi].detach().to(torch.float64).contiguous()
        T = targets[lo:hi].detach().to(torch.float64).contiguous()
        if use_numba and vector and objective == "min_cardinality":
            b, f, ex = _solve_staged(X, T, eps, mitm)
        elif mitm:
            b, f, ex = _solve_mitm(X, T, eps, objective)
        elif use_numba:
            b, f, ex = _solve_numba(X, T, eps, objective, k, vector)
        else:
            b, f, ex = _solve_torch(X, T, eps, objective, k, vector, brute)
        fallback[lo:hi] = f
        exact = exact and ex
        if use_numba and not vector:  # one compiled pass; the general path below makes 5 tensor passes
            s64, e64 = torch.empty(hi - lo, dtype=torch.float64), torch.empty(hi - lo, dtype=torch.float64)
            _k.finish(X.numpy(), T.numpy(), b.numpy(), eps, mask[lo:hi].numpy(), s64.numpy(),
                      e64.numpy(), ok[lo:hi].numpy(), max(1, min(hi - lo, _threads())))
            sums[lo:hi], err[lo:hi] = s64, e64
            continue
        m = ((b.view(-1, 1) >> torch.arange(n, device=b.device)) & 1).bool()
        mask[lo:hi] = m
        if vector:
            s64 = (X * m.unsqueeze(-1)).sum(dim=1)
            e64 = (T - s64).abs().amax(dim=1)
        else:
            s64 = (X * m).sum(dim=1)
            e64 = (T - s64).abs()
        sums[lo:hi], err[lo:hi], ok[lo:hi] = s64, e64, e64 <= eps
    return exact


def _threads() -> int:
    """The number of blocks to split work into (numba's pool is sized by :func:`numba_threads`)."""
    return 16 * max(1, min(torch.get_num_threads(), _numba_config().NUMBA_NUM_THREADS))


def _numba_config():
    from numba import config

    return config


def _solve_numba(X, T, eps, objective, k, vector):
    blocks = _threads()
    Xn, Tn = X.contiguous().numpy(), T.contiguous().numpy()
    B, n = Xn.shape[:2]
    nb = max(1, min(B, blocks))
    out = torch.zeros(B, dtype=torch.int64)
    flag = torch.zeros(B, dtype=torch.bool)
    on, of = out.numpy(), flag.numpy()
    if vector:
        _kv.vector_brute_force(Xn, Tn, eps, OBJECTIVES.index(objective), -1 if k is None else k, on, of, nb)
        return out, flag, True
    if objective == "min_error":
        _k.min_error(Xn, Tn, on, nb)
    elif objective == "min_cardinality":
        _k.by_size(Xn, Tn, eps, -1, on, of, nb)
    elif objective == "fixed_size":
        _k.by_size(Xn, Tn, eps, k, on, of, nb)
    else:
        _k.min_l1(Xn, Tn, eps, on, of, nb)
    return out, flag, True


# vector min_cardinality: subsets by increasing size while their count stays within a share of what
# the full exact solver costs per instance (enumeration: 2**n; meet in the middle: ~2**(n/2) sorted
# sums and their windows), at least a 2**14-subset enumeration; instances with no subset that small
# within eps are solved in full. (Papers'-mode answers have 1-4 elements; guarantee mode's tolerances
# need many more, where a larger budget only delays the full solver: 16 << (n // 2) cost ELU's L+1
# build 25 %.)
STAGED_BUDGET = 1 << 14


def staged_max_size(n: int) -> int:
    """The largest size s whose subsets of sizes 0..s are few enough to try before the full solver."""
    budget = min(max(STAGED_BUDGET, 2 << (n // 2)), max(1, (1 << n) // 4))
    total, s = 1, 0
    while s < n and total + math.comb(n, s + 1) <= budget:
        s += 1
        total += math.comb(n, s)
    return s


def _solve_staged(X, T, eps, mitm: bool):
    """Vector min_cardinality: the size-staged search first (exact where it finds a subset), the full
    exact solver for the rest."""
    B, n = X.shape[:2]
    out = torch.zeros(B, dtype=torch.int64)
    done = torch.zeros(B, dtype=torch.bool)
    flag = torch.zeros(B, dtype=torch.bool)
    _kv.vector_by_size(X.numpy(), T.numpy(), eps, staged_max_size(n), out.numpy(), done.numpy(),
                       max(1, min(B, _threads())))
    rest = (~done).nonzero().squeeze(1)
    if len(rest) == 0:
        return out, flag, True
    Xr, Tr = X[rest].contiguous(), T[rest].contiguous()
    if mitm:
        b, f, ex = _solve_mitm(Xr, Tr, eps, "min_cardinality")
    else:
        b, f, ex = _solve_numba(Xr, Tr, eps, "min_cardinality", None, True)
    out[rest], flag[rest] = b, f
    return out, flag, ex


def _solve_mitm(X, T, eps, objective):
    """Small-d vector instances beyond enumeration, exactly: meet in the middle (one sorted half)."""
    B = X.shape[0]
    out = torch.zeros(B, dtype=torch.int64)
    flag = torch.zeros(B, dtype=torch.bool)
    exact = torch.zeros(B, dtype=torch.bool)
    nb = max(1, min(B, _threads()))
    _kv.vector_mitm(X.numpy(), T.numpy(), eps, OBJECTIVES.index(objective), out.numpy(), flag.numpy(),
                    exact.numpy(), nb)
    return out, flag, bool(exact.all())


def _solve_beam(values, targets, eps, objective, width) -> SubsetSumResult:
    """Vector instances beyond exact enumeration: the compiled beam search, on the CPU, in chunks."""
    if objective not in ("min_error", "min_cardinality"):
        B, n, d = values.shape
        raise ValueError(f"vector instances with 2**n * d > {VECTOR_EXACT_BUDGET} (n={n}, d={d}) are solved "
                         f"heuristically, for min_error and min_cardinality only; use fewer candidates for "
                         f"{objective!r}")
    if not HAVE_NUMBA:
        raise RuntimeError("vector instances beyond exact enumeration need numba (pip install numba)")
    B, n, d = values.shape
    device = values.device
    mask = torch.zeros(B, n, dtype=torch.bool)
    err = torch.empty(B, dtype=torch.float64)
    # per-thread scratch: parents and decisions [n, width] plus residuals; bound instances per call
    step = max(1, min(B, 4096))
    with numba_threads():
        for lo in range(0, B, step):
            hi = min(lo + step, B)
            X = values[lo:hi].detach().to("cpu", torch.float64).contiguous()
            T = targets[lo:hi].detach().to("cpu", torch.float64).contiguous()
            _kb.beam_search(X.numpy(), T.numpy(), eps, width, objective == "min_cardinality",
                            mask[lo:hi].numpy(), err[lo:hi].numpy(), max(1, min(hi - lo, _threads())))
    X64 = values.detach().to("cpu", torch.float64)
    s64 = (X64 * mask.unsqueeze(-1)).sum(1)
    e64 = (targets.detach().to("cpu", torch.float64) - s64).abs().amax(1)  # recomputed: the kernel's is a running sum
    ok = e64 <= eps
    fallback = ~ok if objective == "min_cardinality" else torch.zeros(B, dtype=torch.bool)
    return SubsetSumResult(mask=mask.to(device), sum=s64.to(device, values.dtype), error=e64.to(device, values.dtype),
                           ok=ok.to(device), fallback=fallback.to(device), objective=objective, eps=eps, exact=False,
                           method="numba-vector-beam-heuristic", info={"beam_width": width})


# --- torch path: any device ------------------------------------------------------------------------

def _subset_matrix(m: int, device) -> torch.Tensor:
    idx = torch.arange(1 << m, device=device)
    return ((idx.view(-1, 1) >> torch.arange(m, device=device)) & 1).to(torch.float64)  # [2**m, m]


def _solve_torch(X, T, eps, objective, k, vector, brute=False):
    B, n = X.shape[:2]
    device = X.device
    if not vector and objective == "min_error" and not brute:
        a = n // 2
        Pa, Pb = _subset_matrix(a, device), _subset_matrix(n - a, device)
        SA = X[:, :a] @ Pa.T                      # [B, 2**a]
        SB = X[:, a:] @ Pb.T                      # [B, 2**b]
        SBs, order = SB.sort(dim=1)
        q = T.view(-1, 1) - SA                    # want SB closest to q
        pos = torch.searchsorted(SBs, q.contiguous())
        lo = (pos - 1).clamp(min=0)
        hi = pos.clamp(max=SBs.shape[1] - 1)
        e_lo = (q - SBs.gather(1, lo)).abs()
        e_hi = (q - SBs.gather(1, hi)).abs()
        jb = torch.where(e_hi < e_lo, hi, lo)
        e = torch.minimum(e_lo, e_hi)
        ia = e.argmin(dim=1)
        ib = order.gather(1, jb.gather(1, ia.view(-1, 1))).squeeze(1)
        return ia | (ib << a), torch.zeros(B, dtype=torch.bool, device=device), True
    # everything else: exhaustive enumeration in row chunks (bounded memory)
    if (1 << n) * (X.shape[2] if vector else 1) > 2**24:
        raise ValueError(f"objective {objective!r} with n={n} on device {device.type} enumerates 2**{n} subsets; "
                         f"use CPU tensors (compiled solver) or n <= 24")
    P = _subset_matrix(n, device)                 # [2**n, n]
    card = P.sum(1)
    rows = max(1, (1 << 24) // (1 << n))
    bits_out = torch.empty(B, dtype=torch.int64, device=device)
    flag_out = torch.zeros(B, dtype=torch.bool, device=device)
    for lo in range(0, B, rows):
        x, t = X[lo:lo + rows], T[lo:lo + rows]
        if vector:
            s = torch.einsum("sn,bnd->bsd", P, x)
            err = (t.unsqueeze(1) - s).abs().amax(2)
            l1 = P @ x.abs().sum(2).T             # [2**n, b]
            l1 = l1.T
        else:
            s = x @ P.T
            err = (t.view(-1, 1) - s).abs()
            l1 = x.abs() @ P.T
        bits_out[lo:lo + rows], flag_out[lo:lo + rows] = _pick(err, card, l1, eps, objective, k)
    return bits_out, flag_out, True


def _pick(err, card, l1, eps, objective, k):
    """Index (= bit mask) of the best subset per row under the objective; lexicographic keys."""
    if objective == "min_error":
        return err.argmin(1), torch.zeros(err.shape[0], dtype=torch.bool, device=err.device)
    if objective == "fixed_size":
        return torch.where(card == k, err, torch.inf).argmin(1), torch.zeros(err.shape[0], dtype=torch.bool,
                                                                           device=err.device)
    within = err <= eps
    primary = card.expand_as(err) if objective == "min_cardinality" else l1
    best_p = torch.where(within, primary, torch.inf).amin(1, keepdim=True)
    tie = within & (primary == best_p)
    chosen = torch.where(tie, err, torch.inf).argmin(1)
    none = ~within.any(1)
    chosen = torch.where(none, err.argmin(1), chosen)
    return chosen, none


# --- calibration ---------------------------------------------------------------------------------

DISTRIBUTIONS = ("uniform", "product", "product_masked", "normal", "nsn")


def sample_instances(distribution: str, B: int, n: int, seed: int = 0, d: int | None = None,
                     target_range: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random instances: candidates from ``distribution``, targets uniform on [-target_range, target_range].

    * ``uniform``: U[-1, 1];
    * ``product``: X*Y with X, Y ~ U[-1, 1] (a weight of one layer times one of the next);
    * ``product_masked``: X*Y with X ~ U[-1, 1] masked to 0 when negative (the sign trick of
      Pensia et al.: half the candidates are zero);
    * ``normal``: N(0, 1);
    * ``nsn``: normal-scaled-normal vectors z*Z, z ~ N(0, 1), Z ~ N(0, I_d) (needs ``d``).

    Draws come from :mod:`lotterylab.rng`, so the instances are identical on every machine.
    """
    from . import rng

    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"unknown distribution {distribution!r}; choose one of {', '.join(DISTRIBUTIONS)}")
    shape = (B, n) if d is None else (B, n, d)
    if distribution == "nsn" and d is None:
        raise ValueError("the 'nsn' distribution draws vectors: pass d >= 1")
    u = lambda s, shp: rng.uniform(seed, s, shp, -1.0, 1.0)  # noqa: E731
    if distribution == "uniform":
        values = u(1, shape)
    elif distribution == "product":
        values = u(1, shape) * u(2, shape)
    elif distribution == "product_masked":
        first = u(1, shape)
        values = first.clamp(min=0) * u(2, shape)
    elif distribution == "normal":
        values = rng.normal(seed, 1, shape)
    else:
        values = rng.normal(seed, 1, (B, n, 1)) * rng.normal(seed, 2, shape)
    tshape = (B,) if d is None else (B, d)
    targets = rng.uniform(seed, 3, tshape, -target_range, target_range)
    return values, targets


def calibrate(distribution: str, n: int, eps: float, objective: str = "min_error", trials: int = 20000,
              seed: int = 0, d: int | None = None, target_range: float = 1.0) -> dict:
    """Estimated failure rate (no subset within eps) with a 95% Wilson interval, and mean subset size."""
    values, targets = sample_instances(distribution, trials, n, seed, d, target_range)
    res = solve(values, targets, eps, objective)
    fails = int((~res.ok).sum())
    z = 1.959964
    p = fails / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return {"distribution": distribution, "n": n, "d": d, "eps": eps, "objective": objective, "trials": trials,
            "failures": fails, "failure_rate": p, "ci95": [max(0.0, centre - half), min(1.0, centre + half)],
            "mean_size": float(res.size.double().mean()), "exact": res.exact}


def choose_n(distribution: str, eps: float, delta: float = 0.01, n_max: int = MAX_N, trials: int = 20000,
             seed: int = 0, d: int | None = None, target_range: float = 1.0) -> int:
    """Smallest n whose estimated failure rate (upper 95% bound) is <= delta.

    A failure costs a construction one extra neuron, so this trades source width against retries.
    """
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    for n in range(2, n_max + 1):
        r = calibrate(distribution, n, eps, "min_error", trials, seed, d, target_range)
        if r["ci95"][1] <= delta:
            return n
    raise ValueError(f"no n <= {n_max} reaches failure rate {delta} at eps {eps} for {distribution!r}; "
                     f"raise eps or delta")
