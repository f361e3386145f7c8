"""The training loop's optimizers, and their step without torch's per-call machinery.

``Optimizer.step()`` wraps a short kernel in Python work that does not depend on the data: hook
dispatch, a profiler record, ``no_grad`` toggling, per-call state lookup and grouping by device.
On LeNet-300-100 (batch 60, 2 threads) that was ~0.5 ms of a ~3 ms step, so 50,000 steps of the
Frankle & Carbin protocol paid ~25 s for it. :class:`LeanStep` calls torch's own functional
optimizers (``torch.optim.adam.adam``, ``torch.optim.sgd.sgd``) on the optimizer's own state with
the arguments ``step()`` would pass, so the update is the same bit for bit and checkpoints
(``optimizer.state_dict()``) are unchanged; it hands any case it does not cover back to ``step()``.
"""

from __future__ import annotations

import torch
import torch.optim.optimizer as torch_optimizer
from torch.optim.adam import adam as adam_update
from torch.optim.sgd import sgd as sgd_update


def make_optimizer(cfg, params) -> torch.optim.Optimizer:
    """The configured optimizer (``cfg``: a :class:`~lotterylab.training.TrainConfig`), in torch's
    fused implementation where the device has one.

    Why fused: the default CPU Adam computes ``sqrt(exp_avg_sq)`` with a vector kernel that is
    ~6x slower on zeros than on normal numbers, and a mask keeps the state of every pruned entry at
    exactly zero; the fused kernel has no such slow path (masked training 1.6x -> ~1.1x the
    unmasked time on LeNet-300-100).
    """
    params = list(params)
    kinds = {"sgd": lambda **kw: torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                                                  weight_decay=cfg.weight_decay, **kw),
             "adam": lambda **kw: torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **kw),
             "adamw": lambda **kw: torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **kw)}
    if cfg.optimizer not in kinds:
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}; use sgd, adam or adamw")
    try:
        return kinds[cfg.optimizer](fused=True)
    except (RuntimeError, TypeError, ValueError):  # device or torch version without a fused kernel
        return kinds[cfg.optimizer]()


class LeanStep:
    """``optimizer.step()`` for torch's Adam, AdamW and SGD, the same update without the wrapper.

    Taken only where it is the same computation: every parameter has a dense gradient and
    initialised state, no step hooks (the optimizer's or global), no gradient scaler, and neither
    ``capturable`` nor ``differentiable``. Everything else, including the first step (which
    creates the state) and other optimizer classes, runs ``optimizer.step()``. ``lean_steps``
    counts the steps taken here.
    """

    def __init__(self, optimizer: torch.optim.Optimizer):
        self.optimizer = optimizer
        kind = type(optimizer)
        self.kind = "adam" if kind in (torch.optim.Adam, torch.optim.AdamW) else "sgd" if kind is torch.optim.SGD else None
        self.lean_steps = 0

    def __call__(self) -> None:
        if not self._take():
            self.optimizer.step()
            return
        with torch.no_grad():
            for group in self.optimizer.param_groups:
                (self._adam if self.kind == "adam" else self._sgd)(group)
        self.lean_steps += 1

    def _take(self) -> bool:
        opt = self.optimizer
        # step hooks must run, so they send the step to step(); so would a torch that keeps them elsewhere
        hooks = [getattr(opt, "_optimizer_step_pre_hooks", None), getattr(opt, "_optimizer_step_post_hooks", None),
                 getattr(torch_optimizer, "_global_optimizer_pre_hooks", None),
                 getattr(torch_optimizer, "_global_optimizer_post_hooks", None)]
        if (self.kind is None or any(h is None or len(h) for h in hooks)
                or getattr(opt, "grad_scale", None) is not None or getattr(opt, "found_inf", None) is not None):
            return False
        for group in opt.param_groups:
            if group.get("capturable") or group.get("differentiable"):
                return False
            for p in group["params"]:
                g, state = p.grad, opt.state.get(p) or {}
                if g is None or g.is_sparse:
                    return False
                if self.kind == "adam" and "step" not in state:  # (its first step creates the state)
                    return False
                if self.kind == "sgd" and group["momentum"] != 0 and state.get("momentum_buffer") is None:
                    return False
        return True

    def _adam(self, group: dict) -> None:
        ps = group["params"]
        states = [self.optimizer.state[p] for p in ps]
        beta1, beta2 = group["betas"]
        adam_update(ps, [p.grad for p in ps], [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
                    [s["max_exp_avg_sq"] for s in states] if group["amsgrad"] else [],
                    [s["step"] for s in states], amsgrad=group["amsgrad"],
                    has_complex=any(torch.is_complex(p) for p in ps), beta1=beta1, beta2=beta2, lr=group["lr"],
                    weight_decay=group["weight_decay"], eps=group["eps"], maximize=group["maximize"],
                    foreach=group["foreach"], capturable=False, differentiable=False, fused=group["fused"],
                    decoupled_weight_decay=group["decoupled_weight_decay"])

    def _sgd(self, group: dict) -> None:
        ps = group["params"]
        momentum = group["momentum"]
        # (the buffers are updated in place once they exist, which _take requires)
        buffers = [self.optimizer.state[p]["momentum_buffer"] for p in ps] if momentum != 0 else []
        sgd_update(ps, [p.grad for p in ps], buffers, weight_decay=group["weight_decay"], momentum=momentum,
                   lr=group["lr"], dampening=group["dampening"], nesterov=group["nesterov"],
                   maximize=group["maximize"], has_sparse_grad=False, foreach=group["foreach"], fused=group["fused"])
