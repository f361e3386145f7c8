"""How much pre-training is enough? (Wolfe, Liao, Wang, Kim, Kyrillidis, TMLR 2024)

The study: pre-train a two-layer MLP on nested data subsets of sizes m, keep checkpoints at a
log-spaced grid of iterations t, run greedy forward selection (:mod:`lotterylab.find.gfs`) at a
fixed neuron budget on every (m, t), and record the pruned network's training and test loss and
accuracy beside the dense network's. ``T*(m)`` is the first t at which the pruned training loss
reaches a fixed level (Wolfe et al., arXiv:2108.00259: "the minimal pre-training iterations needed for a fixed
pruned loss"); the theory predicts it grows linearly in log m.

Resumable: each subset's pre-training writes its checkpoints once; each (m, t) cell writes its
JSON once; rerunning recomputes nothing finished.

The bound calculator (:func:`threshold_bound`) evaluates the shape of the theorem's threshold
``T* ~ (c / (eta * lambda_0)) * log(m)`` from an NTK Gram estimate; the paper's exact constants
are not available (see docs/pretraining.md), so it reports the predicted *slope in log m* and a
curve scaled through the first measured point, never an absolute number presented as the theorem's.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import models, rng
from .data import DataSplits, Split
from .find.gfs import GFSConfig, gfs
from .hparams import run_hash, to_dict
from .io import load_state_into, load_tensors, read_json, save_tensors, write_json
from .training import Callback, TrainConfig, evaluate, train


@dataclass
class PretrainStudyConfig:
    sizes: str = field(default="1000,2000,4000,8000,16000,32000,55000",
                       metadata={"help": "training-subset sizes m (nested subsets)"})
    iterations: str = field(default="0,50,100,150,200,300,400,600,800,1200,1600,2400,3200,4800,6400,9600,12800",
                            metadata={"help": "pre-training checkpoints t (iterations)"})
    model: str = field(default="mlp", metadata={"help": "mlp: 784-width-10; cnn: width 5x5 filters, max pooling, "
                                                        "linear readout (GFS selects filters)", "choices": ["mlp", "cnn"]})
    width: int = field(default=512, metadata={
        "help": "hidden neurons (mlp) or filters (cnn) of the two-layer net", "check": "positive"})
    lr: float = field(default=0.05, metadata={"help": "SGD learning rate of the pre-training", "check": "positive"})
    batch_size: int = field(default=128, metadata={"help": "pre-training batch size", "check": "positive"})
    neurons: int = field(default=256, metadata={"help": "GFS neuron budget (distinct neurons kept)",
                                                   "check": "positive"})
    steps_per_neuron: float = field(default=1.5, metadata={"help": "GFS picks per budgeted neuron (re-weighting)",
                                                           "check": "positive"})
    gfs_batch: int = field(default=1024, metadata={
        "help": "examples GFS selects on (from the subset)", "flag": "selection-examples", "aliases": ["--gfs-batch"],
        "check": "positive"})
    pool: int = field(default=128, metadata={"help": "GFS random candidate pool per pick (0: all neurons)",
                                             "check": "nonneg"})
    step: str = field(default="1/k", metadata={"help": "GFS step: 1/k or line", "choices": ["1/k", "line"]})
    rule: str = field(default="level", metadata={
        "help": "T*(m): first t whose pruned train loss is <= (level) --tol, a fixed loss; (plateau) its lowest "
                "value + tol x its total drop from t=0; (dense) the dense loss at the last t + tol",
        "choices": ["level", "plateau", "dense"]})
    tol: float = field(default=0.15, metadata={"help": "T* tolerance (level: the loss level; plateau: fraction "
                                                       "of the drop; dense: loss above the dense loss)"})
    seed: int = field(default=0, metadata={"help": "seed of the subsets, the init and the data order"})


def parse_ints(text: str) -> list[int]:
    try:
        vals = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"expected a comma-separated list of integers, got {text!r}") from None
    if not vals or min(vals) < 0:
        raise ValueError(f"expected non-negative integers, got {text!r}")
    return vals


def subset(data: DataSplits, m: int, seed: int) -> DataSplits:
    """The first m examples of one seeded permutation: smaller subsets lie inside larger ones."""
    n = len(data.train)
    if not 0 < m <= n:
        raise ValueError(f"subset size {m} outside 1..{n} (training examples available)")
    return DataSplits(data.name, data.train.take(m, seed, "study.subset"), data.val, data.test,
                      data.num_classes, data.input_shape, data.mean, data.std)


class _Checkpoints(Callback):
    def __init__(self, at: set[int], folder: Path):
        self.at, self.folder = at, folder

    def on_step_end(self, loop) -> None:
        if loop.iteration in self.at:
            path = self.folder / f"it{loop.iteration}.safetensors"
            if not path.exists():
                save_tensors(path, {k: v.detach().cpu() for k, v in loop.model.state_dict().items()},
                             {"kind": "weights", "iteration": loop.iteration})


@torch.no_grad()
def _loss_acc(model, split: Split) -> tuple[float, float]:
    r = evaluate(model, split, batch_size=4096)
    return r["loss"], r["accuracy"]


def _model(cfg: PretrainStudyConfig, data: DataSplits, device=None):
    if cfg.model == "cnn":
        return models.create("conv1", "relu", data.input_shape, data.num_classes, width=cfg.width,
                             init="kaiming_uniform", seed=cfg.seed, device=device)
    return models.create("mlp", "relu", data.input_shape, data.num_classes, widths=(cfg.width,), init="kaiming_uniform",
                         seed=cfg.seed, device=device)


def pretrain(cfg: PretrainStudyConfig, data: DataSplits, m: int, out: Path, device=None) -> Path:
    """Pre-train on the m-subset and write the checkpoints of the grid (once)."""
    folder = out / f"m{m}"
    its = parse_ints(cfg.iterations)
    if all((folder / f"it{t}.safetensors").exists() for t in its):
        return folder
    sub = subset(data, m, cfg.seed)
    model = _model(cfg, data, device)
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "it0.safetensors").exists():
        save_tensors(folder / "it0.safetensors", {k: v.detach().cpu() for k, v in model.state_dict().items()},
                     {"kind": "weights", "iteration": 0})
    tc = TrainConfig(optimizer="sgd", lr=cfg.lr, batch_size=min(cfg.batch_size, m), budget=f"{max(its)}it",
                     eval_every=f"{max(max(its), 1)}it", seed=cfg.seed)
    # constant-lr SGD with a seeded data order: the checkpoint at t does not depend on the budget,
    # so a longer grid only trains further (in its own run folder)
    train(model, sub, tc, out=folder / f"run{max(its)}", callbacks=[_Checkpoints(set(its), folder)], device=device,
          progress=False, extra_hash={"study": cells_key(cfg), "m": m})
    return folder


def cell(cfg: PretrainStudyConfig, data: DataSplits, m: int, t: int, out: Path, device=None) -> dict:
    """GFS on the checkpoint (m, t); the result is written once to ``cells/m{m}_t{t}.json``."""
    path = out / "cells" / f"m{m}_t{t}.json"
    if path.exists():
        return read_json(path)
    sub = subset(data, m, cfg.seed)
    model = _model(cfg, data, device)
    tensors, _ = load_tensors(out / f"m{m}" / f"it{t}.safetensors", kind="weights")
    load_state_into(model, tensors, out / f"m{m}" / f"it{t}.safetensors")
    t0 = time.perf_counter()
    small, rec = gfs(model, sub, GFSConfig(neurons=cfg.neurons, batch=cfg.gfs_batch, step=cfg.step, seed=cfg.seed,
                                           pool=cfg.pool, steps_per_neuron=cfg.steps_per_neuron))
    dt = time.perf_counter() - t0
    dense_train, dense_train_acc = _loss_acc(model, sub.train)
    dense_test, dense_test_acc = _loss_acc(model, data.test)
    pr_train, pr_train_acc = _loss_acc(small, sub.train)
    pr_test, pr_test_acc = _loss_acc(small, data.test)
    res = {"m": m, "t": t, "dense_train_loss": dense_train, "dense_train_accuracy": dense_train_acc,
           "dense_test_loss": dense_test, "dense_test_accuracy": dense_test_acc,
           "pruned_train_loss": pr_train, "pruned_train_accuracy": pr_train_acc,
           "pruned_test_loss": pr_test, "pruned_test_accuracy": pr_test_acc,
           "neurons_kept": rec["layers"][0]["kept"], "picks": len(rec["layers"][0]["picks"]), "gfs_seconds": dt}
    write_json(path, res)
    return res


def threshold(cells: list[dict], m: int, tol: float, rule: str = "level") -> int | None:
    """T*(m), the first t whose pruned train loss P(t) is close to a reference:

    * ``level``: ``P(t) <= tol`` -- a fixed pruned loss, the same for every m: the reading of the
      theorem (after T* ~ log m iterations the pruned loss reaches a level set by the budget n);
    * ``plateau``: ``P(t) <= P_min + tol * (P(0) - P_min)`` -- the subnetwork has made all but
      ``tol`` of its improvement; "enough" pre-training is where more of it stops helping. The
      theorem's pruned loss decays to an O(1/n) floor that a fixed budget n cannot beat, so this
      is the scale-free reading of its threshold;
    * ``dense``: ``P(t) <= dense loss at the last t + tol`` (absolute). With a fixed budget the
      floor can lie above that for large m, and then T* does not exist (None).
    """
    rows = sorted((c for c in cells if c["m"] == m), key=lambda c: c["t"])
    if not rows:
        return None
    if rule == "level":
        target = tol
    elif rule == "dense":
        target = rows[-1]["dense_train_loss"] + tol
    elif rule == "plateau":
        low = min(c["pruned_train_loss"] for c in rows)
        target = low + tol * (rows[0]["pruned_train_loss"] - low)
    else:
        raise ValueError(f"unknown threshold rule {rule!r}; use level, plateau or dense")
    return next((c["t"] for c in rows if c["pruned_train_loss"] <= target), None)


def fit_log(ms: list[int], ts: list[float]) -> dict:
    """Least squares T = a + b log(m); b is the slope per e-fold of m."""
    xs = [math.log(m) for m in ms]
    n = len(xs)
    if n < 2:
        return {"slope": math.nan, "intercept": math.nan, "r2": math.nan}
    mx, my = sum(xs) / n, sum(ts) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (t - my) for x, t in zip(xs, ts)) / sxx if sxx else math.nan
    a = my - b * mx
    ss_tot = sum((t - my) ** 2 for t in ts)
    ss_res = sum((t - a - b * x) ** 2 for x, t in zip(xs, ts))
    return {"slope": b, "intercept": a, "r2": 1 - ss_res / ss_tot if ss_tot else math.nan}


# --- bound calculator -------------------------------------------------------------------------
def ntk_gram(x: torch.Tensor) -> torch.Tensor:
    """H^inf of a two-layer ReLU net for unit-norm inputs (Du et al. 2019):
    H_ij = <x_i, x_j> (pi - arccos <x_i, x_j>) / (2 pi)."""
    x = x.reshape(x.shape[0], -1).double()
    x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    g = (x @ x.T).clamp(-1.0, 1.0)
    return g * (math.pi - torch.arccos(g)) / (2 * math.pi)


def lambda_min(x: torch.Tensor, max_points: int = 2000, seed: int = 0) -> tuple[float, int]:
    """Smallest eigenvalue of H^inf on (up to) ``max_points`` of ``x``; for a subsample this is an
    upper bound on the full set's lambda_0 (eigenvalue interlacing)."""
    n = x.shape[0]
    if n > max_points:
        keys = rng.uniform(seed, rng.stream_id("study.ntk"), (n,), 0.0, 1.0, x.device)
        x = x[torch.sort(keys, stable=True).indices[:max_points]]
    return float(torch.linalg.eigvalsh(ntk_gram(x))[0]), int(x.shape[0])


