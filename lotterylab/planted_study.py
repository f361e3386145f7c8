"""Do finders recover planted tickets? Every finder on planted problems, at densities around the plant's.

Fischer & Burkholz (PlantNSeek, ICLR 2022) planted hand-built ReLU tickets into random networks and
found that pruning methods mostly fail to recover them at high sparsity. This study plants
*constructed* tickets (:func:`lotterylab.plant`): per activation a small MLP is trained on real
images (MNIST-type, average-pooled to 7x7: 49 inputs), each construction family turns it into a
ticket of a random source, and the ticket's function labels the task (its argmax on the same images,
or its outputs for ``task="regression"``). Then every finder runs on the source at densities
``factor x`` the planted density:

* ``imp``: iterative magnitude pruning with rewinding (``imp_rounds`` rounds down to the density,
  every layer at the same rate; each round trains ``budget``);
* ``snip``, ``grasp``, ``synflow``, ``magnitude`` (global ranking, as in their papers), ``random``
  (uniform per layer), ``er``
  (random, Erdős–Rényi layer densities): prune at init, then train the kept weights ``budget``;
* ``edge_popup``: scores on the frozen source weights (a strong-ticket search; nothing is trained
  but the scores), per-layer density;
* references, once per problem: ``planted`` (the planted mask, weights and biases, trained the
  same budget: what a perfect finder would give; untrained it *is* the teacher) and ``dense`` (the
  whole source trained).

Each cell records precision and recall of the found weights against the planted mask (per layer
too), the accuracy (loss) on the teacher's task untrained and after training, and whether it
reaches the plant (:meth:`~lotterylab.planted.PlantedProblem.reaches`). Resumable: each problem's
ticket and each cell's JSON are written once (:mod:`lotterylab.sweep` cells on any executor).
GFS is left out: it selects neurons and re-weights the readout, so it gives no mask of the source's
weights to compare with the plant.
"""

from __future__ import annotations

import copy
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import models
from .data import DataSplits
from .find.edge_popup import EdgePopupConfig, edge_popup_mask
from .find.imp import IMP, IMPConfig
from .find.pai import PaIConfig, prune_at_init
from .hparams import run_hash, to_dict
from .io import load_state_into, load_tensors, read_json, write_json
from .masks import Mask
from .planted import TASKS, PlantedProblem, plant, reaches
from .tickets import load_ticket
from .training import TrainConfig, evaluate, train

FINDERS = ("imp", "snip", "grasp", "synflow", "magnitude", "random", "er", "edge_popup")
REFERENCES = ("planted", "dense")
_PAI = {"snip": ("snip", "uniform"), "grasp": ("grasp", "uniform"), "synflow": ("synflow", "uniform"),
        "magnitude": ("magnitude", "uniform"), "random": ("random", "uniform"), "er": ("random", "er")}


@dataclass
class PlantedStudyConfig:
    families: str = field(default="2L,L+1", metadata={"help": "construction families that build the plants"})
    activations: str = field(default="relu,tanh", metadata={"help": "activations of the targets (one target each)"})
    finders: str = field(default=",".join(FINDERS), metadata={"help": f"finders run: any of {', '.join(FINDERS)}"})
    density_factors: str = field(default="1,2,5", metadata={
        "help": "densities (fractions kept) searched, as multiples of the planted density (capped at 1)"})
    task: str = field(default="classification", metadata={
        "help": "classification: the teacher's argmax as labels; regression: its outputs (squared error)",
        "choices": list(TASKS)})
    width: int = field(default=8, metadata={"help": "hidden neurons of each target (49-width-10 MLP)",
                                            "check": "positive"})
    target_budget: str = field(default="2000it", metadata={"help": "training of each target (Adam, lr 3e-3)",
                                                           "check": "positive_steps"})
    eps_param: float = field(default=0.02, metadata={
        "help": "subset-sum tolerance per parameter of the constructions (the papers' mode)", "check": "positive"})
    budget: str = field(default="600it", metadata={
        "help": "training of every found network (each IMP round; edge-popup: its scores)", "check": "positive_steps"})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate of found networks (edge-popup: SGD 0.1, "
                                                      "momentum 0.9, cosine, as in its paper)", "check": "positive"})
    batch_size: int = field(default=128, metadata={"help": "examples per step (targets and found networks)", "check": "positive"})
    imp_rounds: int = field(default=3, metadata={"help": "IMP rounds to each density (global rate to match)",
                                                 "check": "positive"})
    imp_rewind: str = field(default="init", metadata={"help": "IMP rewind point: init or <k>it"})
    tol: float = field(default=0.02, metadata={
        "help": "reaches the plant: accuracy on the teacher's labels >= 1 - tol (regression: relative squared "
                "error <= tol)", "check": "positive"})
    seed: int = field(default=0, metadata={"help": "seed of the targets, sources, data order and finders",
                                           "check": "nonneg"})


