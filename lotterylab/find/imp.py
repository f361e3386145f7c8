"""Iterative magnitude pruning (Frankle & Carbin 2019; Frankle et al. 2020; Renda et al. 2020).

Round 0 trains the dense network; each later round removes a fraction of the surviving weights
with the smallest trained magnitude (per layer, or globally) and trains again, starting from

* ``rewind="init"``: the initial weights (the original lottery ticket),
* ``rewind="1000it"``: the weights at iteration 1000 of round 0, training the remaining iterations
  with the schedule and data order from there (Frankle et al. 2020),
* ``rewind="lr"``: the final weights, with the learning-rate schedule replayed from the start
  (learning-rate rewinding, Renda et al. 2020),
* ``rewind="finetune"``: the final weights at the final learning rate.

Layout of ``out``::

    imp.json             config and one row per finished round
    rewind.safetensors   the weights every round rewinds to (init / iteration k)
    round_00/            dense training (a normal training run directory)
    round_01/mask.safetensors, checkpoint, result.json ...

A finished round is never recomputed and an interrupted one resumes from its last checkpoint.
Controls (:func:`control`): the same per-round masks with a fresh random initialisation
(``reinit``) or random masks with the same per-layer densities trained from the rewind point
(``random_mask``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from .. import models
from ..data import DataSplits
from ..hparams import parse_steps, run_hash, to_dict
from ..io import load_state_into, load_tensors, read_json, save_tensors, write_json
from ..masks import Mask
from ..training import Callback, TrainConfig, lr_factor, train
from .scores import mask_from_scores, prunable, shuffle_within_layers


@dataclass
class IMPConfig:
    target_density: float = field(default=0.036, metadata={
        "help": "stop once the pruned weights' density (fraction kept) is <= this", "flag": "density",
        "aliases": ["--target-density"], "check": "density"})
    rounds: int = field(default=0, metadata={"help": "pruning rounds (0: as many as --density needs)",
                                                "check": "nonneg"})
    rate: float = field(default=0.2, metadata={"help": "fraction of surviving weights removed per round",
                                                 "check": "rate"})
    output_rate: float = field(default=0.1, metadata={"help": "rate for the output layer (layerwise scope)",
                                                        "check": "unit"})
    scope: str = field(default="layerwise", metadata={"help": "layerwise or global magnitude",
                                                       "choices": ["layerwise", "global"]})
    rewind: str = field(default="init", metadata={"help": "init, <k>it / <k>ep (iteration rewinding), lr, finetune"})


class _Snapshot(Callback):
    """Writes the weights at one iteration of round 0 (the rewind point of Frankle et al. 2020)."""

    def __init__(self, at: int, path: Path):
        self.at, self.path = at, path

    def on_step_end(self, loop) -> None:
        if loop.iteration == self.at and not self.path.exists():
            save_tensors(self.path, {k: v.detach().cpu() for k, v in loop.model.state_dict().items()},
                         {"kind": "weights", "iteration": self.at})


def _load_weights(model: nn.Module, path: Path) -> None:
    tensors, _ = load_tensors(path, kind="weights")
    load_state_into(model, tensors, path)


def rounds_needed(cfg: IMPConfig, sizes: dict[str, int], output: str) -> int:
    """Rounds until the density reaches ``target_density`` (or ``cfg.rounds`` if given)."""
    if cfg.rounds:
        return cfg.rounds
    total = sum(sizes.values())
    for r in range(1, 1000):
        if cfg.scope == "layerwise":
            kept = sum(s * (1 - (cfg.output_rate if n == output else cfg.rate)) ** r for n, s in sizes.items())
        else:
            kept = total * (1 - cfg.rate) ** r
        if kept / total <= cfg.target_density + 1e-12:
            return r
    raise ValueError(f"target density {cfg.target_density} is not reachable with rate {cfg.rate}")


def prune_round(model: nn.Module, mask: Mask, cfg: IMPConfig, output: str) -> Mask:
    """Next mask: remove ``rate`` of each layer's surviving weights (or of all, globally) by |w|."""
    params = dict(model.named_parameters())
    scores = {n: params[n].detach().abs() for n in mask}
    if cfg.scope == "global":
        kept = mask.num_kept()
        return mask_from_scores(scores, round(kept * (1 - cfg.rate)) / mask.num_total(), "global", mask)
    dens = {n: round(int(m.sum()) * (1 - (cfg.output_rate if n == output else cfg.rate))) / m.numel()
            for n, m in mask.items()}
    return mask_from_scores(scores, dens, "layerwise", mask)


