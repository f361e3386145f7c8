"""The one training loop every finder reuses.

* hyperparameters in :class:`TrainConfig` (also the CLI of ``lotterylab train``);
* budgets and intervals as ``"50000it"`` / ``"20ep"``;
* data order from the counter-based generator: epoch ``e``'s permutation is a pure function of
  ``(seed, e)``, so a resumed run sees exactly the batches an uninterrupted run sees;
* evaluation on validation and test, and the iteration of minimum validation loss (the lottery
  literature's learning-speed metric);
* checkpoints (model, optimizer, torch RNG, history) written atomically; rerunning with the same
  ``out`` directory resumes, and a finished run is returned without recomputation;
* with a :class:`~lotterylab.masks.Mask`, gradients of pruned entries are zeroed before every
  step and the entries re-zeroed after it, so they stay exactly 0 under momentum, Adam and weight
  decay (optimizer state of a pruned entry never becomes non-zero).
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import __version__, rng
from .data import DataSplits, Split
from .hparams import parse_steps, run_hash, to_dict
from .io import FileFormatError, load_state_into, load_tensors, need, read_json, save_tensors, write_json
from .masks import Mask
from .optimizers import LeanStep, make_optimizer  # noqa: F401  (make_optimizer: re-exported)

CHECKPOINT = "checkpoint.safetensors"
RESULT = "result.json"


@dataclass
class TrainConfig:
    optimizer: str = field(default="adam", metadata={"help": "sgd, adam or adamw", "choices": ["sgd", "adam", "adamw"]})
    lr: float = field(default=1.2e-3, metadata={"help": "learning rate", "check": "positive"})
    momentum: float = field(default=0.0, metadata={"help": "SGD momentum", "check": "unit"})
    nesterov: bool = field(default=False, metadata={"help": "Nesterov momentum (SGD)"})
    weight_decay: float = field(default=0.0, metadata={"help": "L2 (sgd, adam) or decoupled (adamw) weight decay",
                                                           "check": "nonneg"})
    batch_size: int = field(default=60, metadata={"help": "examples per step", "check": "positive"})
    budget: str = field(default="50000it", metadata={"help": "training length, e.g. 50000it or 20ep",
                                                             "check": "positive_steps"})
    schedule: str = field(default="constant", metadata={"help": "constant, cosine or step",
                                                        "choices": ["constant", "cosine", "step"]})
    milestones: str = field(default="", metadata={"help": "step schedule: comma list like 80ep,120ep",
                                                      "check": "steps_list"})
    gamma: float = field(default=0.1, metadata={"help": "step schedule: factor at each milestone",
                                                         "check": "positive"})
    warmup: str = field(default="0it", metadata={"help": "linear warm-up length", "check": "steps"})
    eval_every: str = field(default="1ep", metadata={"help": "evaluation (and checkpoint) interval",
                                                          "check": "positive_steps"})
    seed: int = field(default=0, metadata={"help": "seed of the data order and of dropout",
                                                    "check": "nonneg"})


@dataclass
class Callback:
    """Hooks into the loop; set ``loop.stop = True`` to end training early."""

    def on_backward_end(self, loop: Loop) -> None:  # gradients ready, before masking and the step
        pass

    def on_step_end(self, loop: Loop) -> None:  # after the optimizer step (and mask)
        pass

    def on_eval(self, loop: Loop, record: dict) -> None:
        pass

    # state a callback keeps across a resume (checkpointed with the run): JSON metadata and tensors
    def state(self) -> tuple[dict, dict[str, torch.Tensor]] | None:
        return None

    def load_state(self, meta: dict, tensors: dict[str, torch.Tensor], path) -> None:
        pass


def lr_factor(cfg: TrainConfig, it: int, total: int, per_epoch: int) -> float:
    warm = parse_steps(cfg.warmup, per_epoch)
    f = 1.0
    if cfg.schedule == "cosine":
        f = 0.5 * (1.0 + math.cos(math.pi * min(it, total) / max(total, 1)))
    elif cfg.schedule == "step":
        marks = [parse_steps(m, per_epoch) for m in cfg.milestones.split(",") if m.strip()]
        f = cfg.gamma ** sum(it >= m for m in marks)
    elif cfg.schedule != "constant":
        raise ValueError(f"unknown schedule {cfg.schedule!r}; use constant, cosine or step")
    if warm and it < warm:
        f *= (it + 1) / warm
    return f


def epoch_order(seed: int, epoch: int, n: int, device=None) -> torch.Tensor:
    """Permutation of range(n) for one epoch, identical on every machine and after resume."""
    keys = rng.random_bits(seed, 0x5EED0000 + epoch % 0xFFFF, n, 0, device)
    return torch.sort(keys, stable=True).indices


def task_loss(out: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """The task's loss, read off its targets: class indices (integers) -> cross-entropy; real-valued
    targets of the outputs' shape (a regression task, e.g. a planted teacher's outputs) -> squared
    error summed over the outputs, per example (``reduction``: mean or sum over examples)."""
    if not y.is_floating_point():
        return F.cross_entropy(out, y, reduction=reduction)
    if y.shape != out.shape:
        raise ValueError(f"regression targets of shape {tuple(y.shape[1:])} for outputs of shape "
                         f"{tuple(out.shape[1:])}; give one real target per output")
    per_example = (out - y).square().flatten(1).sum(1)
    return per_example.sum() if reduction == "sum" else per_example.mean()


@torch.no_grad()
@torch.no_grad()
def evaluate(model: nn.Module, split: Split, batch_size: int = 1000) -> dict:
    """Mean loss (:func:`task_loss`) and accuracy on a split; a regression split has no accuracy (NaN,
    written as null)."""
    was = model.training
    model.eval()
    loss, correct = 0.0, 0
    regression = split.y.is_floating_point()
    for i in range(0, len(split), batch_size):
        out = model(split.x[i:i + batch_size])
        y = split.y[i:i + batch_size]
        loss += float(task_loss(out, y, reduction="sum"))
        if not regression:
            correct += int((out.argmax(1) == y).sum())
    model.train(was)
    n = max(len(split), 1)
    return {"loss": loss / n, "accuracy": math.nan if regression else correct / n}


class Loop:
    """State of one training run (what callbacks see)."""

    def __init__(self, model, optimizer, mask, cfg, total, per_epoch):
        self.model, self.optimizer, self.mask, self.cfg = model, optimizer, mask, cfg
        self.total, self.per_epoch = total, per_epoch
        self.iteration = 0
        self.history: list[dict] = []
        self.stop = False


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.{idx}.{k}"] = v
            else:
                scalars[f"{idx}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _load_optimizer(opt: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    state: dict = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, idx, k = key.split(".", 2)
            state.setdefault(int(idx), {})[k] = v
    for key, v in meta["scalars"].items():
        idx, k = key.split(".", 1)
        state.setdefault(int(idx), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(path: Path, loop: Loop, config_hash: str, callbacks: Sequence[Callback] = ()) -> None:
    tensors = {f"model.{k}": v for k, v in loop.model.state_dict().items()}
    opt_t, opt_meta = _optimizer_tensors(loop.optimizer)
    tensors.update(opt_t)
    tensors["torch_rng"] = torch.get_rng_state()
    cb_meta = {}
    for i, cb in enumerate(callbacks):
        st = cb.state()
        if st is not None:
            cb_meta[str(i)] = st[0]
            tensors.update({f"callback.{i}.{k}": v for k, v in st[1].items()})
    meta = {"kind": "checkpoint", "iteration": loop.iteration, "history": loop.history, "optimizer": opt_meta,
            "config_hash": config_hash, "lotterylab": __version__}
    if cb_meta:  # (only then: checkpoints without callback state keep their layout)
        meta["callbacks"] = cb_meta
    save_tensors(path, tensors, meta)


def check_checkpoint(tensors: dict, meta: dict, path, total: int | None = None) -> None:
    """Types and ranges of a checkpoint's metadata and RNG state (FileFormatError naming the field)."""
    need(meta, "config_hash", str, path, what="a hash")
    need(meta, "iteration", int, path, lambda v: 0 <= v <= (total if total is not None else 2**62),
         f"an iteration in 0..{total if total is not None else 'the budget'}")
    need(meta, "history", list, path, lambda v: all(isinstance(r, dict) for r in v), "a list of records")
    opt = need(meta, "optimizer", dict, path, what="an optimizer record")
    need(opt, "param_groups", list, path, lambda v: all(isinstance(g, dict) for g in v), "a list of parameter groups")
    need(opt, "scalars", dict, path, what="an object")
    rng_state = tensors.get("torch_rng")
    if rng_state is None or rng_state.dtype != torch.uint8 or rng_state.dim() != 1:
        raise FileFormatError(f"{path}: no valid torch RNG state; the file is corrupt")
    if not any(k.startswith("model.") for k in tensors):
        raise FileFormatError(f"{path}: a checkpoint without model weights; the file is corrupt")


