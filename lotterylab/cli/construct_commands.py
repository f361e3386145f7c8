"""``construct``, ``gfs`` and ``study``: commands on a trained target or a whole experiment."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import executors
from ..construct import FAMILIES
from ..construct.config import FIRST_LAYERS
from ..hparams import from_namespace, to_dict
from .options import RunFolder, pct, print_finished, stage, start
from .targets import TargetConfig, load_target, target_record


@dataclass
class ConstructConfig:
    mode: str = field(default="L+1", metadata={
        "help": "construction family: L+1 (Burkholz 2022), 2L (Pensia et al.), structured (da Cunha et al. 2023)",
        "choices": list(FAMILIES)})  # the registry: new families appear here
    granularity: str = field(default="kernel", metadata={
        "help": "--mode structured: prune whole kernels (and unused filters), whole filters only, or single weights "
                "(the unstructured ticket of the same source)", "choices": ["kernel", "filter", "weight"]})
    rho_kernel: int = field(default=0, metadata={
        "help": "--mode structured: expansion channels per input channel (0: from the MRSS calibration)",
        "check": "nonneg"})
    eps: float = field(default=0.01, metadata={"help": "guarantee mode: bound on the output error over the domain",
                                               "check": "positive"})
    eps_param: float = field(default=0.0, metadata={
        "help": "paper mode: per-parameter tolerance instead of --eps (0: guarantee mode)", "check": "nonneg"})
    first_layer: str = field(default="", metadata={"help": "first-layer scheme (default: by activation)",
                                                   "choices": ["", *FIRST_LAYERS]})
    calibration: int = field(default=0, metadata={
        "help": "paper mode: correct every bias for the mean error on this many training examples (0: off)",
        "check": "nonneg"})
    compensate: bool = field(default=False, metadata={
        "help": "with --calibration: later weights' subset-sum targets cancel earlier errors (GPTQ-style)"})
    copy_objective: str = field(default="", metadata={
        "help": "subset choice in the L+1 copy layers (default: as the other layers)",
        "choices": ["", "min_cardinality", "min_l1", "min_error"]})
    copy_scale: float = field(default=1.0, metadata={
        "help": "L+1: copy layers' weight half-width as a fraction of the layer's largest target weight "
                "(below 1: smaller l1 masses, less compounding in deep targets)", "check": "positive"})
    low: float = field(default=-1.0, metadata={"help": "domain box, file targets without data (with --high)"})
    high: float = field(default=1.0, metadata={"help": "upper end of the domain box"})
    source_seed: int = field(default=0, metadata={"help": "seed of the random source network", "check": "nonneg"})
    seed: int = field(default=0, metadata={"help": "seed of the calibration sample draw", "check": "nonneg"})
    verify_samples: int = field(default=100_000, metadata={"help": "random points of the domain checked (0: skip "
                                                                   "verification)", "check": "nonneg"})
    attack_steps: int = field(default=200, metadata={"help": "gradient-attack steps of the verification",
                                                     "check": "nonneg"})
    test: bool = field(default=True, metadata={"help": "evaluate target and ticket on the test set (data targets)"})


def cmd_construct(ns) -> int:
    from .. import construct, plots, verify
    from ..verification import compare

    start(ns)
    tc, cc = from_namespace(TargetConfig, ns), from_namespace(ConstructConfig, ns)
    if cc.calibration and not cc.eps_param:
        raise ValueError("--calibration is a paper-mode refinement: add --eps-param (e.g. 0.01) or drop --calibration")
    if cc.compensate and not cc.calibration:
        raise ValueError("--compensate needs --calibration N (and --eps-param): it cancels errors over that sample")
    if cc.seed and not cc.calibration:
        stage(ns, f"note: --seed {cc.seed} draws the calibration sample and none is drawn here; the random source "
                  f"is drawn by --source-seed ({cc.source_seed})")
    if cc.mode != "structured" and (cc.granularity != "kernel" or cc.rho_kernel):
        raise ValueError(f"--granularity and --rho-kernel shape structured tickets; add --mode structured or drop them "
                         f"(--mode {cc.mode} prunes single weights)")
    if cc.mode == "structured" and cc.rho_kernel == 1:
        raise ValueError("--rho-kernel must be 0 (calibrated) or at least 2 (expansion channels per input channel)")
    if cc.low >= cc.high:
        raise ValueError(f"--low {cc.low} must be below --high {cc.high}")
    executors.check(ns.executor, ns.workers)
    run = RunFolder(ns, "construct", [Path(tc.target).stem, cc.mode])
    done = run.check()
    if done is not None:
        print_finished(done, run.path)
        return 0
    def log(text):
        stage(ns, text)

    stage(ns, f"reading target {tc.target}")
    target, splits = load_target(tc, need_data=cc.calibration > 0 and Path(tc.target).exists(),
                                 progress=not ns.quiet, log=log)
    if cc.calibration and Path(tc.target).exists():
        try:
            with torch.no_grad():
                target(splits.train.x[:2])
        except Exception as e:  # noqa: BLE001 - any failure means: not this data's inputs
            raise ValueError(f"--calibration draws {tc.dataset} training images, which {tc.target} does not take "
                             f"({type(e).__name__}); give the target's own data with --dataset / --data-root") from None
    # data is loaded for zoo targets, --calibration and zoo --arch: then the target is checked on it
    on_data = splits is not None
    if on_data:
        domain, domain_text = splits.test.x, f"the per-channel box of the {tc.dataset} test images"
    else:
        domain, domain_text = (cc.low, cc.high), f"the box [{cc.low}, {cc.high}] per input"
    kwargs = {"eps_param": cc.eps_param} if cc.eps_param else {"eps": cc.eps}
    if cc.calibration:
        kwargs["calibration"] = splits.train.take(cc.calibration, seed=cc.seed).x
        kwargs["compensate"] = cc.compensate
    if cc.copy_objective:
        kwargs["copy_objective"] = cc.copy_objective
    if cc.copy_scale != 1.0:
        kwargs["copy_scale"] = cc.copy_scale
    if cc.mode == "structured":
        kwargs["granularity"] = cc.granularity
        kwargs["rho_kernel"] = cc.rho_kernel or None
    mode_text = f"paper mode, eps_param {cc.eps_param}" if cc.eps_param else f"guarantee mode, eps {cc.eps}"
    stage(ns, f"constructing a depth-{cc.mode} ticket ({mode_text}; domain: {domain_text})")
    ex = _executor(ns)
    try:
        ticket = construct(target, mode=cc.mode, seed=cc.source_seed, domain=domain,
                           first_layer=cc.first_layer or None, log=log, executor=ex, **kwargs)
    finally:
        if ex is not None:
            ex.close()
    ticket.save(run.path / "ticket.safetensors")
    rep = dict(ticket.report)
    if cc.verify_samples:
        stage(ns, f"verifying: {cc.verify_samples:,} sampled points, {cc.attack_steps} attack steps")
        rep["verify"] = verify(target, ticket, domain=domain, samples=cc.verify_samples, attack_steps=cc.attack_steps)
    if splits is not None and cc.test and on_data:
        stage(ns, f"test set: {len(splits.test):,} images")
        rep["test"] = compare(target, ticket, splits.test)  # its compact network where it has one
    rep["file"] = ticket.file_report(run.path / "ticket.safetensors")
    if cc.mode == "structured" and ticket.arch.get("name") == "source_net":
        rep["structured"] = _structured_outputs(ns, target, ticket, run.path)
    plots.construction(rep, run.path / "construction.png", rep.get("verify"), rep.get("test"))
    p = rep["parameters"]
    what = ("a worst-case bound on |target(x) - ticket(x)| over " + domain_text)
    lines = []
    if "test" in rep:
        te = rep["test"]
        lines.append(f"test set: target accuracy {pct(te['target_accuracy'])}, ticket {pct(te['ticket_accuracy'])}, "
                     f"top-1 agreement {pct(te['agreement'])}, largest output difference {te['max_output_error']:.3g}")
    lines.append(f"{cc.mode} ticket ({mode_text}): {p['ticket']:,} of the source's {p['source']:,} parameters kept "
                 f"({p['ticket_per_target']:.1f}x the target's {p['target']:,}); constructed in "
                 f"{rep['timings_s']['total']:.1f} s")
    if "verify" in rep:
        lines.append(f"largest error found by sampling and attack: {rep['verify']['sup_error']:.3g}")
    if rep.get("pure_pruning") is False:
        lines.append("first layer: identity, the papers' idealised experiment: the source is not a network of the "
                     "target's activation throughout (not a pure pruning)")
    se, cal = rep.get("sampled_error"), rep.get("calibration_check")
    if rep.get("far_from_target") and se:
        seen = f"sampled output error {se['sup_error']:.3g} against an output range of {se['output_range']:.3g}"
        if cal:
            seen += f"; top-1 agreement {pct(cal['agreement'])} on the {cal['samples']:,} calibration images"
        lines.append(f"WARNING: this ticket is far from its target ({seen}); try a smaller --eps-param, "
                     f"--calibration, --mode 2L or guarantee mode (--eps)")
    vac = " (vacuous at this size: far above any error seen)" if rep["certificate"] > 1 and cc.eps_param else ""
    lines.append(f"certificate {rep['certificate']:.3g}: {what}{vac}")
    if "structured" in rep:
        c = rep["structured"]["cost"]
        whole = rep["structured"]["structure"]["structured"]
        lines.append(f"structured: {'whole kernels and filters only' if whole else 'NOT structured'}; "
                     f"compact network {run.path / 'compact.safetensors'}: {c['compact']['parameters']:,} parameters, "
                     f"{c['compact']['macs']:,} MACs per example (target {c['target']['parameters']:,} / "
                     f"{c['target']['macs']:,}; masked source {c['masked_source']['macs']:,} MACs)")
    lines.append(f"written to {run.path}")
    run.finish({"kind": "construct", "target": target_record(tc), "construct": to_dict(cc),
                "domain": domain_text, "mode": {"depth": cc.mode, "paper": bool(cc.eps_param)}, "report": rep}, lines)
    return 0


def _executor(ns):
    """None (this process, --threads threads) or the executor --executor names, one thread per worker."""
    return None if ns.executor == "serial" else executors.create(ns.executor, ns.workers, threads=1)


def _structured_outputs(ns, target, ticket, folder: Path) -> dict:
    """The compact network (only the kept channels and kernels, float32) and its cost beside the target's."""
    from ..compact_net import save_compact
    from ..structured import cost, plan_macs, structure

    stage(ns, "structured ticket: the compact network and its cost")
    shape = tuple(ticket.arch["input_shape"])
    small = ticket.compact(dtype=torch.float32, fold=False, sparse=False)  # the dense network it stands for
    save_compact(small, folder / "compact.safetensors", {"source": "structured ticket, kept channels and kernels"})
    src_params = ticket.report["parameters"]["source"]
    return {"structure": structure(ticket),
            "cost": {"target": cost(target, shape), "compact": cost(small, shape),
                     "masked_source": {"parameters": src_params, "nonzero_parameters": ticket.report["parameters"]["ticket"],
                                       "macs": plan_macs(ticket.arch["kwargs"]["plan"], shape)}},
            "compact_file": "compact.safetensors"}


