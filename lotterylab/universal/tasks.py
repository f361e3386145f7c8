"""Random members of a basis' family (theory §6.4's universality check): tasks for a readout.

``sample_tasks(basis, n, seed)`` draws ``n`` functions from the family's unit ball
(:mod:`.families`): for poly and fourier, coefficients ``U[-1, 1]`` on every exact basis function,
scaled to l1 norm 1, plus a constant ``U[-1, 1]``; for lipschitz, per coordinate a random
piecewise-linear function with 64 random kinks and slopes ``U[-L, L]`` (averaged over coordinates),
whose kinks fall between the basis' knots. Every draw comes from ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .basis import Basis

KINKS = 64


@dataclass
class TaskBatch:
    """``n`` functions at once: ``tasks(x)`` is float64 ``[B, n]``."""

    basis: Basis
    coefficients: torch.Tensor | None  # [n_features, n] (poly, fourier)
    constant: torch.Tensor             # [n]
    kinks: np.ndarray | None = None    # [n, dim, KINKS + 2] (lipschitz)
    values: np.ndarray | None = None   # [n, dim, KINKS + 2]

    @property
    def n(self) -> int:
        return int(self.constant.numel())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.double()
        if self.coefficients is not None:
            return self.basis.exact(x) @ self.coefficients + self.constant
        xs = x.numpy()
        out = np.zeros((x.shape[0], self.n))
        for j in range(self.n):
            for i in range(self.basis.dim):
                out[:, j] += np.interp(xs[:, i], self.kinks[j, i], self.values[j, i])
        return torch.from_numpy(out / self.basis.dim) + self.constant


def sample_tasks(basis: Basis, n: int, seed: int = 0, lipschitz: float = 1.0) -> TaskBatch:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n (tasks) must be a whole number >= 1, got {n!r}")
    g = torch.Generator().manual_seed(int(seed))
    const = 2 * torch.rand(n, generator=g, dtype=torch.float64) - 1
    if basis.family != "lipschitz":
        c = 2 * torch.rand(len(basis.features), n, generator=g, dtype=torch.float64) - 1
        return TaskBatch(basis, c / c.abs().sum(0, keepdim=True), const)
    lo, hi = basis.domain
    inner = lo + (hi - lo) * torch.rand(n, basis.dim, KINKS, generator=g, dtype=torch.float64).sort(-1).values
    kinks = torch.cat([torch.full((n, basis.dim, 1), lo, dtype=torch.float64), inner,
                       torch.full((n, basis.dim, 1), hi, dtype=torch.float64)], -1).numpy()
    slopes = lipschitz * (2 * torch.rand(n, basis.dim, KINKS + 1, generator=g, dtype=torch.float64) - 1).numpy()
    values = np.concatenate([np.zeros((n, basis.dim, 1)), np.cumsum(slopes * np.diff(kinks, axis=-1), -1)], -1)
    return TaskBatch(basis, None, const, kinks, values - values.mean(-1, keepdims=True))