def names_list(text: str, allowed, what: str) -> list[str]:
    vals = [v.strip() for v in str(text).split(",") if v.strip()]
    bad = [v for v in vals if v not in allowed]
    if not vals or bad:
        raise ValueError(f"{what}: {', '.join(bad) or 'none given'} not among {', '.join(allowed)}")
    return vals


def factors(text: str) -> list[float]:
    try:
        vals = [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"density factors must be numbers, got {text!r}") from None
    if not vals or any(not (v > 0 and math.isfinite(v)) for v in vals):
        raise ValueError(f"density factors must be positive, got {text!r}")
    return vals


def check(cfg: PlantedStudyConfig) -> None:
    """Every value that can be wrong, before any work."""
    grid(cfg)  # families, activations, finders and factors
    if cfg.task not in TASKS:
        raise ValueError(f"unknown task {cfg.task!r}; use one of {', '.join(TASKS)}")
    if cfg.imp_rewind != "init" and not re.fullmatch(r"\d+(it|ep)", cfg.imp_rewind):
        raise ValueError(f"imp_rewind {cfg.imp_rewind!r}: use init or an iteration like 100it / 1ep")


def cells_key(cfg: PlantedStudyConfig) -> str:
    """What a cell's numbers depend on: the grid (families, activations, finders, factors) and the
    reach tolerance are left out, so a wider grid or another tolerance reuses every finished cell."""
    d = to_dict(cfg)
    for k in ("families", "activations", "finders", "density_factors", "tol"):
        d.pop(k)
    return run_hash(d)


# --- problems ----------------------------------------------------------------------------------
def _target(cfg: PlantedStudyConfig, data: DataSplits, act: str, out: Path) -> torch.nn.Module:
    model = models.create("mlp", act, data.input_shape, data.num_classes, widths=(cfg.width,),
                          init="kaiming_uniform", seed=cfg.seed)
    tc = TrainConfig(lr=3e-3, batch_size=cfg.batch_size, budget=cfg.target_budget, eval_every=cfg.target_budget,
                     seed=cfg.seed)
    train(model, data, tc, out=out / "targets" / act, progress=False, extra_hash={"planted_target": act})
    return model