def cmd_gfs(ns) -> int:
    from ..find.gfs import GFSConfig, forward_time, gfs
    from ..io import save_tensors
    from ..training import evaluate

    start(ns)
    tc, cfg = from_namespace(TargetConfig, ns), from_namespace(GFSConfig, ns)
    run = RunFolder(ns, "gfs", [Path(tc.target).stem])
    done = run.check()
    if done is not None:
        print_finished(done, run.path)
        return 0
    target, splits = load_target(tc, need_data=True, progress=not ns.quiet, log=lambda t: stage(ns, t))
    stage(ns, f"greedy forward selection (density {cfg.fraction}, {cfg.step} steps)")
    small, rec = gfs(target, splits, cfg, progress=not ns.quiet)
    stage(ns, "test set and forward timing")
    dense_acc = evaluate(target, splits.test)["accuracy"]
    acc = evaluate(small, splits.test)["accuracy"]
    t_dense, t_small = forward_time(target, splits.test.x), forward_time(small, splits.test.x)
    save_tensors(run.path / "model.safetensors", {k: v.detach().cpu() for k, v in small.state_dict().items()},
                 {"kind": "weights", "widths": rec["widths"], "activation": tc.activation,
                  "layout": "nn.Sequential(Flatten, Linear, act, ..., Linear)", "source": "gfs"})
    run.finish({"kind": "gfs", "method": "GFS", "target": target_record(tc), "config": to_dict(cfg),
                "selection": rec, "density": _neuron_density(rec), "dense_test_accuracy": dense_acc,
                "test_accuracy": acc, "final": {"test_accuracy": acc},
                "forward_s": {"dense": t_dense, "pruned": t_small}, "speedup": t_dense / t_small,
                "data": splits.describe()},
               [f"GFS: widths {rec['widths']}; test accuracy {pct(acc)} (dense {pct(dense_acc)}); forward pass "
                f"{t_dense / t_small:.2f}x faster ({ns.threads} thread(s)); written to {run.path}"])
    return 0


