"""Universal tickets: one pruned random network whose features serve a family; a task is a linear solve.

``construct_universal`` builds the basis for ``eps`` (:mod:`.families`), draws ONE random source
from ``seed`` (:mod:`.source`), prunes it stage by stage (:mod:`.prune`), certifies the result (basis
error + construction error along the chain) and checks the certificate against the realised error
on a dense grid. The ticket file is an ordinary ticket file (:class:`lotterylab.Ticket`: seed +
init + mask on the ``universal_source`` architecture; shared blocks stored once) whose report
carries the basis.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ..tickets import Ticket
from .basis import Basis, grid
from .families import plan
from .prune import UniversalError, prune


@dataclass
class Readout:
    """``y = features @ weight + bias`` for ``T`` tasks at once (``weight`` [F, T], ``bias`` [T])."""

    weight: torch.Tensor
    bias: torch.Tensor
    ridge: float

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        return features.double() @ self.weight + self.bias


def least_squares(F: torch.Tensor, Y: torch.Tensor, ridge: float = 0.0) -> Readout:
    """The readout of ``Y`` [B, T] on features ``F`` [B, n] (float64): centred least squares, ``ridge``
    relative to the features' mean square, the intercept not penalised."""
    fm, ym = F.mean(0), Y.mean(0)
    Fc, yc = F - fm, Y - ym
    if ridge > 0:
        lam = (ridge * Fc.pow(2).mean() * len(Fc)) ** 0.5
        Fc = torch.cat([Fc, lam * torch.eye(F.shape[1], dtype=torch.float64, device=F.device)])
        yc = torch.cat([yc, torch.zeros(F.shape[1], yc.shape[1], dtype=torch.float64, device=F.device)])
    # gelsd (SVD: rank-deficient features are fine) exists on the CPU; elsewhere QR, full rank
    w = torch.linalg.lstsq(Fc, yc, driver="gelsd" if F.device.type == "cpu" else None).solution
    return Readout(w, ym - fm @ w, float(ridge))