def load_checkpoint(path: Path, loop: Loop, config_hash: str, callbacks: Sequence[Callback] = ()) -> None:
    tensors, meta = load_tensors(path, kind="checkpoint")
    check_checkpoint(tensors, meta, path, loop.total)
    if meta["config_hash"] != config_hash:
        raise ValueError(f"{path} belongs to a run with other hyperparameters ({meta.get('config_hash')} != "
                         f"{config_hash}); use another --out directory or delete it")
    iteration, history, opt, rng_state = meta["iteration"], meta["history"], meta["optimizer"], tensors["torch_rng"]
    device = next(loop.model.parameters()).device
    try:
        loop.model.load_state_dict({k[6:]: v.to(device) for k, v in tensors.items() if k.startswith("model.")})
        _load_optimizer(loop.optimizer, {k: v.to(device) if v.dim() else v for k, v in tensors.items()}, opt)
        torch.set_rng_state(rng_state)
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        raise FileFormatError(f"{path}: does not fit this run's model or optimizer ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200]}); the file is corrupt or from another run") from None
    cb_meta = meta.get("callbacks", {})
    if not isinstance(cb_meta, dict):
        raise FileFormatError(f"{path}: callback state is not an object; the file is corrupt")
    for i, cb in enumerate(callbacks):
        if str(i) in cb_meta:
            prefix = f"callback.{i}."
            cb.load_state(cb_meta[str(i)], {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)},
                          path)
    loop.iteration, loop.history = iteration, history