def _neuron_density(rec: dict) -> float:
    kept = sum(layer["kept"] for layer in rec["layers"])
    before = sum(layer["width_before"] for layer in rec["layers"])
    return kept / before if before else 1.0


def cmd_study(ns) -> int:
    from .. import data as data_mod
    from ..study import PretrainStudyConfig, cells_key, run_study

    start(ns)
    executors.check(ns.executor, ns.workers)
    cfg = from_namespace(PretrainStudyConfig, ns)
    # the folder is keyed by what its cells depend on (not the grid or the threshold rule), so a rerun
    # with a longer grid reuses every finished cell; the finished result is returned only for the same flags
    run = RunFolder(ns, "study-pretraining", [cfg.model, ns.dataset], key={"cells": cells_key(cfg),
                                                                           "dataset": ns.dataset})
    done = run.check()
    if done is not None:
        print_finished(done, run.path)
        return 0
    splits = data_mod.load(ns.dataset)
    res = run_study(splits, cfg, out=run.path, plots_dir=ns.plots_dir or None, workers=ns.workers, nested=False,
                    executor=ns.executor)
    slope = res["fit"].get("slope")
    if slope is None or slope != slope:
        fit = (f"no slope: T*(m) was found for {sum(t is not None for t in res['T_star'].values())} of "
               f"{len(res['T_star'])} subset sizes (needs 2); raise the largest of --iterations or --tol")
    else:
        fit = f"fitted slope {slope:.1f} iterations per e-fold of m (R^2 {res['fit']['r2']:.2f})"
    run.finish({**res, "kind": "study_pretraining", "dataset": ns.dataset},
               [f"T*(m): {res['T_star']}; {fit}; {res['wall_time_s']:.0f} s; results in {run.path}"])
    return 0


