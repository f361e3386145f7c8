"""The knobs of a construction, checked once before any work, and the settings of one round."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

FIRST_LAYERS = ("sign_trick", "moments", "linearize", "identity")
OBJECTIVES = ("min_l1", "min_cardinality", "min_error")
GRANULARITIES = ("kernel", "filter", "weight")


class ConstructionError(ValueError):
    """Bad arguments to a construction (the message names the fix)."""


@dataclass
class ConstructionConfig:
    """Everything :func:`lotterylab.construct` accepts besides the target, the domain and the data.

    ``eps`` (guarantee mode) bounds the output error over the domain and the construction picks the
    per-parameter tolerances; ``eps_param`` (the papers' mode) solves every subset sum to it instead.
    ``None`` for ``rho`` / ``rho_first`` / ``rho_b`` / ``first_layer`` / ``objective``: chosen from
    the tolerance and the activation. ``granularity`` and ``rho_kernel`` are for ``mode="structured"``:
    what is pruned as a whole (``"kernel"``: single k x k kernels and unused filters; ``"filter"``:
    expansion filters only; ``"weight"``: single weights, the unstructured ticket of the same source,
    for comparison) and how many expansion channels each input channel gets (both sides of the sign
    trick together; ``None``: from the MRSS calibration).
    """

    mode: str = "L+1"
    eps: float = 0.01
    seed: int = 0
    eps_param: float | None = None
    delta: float = 0.01
    rho: int | None = None
    rho_first: int | None = None
    rho_b: int | None = None
    first_layer: str | None = None
    objective: str | None = None
    copy_objective: str | None = None
    s1: float | None = None
    max_growth_rounds: int = 40
    max_rounds: int = 8
    compensate: bool = False
    granularity: str = "kernel"
    rho_kernel: int | None = None
    copy_scale: float = 1.0

    @property
    def guarantee(self) -> bool:
        return self.eps_param is None

    def check(self, families) -> ConstructionConfig:
        """Refuse bad values with the fix; returns a copy with the objective default filled in."""
        if self.mode not in families:
            raise ConstructionError(f"mode must be one of {tuple(families)}, got {self.mode!r}")
        for name, val in (("eps", self.eps), ("eps_param", self.eps_param)):
            if val is not None and (not isinstance(val, (int, float)) or not math.isfinite(val) or val <= 0):
                raise ConstructionError(f"{name} must be a finite number > 0, got {val!r}")
        if not 0 < self.delta < 1:
            raise ConstructionError(f"delta must be in (0, 1), got {self.delta}")
        for name in ("rho", "rho_first", "rho_b"):
            val = getattr(self, name)
            if val is not None and (not isinstance(val, int) or val < 1):
                raise ConstructionError(f"{name} must be a whole number >= 1 (or None: chosen), got {val!r}")
        for name in ("max_growth_rounds", "max_rounds"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ConstructionError(f"{name} must be a whole number >= 0, got {getattr(self, name)!r}")
        objective = self.objective
        if objective is None:  # guarantee mode keeps l1 masses small (they amplify errors); paper mode as the papers
            objective = "min_l1" if self.eps_param is None else "min_cardinality"
        for name, val in (("objective", objective), ("copy_objective", self.copy_objective or objective)):
            if val not in OBJECTIVES:
                raise ConstructionError(f"{name} must be min_l1, min_cardinality or min_error, got {val!r}")
        if self.granularity not in GRANULARITIES:
            raise ConstructionError(f"granularity must be one of {GRANULARITIES}, got {self.granularity!r}")
        if self.granularity != "kernel" and self.mode != "structured":
            raise ConstructionError(f"granularity={self.granularity!r} is for mode='structured' (whole kernels and "
                                    f"filters); mode {self.mode!r} prunes single weights")
        if self.rho_kernel is not None and (not isinstance(self.rho_kernel, int) or self.rho_kernel < 2):
            raise ConstructionError(f"rho_kernel must be a whole number >= 2 (or None: from the MRSS calibration), "
                                    f"got {self.rho_kernel!r}")
        if self.rho_kernel is not None and self.mode != "structured":
            raise ConstructionError(f"rho_kernel sizes the expansion layers of mode='structured', not {self.mode!r}; "
                                    f"use rho_first")
        if (not isinstance(self.copy_scale, (int, float)) or not math.isfinite(self.copy_scale)
                or not 0.15 <= self.copy_scale <= 4.0):
            # (below 0.15 most pairs fail, and growth that solves new copies, which fail and grow the layer
            # below in turn, recursed past Python's limit on a residual target at 0.07)
            raise ConstructionError(f"copy_scale must be a number in [0.15, 4] (the L+1 copy layers' weight half-width "
                                    f"as a fraction of the layer's largest target weight), got {self.copy_scale!r}")
        if self.copy_scale != 1.0 and self.mode != "L+1":
            raise ConstructionError(f"copy_scale sizes the copy layers of mode='L+1'; mode {self.mode!r} has none "
                                    f"(leave it at 1)")
        if self.first_layer is not None and self.first_layer not in FIRST_LAYERS:
            raise ConstructionError(f"first_layer must be one of {FIRST_LAYERS}, got {self.first_layer!r}")
        return replace(self, objective=objective)


@dataclass
class RoundSettings:
    """What one construction round solves with: tolerances and candidate counts."""

    eps_param: float
    rho: int
    rho_first: int
    rho_b: int
    objective: str
    copy_objective: str | None
    max_growth_rounds: int
    compensate: bool
    layer_eps: list | None = None  # per target layer (guarantee mode); None: eps_param everywhere
    rho_kernel: int = 0            # structured: expansion channels per input channel of a k x k conv (0: calibrated)
    delta: float = 0.01            # structured: failure probability the calibrated counts aim at
    granularity: str = "kernel"
    beam_width: int = 256          # vector (whole-kernel) instances: the beam search's width
    copy_scale: float = 1.0        # L+1 copy layers: weight half-width / the layer's largest target weight

    def eps_for(self, l: int) -> float:
        return self.layer_eps[l] if self.layer_eps else self.eps_param