class UniversalTicket:
    """A :class:`~lotterylab.Ticket` on a universal source, its basis and the outputs that are features."""

    def __init__(self, ticket: Ticket, basis: Basis, columns: list[int] | None = None):
        self.ticket = ticket
        self.basis = basis
        self.columns = columns  # which source outputs are features (the Lipschitz basis' used neurons)
        self._net = None

    @property
    def report(self) -> dict:
        return self.ticket.report

    def network(self, device=None) -> torch.nn.Module:
        """The pruned source (exact zeros where pruned), a plain ``nn.Module``."""
        return self.ticket.network(device)

    def features(self, x: torch.Tensor, batch: int = 65536) -> torch.Tensor:
        """The ticket's features at ``x`` ([B, dim] inside the domain), float64 [B, n_features], computed
        on ``x``'s device (the compact network moves there once)."""
        lo, hi = self.basis.domain
        x = torch.as_tensor(x).to(torch.float64)
        if x.dim() != 2 or x.shape[1] != self.basis.dim:
            raise ValueError(f"x must be [B, {self.basis.dim}], got {tuple(x.shape)}")
        if bool((x < lo).any() or (x > hi).any()):
            raise ValueError(f"x leaves the ticket's domain [{lo}, {hi}]^{self.basis.dim}: the certificate holds "
                             f"only there; rescale the inputs onto it")
        key = (self.ticket.masks, str(x.device))  # built anew when the mask is replaced or the device changes
        if self._net is None or self._net[0] is not key[0] or self._net[1] != key[1]:
            self._net = (key[0], key[1], self.compact(x.device))
        with torch.no_grad():
            out = torch.cat([self._net[2](x[i:i + batch]) for i in range(0, len(x), batch)]) if len(x) else \
                torch.zeros(0, len(self.basis.features), dtype=torch.float64, device=x.device)
        return out

    def compact(self, device=None) -> torch.nn.Module:
        """The ticket's features as a small float64 network: only the kept neurons (same function)."""
        from .source import compact

        rows = None
        if self.columns is not None:  # the Lipschitz basis: one block whose neurons are the features
            n2 = self.ticket.arch["kwargs"]["stages"][0]["neurons"]
            rows = [c for c in self.columns if c < n2]
        net = compact(self.network().double(), rows).eval()
        return net.to(device) if device is not None else net

    def fit_readout(self, x: torch.Tensor, y: torch.Tensor, ridge: float = 0.0) -> Readout:
        """Least squares (``ridge`` > 0: ridge, relative to the features' mean square) of ``y`` ([B] or
        [B, T]: T tasks in one solve) on the ticket's features; the intercept is not penalised."""
        if not (isinstance(ridge, (int, float)) and ridge >= 0):
            raise ValueError(f"ridge must be a number >= 0, got {ridge!r}")
        y = torch.as_tensor(y).to(torch.float64)
        if y.dim() not in (1, 2) or not bool(torch.isfinite(y).all()):
            raise ValueError(f"y must be finite values [B] or [B, tasks], got shape {tuple(y.shape)}"
                             + ("" if y.dim() not in (1, 2) else " with non-finite entries"))
        y2 = y.unsqueeze(1) if y.dim() == 1 else y
        F = self.features(x)
        if y2.shape[0] != F.shape[0]:
            raise ValueError(f"x has {F.shape[0]} rows, y {y2.shape[0]}")
        r = least_squares(F, y2.to(F.device), ridge)
        return r if y.dim() > 1 else Readout(r.weight[:, 0], r.bias[0], r.ridge)

    def readout_error(self, readout: Readout, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Sup error of ``readout`` at ``x`` against ``y`` per task ([T], or a scalar for one task)."""
        F = self.features(x)
        return (readout(F) - torch.as_tensor(y).to(device=F.device, dtype=torch.float64)).abs().amax(0)

    def counts(self) -> dict:
        return self.ticket.counts()

    def save(self, path):
        return self.ticket.save(path)


def load_universal(path) -> UniversalTicket:
    """A universal ticket file (its source regenerated from the seed and checked against its hash)."""
    from ..io import FileFormatError

    t = Ticket.load(path)
    rec = t.report.get("universal")
    if not isinstance(rec, dict) or "basis" not in rec:
        raise FileFormatError(f"{path}: not a universal ticket (its report has no basis); load it with load_ticket")
    try:
        basis = Basis.from_dict(rec["basis"])
    except (KeyError, TypeError, ValueError) as e:
        raise FileFormatError(f"{path}: its basis record is corrupt ({type(e).__name__}: {e})") from None
    return UniversalTicket(t, basis, rec.get("columns"))


def construct_universal(family: str, dim: int, degree: int | None = None, frequencies: int | None = None,
                        eps: float = 0.01, seed: int = 0, domain=(0.0, 1.0), *, breakpoints: int | None = None,
                        lipschitz: float = 1.0, objective: str = "min_cardinality",
                        check_points: int = 10_000) -> UniversalTicket:
    """Prune one random source (from ``seed``) into a universal ticket for ``family`` within ``eps``.

    ``family``: ``"poly"`` (``degree``), ``"fourier"`` (``frequencies``) or ``"lipschitz"``
    (``lipschitz``, optional ``breakpoints``); what ``eps`` guarantees for each is in
    :mod:`lotterylab.universal.families`. ``domain``: the box ``[lo, hi]^dim``. ``objective``: the
    subset-sum objective (``min_cardinality``: the fewest kept weights). The report holds the
    certificate per stage, the realised error on a dense grid and the sizes.
    """
    from ..subsetsum import OBJECTIVES

    if objective not in OBJECTIVES or objective == "fixed_size":
        raise UniversalError(f"objective must be min_cardinality, min_error or min_l1, got {objective!r}")
    if lipschitz != 1.0 and family != "lipschitz":
        raise UniversalError(f"lipschitz= is for family 'lipschitz', not {family!r}; drop it")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
        raise UniversalError(f"seed must be a whole number in [0, 2**63), got {seed!r}")
    t0 = time.perf_counter()
    basis, ranges, budgets = plan(family, dim, degree, frequencies, breakpoints, domain, eps, lipschitz)
    t_basis = time.perf_counter() - t0
    model, stages, masks, records, bound = prune(basis, ranges, budgets, seed, objective)
    t_prune = time.perf_counter() - t0 - t_basis
    columns = None
    if basis.family == "lipschitz":
        n2 = stages[0]["neurons"]
        columns = [i * n2 + r for i in range(dim) for r in records[0]["columns"]]
    report = {"universal": {"basis": basis.to_dict(), "columns": columns},
              "family": family, "dim": dim, "eps": eps, "objective": objective, "certificate": bound,
              "stages": records, "timings_s": {"basis": t_basis, "prune": t_prune}}
    ticket = Ticket.from_model(model, model.lotterylab_init, seed, masks, report)
    ut = UniversalTicket(ticket, basis, columns)
    report = ticket.report
    x = grid(basis, points=check_points)
    err = (ut.features(x) - basis.exact(x)).abs().amax(0)
    report["sampled_error"] = {"max": float(err.max()), "per_feature": err.tolist(), "points": len(x)}
    report.update(ticket.counts())
    report["timings_s"]["check"] = time.perf_counter() - t0 - t_basis - t_prune
    if float(err.max()) > bound * (1 + 1e-6) + 1e-9:  # a bug, never a quiet ticket that breaks its bound
        raise UniversalError(f"internal error: the realised error {float(err.max()):.3e} exceeds the certificate "
                             f"{bound:.3e}; please report it with the arguments")
    if bound > eps * (1 + 1e-9):
        raise UniversalError(f"the certificate {bound:.3e} exceeds eps={eps:g} (an instance found no subset within its "
                             f"tolerance); raise eps or try another seed")
    return ut