def threshold_bound(m: int, lam0: float, eta: float, c: float = 2.0, scale: float = 1.0) -> dict:
    """The theorem's threshold shape ``T* = (c / (eta * lambda_0)) * log(scale * m)``.

    ``c`` and ``scale`` stand for constants the paper's statement fixes and we could not
    retrieve; with c = 2 this is the iteration count after which GD's contraction
    (1 - eta lambda_0 / 2)^t has shrunk an m-sized residual to O(1). Use the slope in log m,
    ``c / (eta * lambda_0)``, for comparison with the measured T*(m)."""
    if m <= 0 or lam0 <= 0 or eta <= 0:
        raise ValueError(f"need m > 0, lambda_0 > 0 and eta > 0, got m={m}, lambda_0={lam0}, eta={eta}")
    slope = c / (eta * lam0)
    return {"m": m, "lambda0": lam0, "eta": eta, "T_star": slope * math.log(scale * m), "slope_per_log_m": slope,
            "constants": "c and scale are placeholders: the theorem's constants were not available"}


def cells_key(cfg: PretrainStudyConfig) -> str:
    """Folder name: a hash of what a cell's numbers depend on. The grid (sizes, iterations) and the
    threshold rule are left out, so extending the grid or changing the rule reuses every cell."""
    d = to_dict(cfg)
    for k in ("sizes", "iterations", "rule", "tol"):
        d.pop(k)
    if d["model"] == "mlp":  # (the field came later: MLP studies keep their folders)
        d.pop("model")
    return run_hash(d)