def problem_cell(cfg: PlantedStudyConfig, data: DataSplits, act: str, families: list[str], out: Path) -> dict:
    """One activation: train its target (once), build each family's ticket (once), and record them."""
    from .construct import construct

    target = _target(cfg, data, act, out)
    x = data.train.x
    lo, hi = x.flatten(1).min(0).values, x.flatten(1).max(0).values
    rows = {}
    for fam in families:
        folder = out / "problems" / f"{fam}_{act}"
        path = folder / "ticket.safetensors"
        if not path.exists():
            t0 = time.perf_counter()
            ticket = construct(target, mode=fam, eps_param=cfg.eps_param, seed=cfg.seed + 1, domain=(lo, hi),
                               input_shape=data.input_shape)
            write_json(folder / "construction.json", {"seconds": time.perf_counter() - t0})
            ticket.save(path)  # (last: a ticket file means its record is there)
        ticket = load_ticket(path)
        seconds = read_json(folder / "construction.json")["seconds"]
        p = plant(ticket, task=cfg.task, inputs=data)
        with torch.no_grad():
            t = evaluate(target, data.test)["accuracy"]
            agree = float((p.teacher()(data.test.x).argmax(1) == target(data.test.x).argmax(1)).float().mean())
        rows[fam] = {"family": fam, "activation": act, "target_accuracy": t, "teacher_target_agreement": agree,
                     "construction_seconds": seconds, **p.info, "planted_layer_density": p.planted.layer_density(),
                     # the a-posteriori bound on |teacher - target| over the whole input box (loose)
                     "certificate": ticket.report.get("certificate")}
    res = {"activation": act, "families": rows}
    write_json(out / "problems" / f"{act}.json", res)
    return res


def load_problem(cfg: PlantedStudyConfig, data: DataSplits, fam: str, act: str, out: Path) -> PlantedProblem:
    return plant(load_ticket(out / "problems" / f"{fam}_{act}" / "ticket.safetensors"), task=cfg.task, inputs=data)


# --- cells -------------------------------------------------------------------------------------
def _train_cfg(cfg: PlantedStudyConfig) -> TrainConfig:
    return TrainConfig(lr=cfg.lr, batch_size=cfg.batch_size, budget=cfg.budget, eval_every=cfg.budget, seed=cfg.seed)


def _masked(source: torch.nn.Module, mask: Mask) -> torch.nn.Module:
    return mask.apply(copy.deepcopy(source))


def finder_cell(cfg: PlantedStudyConfig, data: DataSplits, fam: str, act: str, finder: str, factor: float | None,
                out: Path) -> dict:
    """One finder at one density on one problem (references: ``factor`` None); written once."""
    name = f"{fam}_{act}/{finder}" + ("" if factor is None else f"_x{factor:g}")
    path = out / "cells" / f"{name}.json"
    if path.exists():
        return read_json(path)
    folder = out / "runs" / name
    p = load_problem(cfg, data, fam, act, out)
    planted_density = p.planted.density
    density = 1.0 if finder == "dense" else planted_density if finder == "planted" else min(1.0, factor * planted_density)
    source = p.source()
    tc = _train_cfg(cfg)
    t0 = time.perf_counter()
    trained = None
    if finder == "planted":
        mask = p.ticket.masks  # weights and biases: untrained, this is the teacher
    elif finder == "dense":
        mask = Mask.ones_like(source, [n for n, w in source.named_parameters() if w.dim() > 1])
    elif finder == "edge_popup":
        ep = TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4, batch_size=cfg.batch_size,
                         budget=cfg.budget, schedule="cosine", eval_every=cfg.budget, seed=cfg.seed)
        mask, _ = edge_popup_mask(source, p.data, EdgePopupConfig(density=density, network_seed=cfg.seed),
                                  train_cfg=ep, out=folder, progress=False)
    elif finder == "imp":
        # layerwise, every layer at the same rate (Frankle & Carbin): global magnitude ranking collapses
        # whole layers of a constructed source, whose layers have very different weight scales
        rate = max(1.0 - density ** (1.0 / cfg.imp_rounds), 1e-6)
        run = IMP(copy.deepcopy(source), p.data, tc, IMPConfig(target_density=density, rounds=cfg.imp_rounds,
                                                               rate=rate, output_rate=rate, scope="layerwise",
                                                               rewind=cfg.imp_rewind), out=folder, progress=False)
        run.run()  # (its rounds' training is part of finding: the cell's seconds include it)
        mask = run.mask(cfg.imp_rounds)
        final = run.round_dir(cfg.imp_rounds) / "final.safetensors"  # the last round's trained weights
        trained = copy.deepcopy(source)
        load_state_into(trained, load_tensors(final, kind="weights")[0], final)
    else:
        method, layers = _PAI[finder]
        mask = prune_at_init(source, p.data, PaIConfig(method=method, density=density,
                                                       scope="layerwise" if method == "random" else "global",
                                                       layer_density=layers, score_seed=cfg.seed))
    find_seconds = time.perf_counter() - t0
    untrained = p.reaches(_masked(source, mask), cfg.tol)
    res = {"family": fam, "activation": act, "finder": finder, "factor": factor, "density": density,
           "planted_density": planted_density, "untrained": untrained, "seconds": find_seconds}
    if finder != "edge_popup":  # edge-popup's weights stay frozen: its untrained network is its result
        if trained is None:
            trained = _masked(source, mask)
            train(trained, p.data, tc, mask=mask, out=folder / "train", progress=False)
        res["trained"] = p.reaches(trained, cfg.tol)
        res["seconds"] = time.perf_counter() - t0  # finding and training
    weights = Mask({k: v for k, v in mask.items() if v.dim() > 1})
    s = p.score(weights)
    res.update(precision=s["precision"], recall=s["recall"], found_density=s["found_density"],
               layers={k: {"recall": v["recall"], "precision": v["precision"], "found_density": v["found_density"],
                           "planted_density": v["planted_density"]} for k, v in s["layers"].items()})
    write_json(path, res)
    return res