def cmd_study_planted(ns) -> int:
    from ..planted_study import PlantedStudyConfig, cells_key, check, run_planted_study

    start(ns)
    executors.check(ns.executor, ns.workers)
    cfg = from_namespace(PlantedStudyConfig, ns)
    check(cfg)
    spec = {"name": ns.dataset, "root": ns.data_root, "verify": ns.verify, "val_size": ns.val_size}
    # keyed by what the cells depend on (not the grid or the tolerance): a wider grid reuses every finished cell
    run = RunFolder(ns, "study-planted", [cfg.task, ns.dataset], key={"cells": cells_key(cfg), "data": spec})
    done = run.check()
    if done is not None:
        print_finished(done, run.path)
        return 0
    from ..planted_study import load_data

    load_data(spec)  # the data files checked here, before any work, not in every worker
    res = run_planted_study(spec, cfg, out=run.path, executor=ns.executor, workers=ns.workers,
                            plots_dir=ns.plots_dir or None, log=lambda line: stage(ns, line))
    from ..planted_study import summary_lines

    run.finish({**res, "kind": "study_planted", "dataset": ns.dataset},
               summary_lines(res) + [f"{len(res['rows'])} cells, {res['wall_time_s']:.0f} s; table and heat maps "
                                     f"in {run.path}"])
    return 0