class IMP:
    """``IMP(model, data, train_cfg, imp_cfg, out).run()``: all rounds, resumable."""

    def __init__(self, model: nn.Module, data: DataSplits, train_cfg: TrainConfig | None = None,
                 cfg: IMPConfig | None = None, out: str | Path = "runs/imp", names=None, device=None,
                 progress: bool = True, callbacks=()):
        self.model, self.data = model, data
        self.train_cfg, self.cfg = train_cfg or TrainConfig(), cfg or IMPConfig()
        self.out = Path(out)
        self.names = prunable(model, names)
        self.device = device
        self.progress = progress
        self.callbacks = list(callbacks)  # passed to every round's training
        if not 0.0 < self.cfg.rate < 1.0 or not 0.0 <= self.cfg.output_rate < 1.0:
            raise ValueError(f"pruning rates must be in (0, 1), got rate={self.cfg.rate}, output_rate={self.cfg.output_rate}")
        self.output = self.names[-1]
        per_epoch = len(data.train) // self.train_cfg.batch_size
        self.total = parse_steps(self.train_cfg.budget, per_epoch)
        r = self.cfg.rewind
        try:
            self.rewind_it = 0 if r in ("init", "lr", "finetune") else parse_steps(r, per_epoch)
        except ValueError:
            raise ValueError(f"rewind {r!r}: use init, lr, finetune or an iteration like 1000it / 2ep") from None
        if self.rewind_it > self.total:
            raise ValueError(f"rewind point {r} lies beyond the training budget {self.train_cfg.budget}")
        self.identity = {"arch": getattr(model, "lotterylab_arch", None), "data": data.describe(),
                         "train": to_dict(self.train_cfg), "imp": to_dict(self.cfg), "names": self.names}
        self.run_id = run_hash(self.identity)

    # --- bookkeeping ---------------------------------------------------------------------------
    def _check_dir(self) -> dict:
        path = self.out / "imp.json"
        if path.exists():
            state = read_json(path)
            if state.get("run_id") != self.run_id:
                raise ValueError(f"{self.out} holds an IMP run with other settings (run {state.get('run_id')}, this is "
                                 f"{self.run_id}); choose another out directory")
            return state
        return {"kind": "imp", "run_id": self.run_id, **self.identity, "rounds": []}

    def round_dir(self, r: int) -> Path:
        return self.out / f"round_{r:02d}"

    def mask(self, r: int) -> Mask:
        return Mask.load(self.round_dir(r) / "mask.safetensors")

    def _train_round(self, r: int, mask: Mask) -> dict:
        cfg = self.train_cfg
        start = 0
        callbacks = list(self.callbacks)
        rewind_path = self.out / "rewind.safetensors"
        if r == 0:
            if self.rewind_it == 0 and not rewind_path.exists():
                save_tensors(rewind_path, {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                             {"kind": "weights", "iteration": 0})
            elif self.rewind_it:
                callbacks.append(_Snapshot(self.rewind_it, rewind_path))
        elif self.cfg.rewind in ("lr", "finetune"):
            _load_weights(self.model, self.round_dir(r - 1) / "final.safetensors")
            if self.cfg.rewind == "finetune":
                per_epoch = len(self.data.train) // cfg.batch_size
                final_lr = cfg.lr * lr_factor(cfg, self.total - 1, self.total, per_epoch)
                cfg = TrainConfig(**{**to_dict(cfg), "lr": final_lr, "schedule": "constant", "warmup": "0it"})
        else:
            _load_weights(self.model, rewind_path)
            start = self.rewind_it
        result = train(self.model, self.data, cfg, mask=None if r == 0 else mask, out=self.round_dir(r),
                       callbacks=callbacks, device=self.device, progress=self.progress,
                       extra_hash={"imp_run": self.run_id, "round": r}, start_iteration=start)
        final = self.round_dir(r) / "final.safetensors"
        if not final.exists():
            save_tensors(final, {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                         {"kind": "weights", "iteration": result["iterations"]})
        return result

    def run(self) -> dict:
        self.out.mkdir(parents=True, exist_ok=True)
        state = self._check_dir()
        sizes = {n: dict(self.model.named_parameters())[n].numel() for n in self.names}
        n_rounds = rounds_needed(self.cfg, sizes, self.output)
        mask = Mask.ones_like(self.model, self.names)
        done = {row["round"] for row in state["rounds"]}
        for r in range(n_rounds + 1):
            path = self.round_dir(r) / "mask.safetensors"
            if path.exists():
                mask = Mask.load(path)
            else:
                if r > 0:
                    _load_weights(self.model, self.round_dir(r - 1) / "final.safetensors")
                    mask = prune_round(self.model, mask, self.cfg, self.output)
                self.round_dir(r).mkdir(parents=True, exist_ok=True)
                mask.save(path)
            if r in done:
                continue
            result = self._train_round(r, mask)
            state["rounds"].append(round_row(r, mask, result))
            write_json(self.out / "imp.json", state)
        return state

    # --- controls ------------------------------------------------------------------------------
    def control(self, kind: str, seed: int = 1, rounds=None) -> dict:
        """Train each round's control: ``reinit`` (same mask, weights re-drawn with ``seed``) or
        ``random_mask`` (per-layer densities kept, positions shuffled with ``seed``, rewind weights)."""
        if kind not in ("reinit", "random_mask"):
            raise ValueError(f"unknown control {kind!r}; use reinit or random_mask")
        state = self._check_dir()
        if not state["rounds"]:
            raise ValueError(f"{self.out} has no finished IMP rounds; run IMP first")
        arch = getattr(self.model, "lotterylab_arch", None)
        if kind == "reinit" and arch is None:
            raise ValueError("reinit needs a zoo model (lotterylab.models.create) so it can be re-drawn")
        cdir = self.out / f"control_{kind}_seed{seed}"
        cpath = cdir / "control.json"
        cstate = read_json(cpath) if cpath.exists() else {"kind": "imp_control", "control": kind, "seed": seed,
                                                            "run_id": self.run_id, "rounds": []}
        done = {row["round"] for row in cstate["rounds"]}
        wanted = sorted(row["round"] for row in state["rounds"] if row["round"] > 0)
        for r in (wanted if rounds is None else [r for r in wanted if r in rounds]):
            if r in done:
                continue
            mask = self.mask(r)
            if kind == "reinit":
                model = models.from_arch(arch, init=getattr(self.model, "lotterylab_init", None), seed=seed,
                                         device=next(self.model.parameters()).device)
            else:
                model = self.model
                _load_weights(model, self.out / "rewind.safetensors")
                mask = shuffle_within_layers(mask, seed)
            result = train(model, self.data, self.train_cfg, mask=mask, out=cdir / f"round_{r:02d}", device=self.device,
                           progress=self.progress, extra_hash={"imp_run": self.run_id, "control": kind, "round": r},
                           start_iteration=self.rewind_it if kind == "random_mask" else 0)
            cstate["rounds"].append(round_row(r, mask, result))
            cdir.mkdir(parents=True, exist_ok=True)
            write_json(cpath, cstate)
        return cstate


def round_row(r: int, mask: Mask, result: dict) -> dict:
    best = result["min_val_loss"]
    return {"round": r, "density": mask.density, "layer_density": mask.layer_density(),
            "test_accuracy": result["final"]["test_accuracy"], "val_accuracy": result["final"]["val_accuracy"],
            "min_val_loss_iteration": result["min_val_loss_iteration"],
            "test_accuracy_at_min_val_loss": best["test_accuracy"] if best else math.nan,
            "wall_time_s": result["wall_time_s"], "loaded": "loaded_from" in result}


def imp(model: nn.Module, data: DataSplits, train_cfg: TrainConfig | None = None, cfg: IMPConfig | None = None,
        out: str | Path = "runs/imp", **kw) -> dict:
    """Functional form of :class:`IMP`: run every round and return the summary."""
    return IMP(model, data, train_cfg, cfg, out, **kw).run()


__all__ = ["IMP", "IMPConfig", "imp", "prune_round", "rounds_needed"]