def result_of(row: dict) -> dict:
    """The network a finder hands over: trained weights (weak tickets), the masked source (edge-popup)."""
    return row.get("trained") or row["untrained"]


def reached(row: dict) -> bool:
    """The found mask reaches the plant: as drawn (a strong ticket: the plant itself does) or trained."""
    return bool(row["untrained"]["reaches"] or (row.get("trained") or {}).get("reaches"))


# --- the study ---------------------------------------------------------------------------------
def load_data(spec: dict) -> DataSplits:
    """The study's images: a named MNIST-type set, average-pooled to 7x7 (``spec``: name, and optionally
    root, verify, val_size)."""
    from . import data as data_mod

    return data_mod.load(spec["name"], root=spec.get("root") or None, verify=spec.get("verify", True), view="7x7x1",
                         val_size=spec.get("val_size", 5000))


def _problem_job(cfg, spec, act, families, out):
    return problem_cell(cfg, load_data(spec), act, families, out)


def _finder_job(cfg, spec, fam, act, finder, factor, out):
    return finder_cell(cfg, load_data(spec), fam, act, finder, factor, out)


def grid(cfg: PlantedStudyConfig) -> list[tuple]:
    """(family, activation, finder, factor) of every cell; references once per problem (factor None)."""
    fams, acts = names_list(cfg.families, _families(), "families"), names_list(cfg.activations, _acts(), "activations")
    finders, fs = names_list(cfg.finders, FINDERS, "finders"), factors(cfg.density_factors)
    return [(fam, act, f, None) for fam in fams for act in acts for f in REFERENCES] + \
        [(fam, act, f, k) for fam in fams for act in acts for f in finders for k in fs]


def _families():
    from .construct import FAMILIES
    return list(FAMILIES)


def _acts():
    from .models import ACTIVATIONS
    return list(ACTIVATIONS)