def _size_cells(cfg: PretrainStudyConfig, data: DataSplits, m: int, out: Path, device=None) -> None:
    """One subset size: pre-train, then every cell (each written once), then the size's record."""
    pretrain(cfg, data, m, out, device)
    its = parse_ints(cfg.iterations)
    write_json(out / "sizes" / f"m{m}.json", {"m": m, "iterations": its,
                                                "cells": [cell(cfg, data, m, t, out, device) for t in its]})


def _size_job(cfg: PretrainStudyConfig, data_name: str, m: int, out: Path) -> None:
    """:func:`_size_cells` in a worker (the executor has set its threads): the data set is reloaded by name."""
    from . import data as data_mod

    _size_cells(cfg, data_mod.load(data_name), m, out)


def run_study(data: DataSplits, cfg: PretrainStudyConfig | None = None, out: str | Path = "runs/study",
              device=None, plots_dir: str | Path | None = None, log=print, workers: int | None = 1,
              nested: bool = True, executor: str = "processes") -> dict:
    """Run (or resume) the study; with ``workers`` > 1 (None: every core) or ``executor="ray"``
    subset sizes run on that executor (:mod:`lotterylab.executors`), one thread each; the data set
    is reloaded by name there, so only named data sets qualify. ``nested``: cells go to ``out/<cells key>`` (default)
    or, False, to ``out`` itself."""
    from . import executors, plots
    from .sweep import Cell, run_cells

    cfg = cfg or PretrainStudyConfig()
    out = Path(out) / cells_key(cfg) if nested else Path(out)
    sizes, its = parse_ints(cfg.sizes), parse_ints(cfg.iterations)
    if max(sizes) > len(data.train):
        raise ValueError(f"largest subset {max(sizes)} exceeds the {len(data.train)} training examples")
    if cfg.neurons > cfg.width:
        raise ValueError(f"GFS budget {cfg.neurons} exceeds the width {cfg.width}")
    write_json(out / "config.json", to_dict(cfg))
    t0 = time.perf_counter()
    if executor == "processes" and workers == 1:  # (the API's default: one worker is this process)
        executor, workers = "serial", None
    ex = executors.create(executor, workers, threads=1)
    local = ex.name == "serial"
    # one cell per subset size; largest first, as they take longest (the pool ends evenly)
    cells = [Cell(f"m{m}", (lambda m: _size_cells(cfg, data, m, out, device)) if local else _size_job,
                  (m,) if local else (cfg, data.name, m, out), out / "sizes" / f"m{m}.json",
                  done=lambda res: res["iterations"] == its) for m in sorted(sizes, reverse=not local)]
    try:
        done = run_cells(cells, ex, progress=False)
    finally:
        ex.close()
    cells = [c for m in sizes for c in done[f"m{m}"]["result"]["cells"]]
    for m in sizes:
        log(f"m={m}: pruned train loss " + " ".join(f"t{c['t']}={c['pruned_train_loss']:.3f}" for c in cells
                                                     if c["m"] == m))
    ts = {m: threshold(cells, m, cfg.tol, cfg.rule) for m in sizes}
    # robustness: T*(m) and the fitted slope at neighbouring levels, reported beside the chosen one
    levels = {}
    if cfg.rule == "level":
        for lv in (cfg.tol * 2 / 3, cfg.tol, cfg.tol * 4 / 3):
            tl = {m: threshold(cells, m, lv, "level") for m in sizes}
            ok = [(m, t) for m, t in tl.items() if t is not None]
            levels[f"{lv:.3g}"] = {"T_star": {str(m): t for m, t in tl.items()},
                                   "fit": fit_log([m for m, _ in ok], [t for _, t in ok])}
    other = "dense" if cfg.rule != "dense" else "plateau"
    ts_other = {m: threshold(cells, m, 0.1, other) for m in sizes}
    found = [(m, t) for m, t in ts.items() if t is not None]
    fit = fit_log([m for m, _ in found], [t for _, t in found])
    bound = []
    for m in sizes:
        lam, used = lambda_min(subset(data, m, cfg.seed).train.x, seed=cfg.seed)
        bound.append({**threshold_bound(m, lam, cfg.lr), "lambda0_points": used})
    # the bound's curve scaled through the first measured T* (constants unknown)
    if found and bound:
        ref = next(b for b in bound if b["m"] == found[0][0])
        k = found[0][1] / ref["T_star"] if ref["T_star"] > 0 else math.nan
        for b in bound:
            b["T_star_scaled"] = b["T_star"] * k
    res = {"config": to_dict(cfg), "cells": cells, "T_star": {str(m): t for m, t in ts.items()}, "fit": fit,
           f"T_star_rule_{other}_tol0.1": {str(m): t for m, t in ts_other.items()}, "T_star_levels": levels,
           "bound": bound, "wall_time_s": time.perf_counter() - t0, "out": str(out)}
    write_json(out / "study.json", res)
    pdir = Path(plots_dir) if plots_dir else out
    grid = [[next(c["pruned_train_loss"] for c in cells if c["m"] == m and c["t"] == t) for t in its] for m in sizes]
    plots.heatmap(grid, pdir / "pretraining_heatmap.png", [str(t) for t in its], [str(m) for m in sizes],
                  "pre-training iterations t", "training subset size m",
                  f"GFS-pruned train loss ({cfg.neurons} of {cfg.width} neurons)", "train loss")
    plots.threshold_plot(found, fit, bound, cells, sizes, its, pdir / "pretraining_threshold.png",
                         level=cfg.tol if cfg.rule == "level" else None)
    return res