def train(model: nn.Module, data: DataSplits, cfg: TrainConfig | None = None, mask: Mask | None = None,
          out: str | Path | None = None, callbacks: Sequence[Callback] = (), device=None, threads: int | None = None,
          progress: bool = True, extra_hash: dict | None = None, start_iteration: int = 0) -> dict:
    """Train ``model`` in place on ``data`` and return the run's result (also ``out/result.json``).

    ``out``: directory for checkpoints and ``result.json``; rerunning with the same directory
    resumes an interrupted run and returns a finished one as is. ``extra_hash``: anything else
    that defines the run (model, data, mask) so a directory is never resumed with other inputs.
    ``start_iteration``: begin at this iteration of the schedule and data order (rewinding to
    iteration k trains the remaining ``total - k`` iterations, as Frankle et al. 2020 do).
    """
    cfg = cfg or TrainConfig()
    if threads is not None:
        torch.set_num_threads(threads)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device)
    train_split = data.train if data.train.x.device == device else data.train.to(device)
    val = data.val if data.val.x.device == device else data.val.to(device)
    test = data.test if data.test.x.device == device else data.test.to(device)
    n = len(train_split)
    if n < cfg.batch_size:
        raise ValueError(f"batch_size {cfg.batch_size} exceeds the {n} training examples")
    if len(val) == 0:
        raise ValueError("no validation examples: the loop reports and early-stops on validation loss; use val_size >= 1")
    per_epoch = n // cfg.batch_size  # full batches only: every step sees batch_size examples
    total = parse_steps(cfg.budget, per_epoch)
    eval_every = max(parse_steps(cfg.eval_every, per_epoch), 1)
    if not 0 <= start_iteration <= total:
        raise ValueError(f"start_iteration {start_iteration} is outside the budget of {total} iterations")
    parts = [cfg, extra_hash or {}, {"mask": mask.fingerprint() if mask is not None else None}]
    if start_iteration:  # only then: runs from before this option keep their hash (and resume)
        parts.append({"start_iteration": start_iteration})
    config_hash = run_hash(*parts)

    out = Path(out) if out is not None else None
    if out is not None and (out / RESULT).exists():
        done = read_json(out / RESULT)
        if done.get("config_hash") == config_hash and done.get("finished"):
            tensors, _ = load_tensors(out / CHECKPOINT, kind="checkpoint")
            load_state_into(model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, out / CHECKPOINT)
            done["loaded_from"] = str(out)  # not stored: tells the caller nothing was recomputed
            return done

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(cfg, params)
    loop = Loop(model, optimizer, mask, cfg, total, per_epoch)
    loop.iteration = start_iteration
    torch.manual_seed(cfg.seed)  # dropout and any other torch-side randomness
    if out is not None and (out / CHECKPOINT).exists():
        load_checkpoint(out / CHECKPOINT, loop, config_hash, callbacks)

    masked: list[torch.Tensor] = []
    mask_values: list[torch.Tensor] = []
    if mask is not None:
        named = dict(model.named_parameters())
        mask.check_fits(model)
        masked = [named[k] for k in mask]
        mask_values = [m.to(device=device, dtype=named[k].dtype) for k, m in mask.items()]
        with torch.no_grad():
            torch._foreach_mul_(masked, mask_values)

    # from the config, not the param groups: after a resume those hold the checkpoint's scheduled
    # rate, and the schedule factor would be applied twice (a resumed cosine run trained differently)
    base_lrs = [cfg.lr for _ in optimizer.param_groups]
    step = LeanStep(optimizer)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=total, initial=loop.iteration, desc="train", unit="it", dynamic_ncols=True, leave=False)
    t0 = time.perf_counter()
    start_it = loop.iteration
    run_loss = torch.zeros((), device=device)
    run_count = 0
    eval_time = 0.0  # evaluation and checkpoints, kept apart from the training speed
    model.train()
    order = None
    order_epoch = -1
    while loop.iteration < total and not loop.stop:
        epoch, pos = divmod(loop.iteration, per_epoch)
        if epoch != order_epoch:
            order, order_epoch = epoch_order(cfg.seed, epoch, n, device), epoch
        idx = order[pos * cfg.batch_size:(pos + 1) * cfg.batch_size]
        x, y = train_split.x[idx], train_split.y[idx]

        f = lr_factor(cfg, loop.iteration, total, per_epoch)
        for g, lr in zip(optimizer.param_groups, base_lrs):
            g["lr"] = lr * f
        for p in params:  # (optimizer.zero_grad(set_to_none=True) without its profiler record)
            p.grad = None
        loss = task_loss(model(x), y)
        loss.backward()
        for cb in callbacks:
            cb.on_backward_end(loop)
        if masked:
            grads = [p.grad for p in masked if p.grad is not None]
            if len(grads) == len(masked):
                torch._foreach_mul_(grads, mask_values)
        step()
        if masked:
            with torch.no_grad():
                torch._foreach_mul_(masked, mask_values)
        loop.iteration += 1
        run_loss += loss.detach()
        run_count += 1
        if bar is not None:
            bar.update(1)
        for cb in callbacks:
            cb.on_step_end(loop)

        if loop.iteration % eval_every == 0 or loop.iteration == total or loop.stop:
            te = time.perf_counter()
            record = {"iteration": loop.iteration, "epoch": loop.iteration / per_epoch,
                      "train_loss": float(run_loss) / max(run_count, 1),
                      **{f"val_{k}": v for k, v in evaluate(model, val).items()},
                      **{f"test_{k}": v for k, v in evaluate(model, test).items()}}
            run_loss.zero_()
            run_count = 0
            loop.history.append(record)
            if bar is not None:
                bar.set_postfix(val_acc=f"{record['val_accuracy']:.4f}", test_acc=f"{record['test_accuracy']:.4f}")
            for cb in callbacks:
                cb.on_eval(loop, record)
            if out is not None:
                save_checkpoint(out / CHECKPOINT, loop, config_hash, callbacks)
            eval_time += time.perf_counter() - te
    if bar is not None:
        bar.close()
    elapsed = time.perf_counter() - t0
    steps = loop.iteration - start_it
    result = summarize(loop, cfg, config_hash, elapsed, eval_time, steps)
    if getattr(model, "lotterylab_arch", None) is not None:  # lets load_run rebuild the model
        result["arch"] = model.lotterylab_arch
    if out is not None:
        write_json(out / RESULT, result)
    return result


def summarize(loop: Loop, cfg: TrainConfig, config_hash: str, elapsed: float, eval_time: float, steps: int) -> dict:
    hist = loop.history
    best = min(hist, key=lambda r: r["val_loss"]) if hist else None
    return {
        "kind": "train",
        "finished": loop.iteration >= loop.total or loop.stop,
        "stopped_early": bool(loop.stop and loop.iteration < loop.total),
        "config": to_dict(cfg),
        "config_hash": config_hash,
        "iterations": loop.iteration,
        "iterations_per_epoch": loop.per_epoch,
        "final": hist[-1] if hist else None,
        "min_val_loss": best,
        "min_val_loss_iteration": best["iteration"] if best else None,
        "history": hist,
        "wall_time_s": elapsed,
        "eval_time_s": eval_time,
        # training steps only (this session's, if resumed): the figure the literature's timings quote
        "seconds_per_epoch": (elapsed - eval_time) / steps * loop.per_epoch if steps else None,
        "threads": torch.get_num_threads(),
        "versions": {"lotterylab": __version__, "torch": torch.__version__, "python": platform.python_version()},
    }