def run_planted_study(spec: dict, cfg: PlantedStudyConfig | None = None, out: str | Path = "runs/study-planted",
                      executor: str = "serial", workers: int | None = None, log=print,
                      plots_dir: str | Path | None = None) -> dict:
    """Run (or resume) the study on the data set ``spec`` (name, root, verify): problems first (one
    cell per activation), then every finder cell, on ``executor`` (one thread per worker); then the
    table, the heat maps and ``study.json`` in ``out``."""
    from . import executors
    from .sweep import Cell, run_cells

    cfg = cfg or PlantedStudyConfig()
    check(cfg)
    out = Path(out)
    # the cells in ``out`` hold numbers of one cells key and data set: another's are refused, never reused
    key = {"cells": cells_key(cfg), "data": {k: spec.get(k) for k in ("name", "root", "val_size")}}
    if (out / "study_key.json").exists() and read_json(out / "study_key.json") != key:
        raise ValueError(f"{out} holds a planted study with other settings (budget, widths, task, seed, data ...; "
                         f"{read_json(out / 'study_key.json')} there, {key} now); choose another out")
    write_json(out / "study_key.json", key)
    write_json(out / "config.json", to_dict(cfg))
    t0 = time.perf_counter()
    fams, acts = names_list(cfg.families, _families(), "families"), names_list(cfg.activations, _acts(), "activations")
    ex = executors.create(executor, workers, threads=1)
    local = ex.name == "serial"
    data = load_data(spec) if local else None
    try:
        probs = [Cell(f"problem-{a}", (lambda a: problem_cell(cfg, data, a, fams, out)) if local else _problem_job,
                      (a,) if local else (cfg, spec, a, fams, out), out / "problems" / f"{a}.json",
                      done=lambda r: set(r["families"]) >= set(fams)) for a in acts]
        problems = run_cells(probs, ex, progress=False)
        cells = []
        for fam, act, finder, k in grid(cfg):
            key = f"{fam}_{act}/{finder}" + ("" if k is None else f"_x{k:g}")
            args = (fam, act, finder, k)
            cells.append(Cell(key, (lambda *a: finder_cell(cfg, data, *a, out)) if local else _finder_job,
                              args if local else (cfg, spec, *args, out), out / "cells" / f"{key}.json"))
        order = [c.key for c in cells]  # (the table's order)
        if not local:  # the longest cells first, so the workers end evenly
            cells.sort(key=lambda c: c.key.split("/")[1].split("_x")[0] not in ("imp", "edge_popup"))
        done = run_cells(cells, ex, progress=False)
    finally:
        ex.close()
    failed = [k for k, v in {**problems, **done}.items() if v["result"] is None]
    if failed:
        raise ValueError(f"cells without a result: {', '.join(failed[:5])}; rerun to retry them")
    # cells store their figures; whether they reach the plant is judged here, at this run's tol (the
    # cells' folder does not depend on it, so a cell may have been written under another)
    rows = [done[k]["result"] for k in order]
    for r in rows:
        for part in ("untrained", "trained"):
            if r.get(part) is not None:
                r[part]["reaches"] = reaches(r[part], cfg.task, cfg.tol)
    info = {f"{fam}_{act}": problems[f"problem-{act}"]["result"]["families"][fam] for fam in fams for act in acts}
    res = {"config": to_dict(cfg), "data": spec["name"], "problems": info, "rows": rows,
           "first_reaching": first_reaching(rows), "wall_time_s": time.perf_counter() - t0, "out": str(out),
           "executor": ex.describe()}
    write_json(out / "study.json", res)
    from .planted_report import write_report
    write_report(res, Path(plots_dir) if plots_dir else out)
    for line in summary_lines(res):
        log(line)
    return res


def first_reaching(rows: list[dict]) -> dict:
    """Per problem and finder: the lowest density searched whose network reaches the plant (None: none did)."""
    best: dict = {}
    for r in rows:
        key = f"{r['family']}_{r['activation']}"
        cur = best.setdefault(key, {}).setdefault(r["finder"], None)
        if reached(r) and (cur is None or r["density"] < cur):
            best[key][r["finder"]] = r["density"]
    return best


def summary_lines(res: dict) -> list[str]:
    lines = []
    for prob, finders in res["first_reaching"].items():
        pd = res["problems"][prob]["planted_density"]
        parts = [f"{f} {'-' if d is None else f'{d / pd:.3g}x'}" for f, d in finders.items()]
        lines.append(f"{prob} (planted density {pd:.4f}): lowest density reaching the plant: " + ", ".join(parts))
    return lines
