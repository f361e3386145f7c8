"""``train``, ``imp``, ``pai``, ``edge-popup``, ``early-bird``: commands that train on a data set."""

from __future__ import annotations

from pathlib import Path

import torch

from .. import plots
from ..hparams import from_namespace, to_dict
from ..training import TrainConfig, train
from .options import ModelDataConfig, RunFolder, build_model, load_data, pct, print_finished, stage, start


def _prepare(ns, command: str, need_model: bool = True):
    """Checks, run folder, data and model: everything before the work. Returns None when finished."""
    start(ns)
    md = from_namespace(ModelDataConfig, ns)
    run = RunFolder(ns, command, [md.model if ":" not in md.model else Path(md.model.split(":")[0]).stem, md.dataset])
    done = run.check()
    if done is not None:
        print_finished(done, run.path)
        return None
    stage(ns, f"loading {md.dataset}")
    splits = load_data(md, ns.device)
    model = build_model(md, splits, ns.device) if need_model else None
    return md, run, splits, model


def _model_record(md, splits, model) -> dict:
    rec = {"model_data": to_dict(md), "data": splits.describe()}
    if model is not None:
        rec["parameters"] = sum(p.numel() for p in model.parameters())
        rec["arch"] = getattr(model, "lotterylab_arch", {"factory": md.model})
    return rec


def cmd_train(ns) -> int:
    prep = _prepare(ns, "train")
    if prep is None:
        return 0
    md, run, splits, model = prep
    cfg = from_namespace(TrainConfig, ns)
    stage(ns, f"{md.model} ({md.activation}) on {md.dataset}: {sum(p.numel() for p in model.parameters()):,} "
              f"parameters; {cfg.optimizer} lr {cfg.lr}, batch {cfg.batch_size}, {cfg.budget}; {ns.threads} thread(s); "
              f"out {run.path}")
    result = train(model, splits, cfg, out=run.path, device=ns.device, progress=not ns.quiet,
                   extra_hash={"model_data": to_dict(md)})
    result.pop("loaded_from", None)
    final = result["final"]
    result.update(_model_record(md, splits, model))
    run.finish(result, [f"test accuracy {pct(final['test_accuracy'])} (validation {pct(final['val_accuracy'])}) after "
                        f"{result['iterations']} iterations; min validation loss at iteration "
                        f"{result['min_val_loss_iteration']}; weights in {run.path / 'checkpoint.safetensors'} "
                        f"(lotterylab.load_run)"])
    return 0


def cmd_imp(ns) -> int:
    from ..find.imp import IMP, IMPConfig

    prep = _prepare(ns, "imp")
    if prep is None:
        return 0
    md, run, splits, model = prep
    cfg, icfg = from_namespace(TrainConfig, ns), from_namespace(IMPConfig, ns)
    stage(ns, f"IMP on {md.model}/{md.dataset}: rewind {icfg.rewind}, {icfg.scope}, to density {icfg.target_density}; "
              f"out {run.path}")
    imp = IMP(model, splits, cfg, icfg, out=run.path, device=ns.device, progress=not ns.quiet)
    state = imp.run()
    title = f"IMP ({icfg.scope}, rewind {icfg.rewind}), {md.model} on {md.dataset}"
    series = {"IMP": [(r["density"], r["test_accuracy_at_min_val_loss"]) for r in state["rounds"]]}
    speed = {"IMP": [(r["density"], r["min_val_loss_iteration"]) for r in state["rounds"]]}
    if ns.control != "none":
        c = imp.control(ns.control, seed=ns.control_seed)
        series[ns.control] = [(r["density"], r["test_accuracy_at_min_val_loss"]) for r in c["rounds"]]
        speed[ns.control] = [(r["density"], r["min_val_loss_iteration"]) for r in c["rounds"]]
        state["control"] = c
    plots.accuracy_vs_density(series, run.path / "accuracy_vs_density.png", title=title)
    plots.learning_speed_vs_density(speed, run.path / "learning_speed.png", title=title)
    lines = [f"round {r['round']:>2}  density {100 * r['density']:7.3f}%  test accuracy (early stop) "
             f"{pct(r['test_accuracy_at_min_val_loss'])}  min validation loss at iteration {r['min_val_loss_iteration']}"
             for r in state["rounds"]]
    run.finish({**state, "kind": "imp", "method": "IMP", **_model_record(md, splits, model)}, lines)
    return 0


def cmd_pai(ns) -> int:
    from ..find.pai import PaIConfig, ablate, prune_at_init
    from ..find.scores import collapsed_layers

    prep = _prepare(ns, "pai")
    if prep is None:
        return 0
    md, run, splits, model = prep
    cfg, pcfg = from_namespace(TrainConfig, ns), from_namespace(PaIConfig, ns)
    stage(ns, f"scoring with {pcfg.method} to density {pcfg.density}")
    mask = prune_at_init(model, splits, pcfg)
    if pcfg.ablation == "reinit":
        model, mask = ablate(model, mask, "reinit", seed=pcfg.score_seed + 1)
    mask.save(run.path / "mask.safetensors")
    stage(ns, f"{pcfg.method} at density {mask.density:.5f} ({pcfg.scope}); collapsed layers: "
              f"{collapsed_layers(mask) or 'none'}; training, out {run.path}")
    result = train(model, splits, cfg, mask=mask, out=run.path, device=ns.device, progress=not ns.quiet,
                   extra_hash={"model_data": to_dict(md), "pai": to_dict(pcfg)})
    result.pop("loaded_from", None)
    result.update({"kind": "pai", "method": pcfg.method, "density": mask.density,
                   "layer_density": mask.layer_density(), "collapsed_layers": collapsed_layers(mask),
                   "pai": to_dict(pcfg), **_model_record(md, splits, model)})
    plots.training_curves({pcfg.method: result["history"]}, run.path / "training.png",
                          title=f"{pcfg.method} at density {100 * mask.density:.2f}%, {md.model} on {md.dataset}")
    run.finish(result, [f"{pcfg.method} at density {pct(mask.density)}: test accuracy "
                        f"{pct(result['final']['test_accuracy'])}"])
    return 0


def cmd_edge_popup(ns) -> int:
    from ..find.edge_popup import EdgePopupConfig, edge_popup
    from .options import model_kwargs
    from .targets import is_factory

    if is_factory(ns.model):
        raise ValueError("edge-popup draws its frozen weights from lotterylab's generator (ticket files store the "
                         "seed, not the weights): use a zoo model (--model mlp --widths ... for MLPs)")
    ns.model_seed, ns.init = ns.network_seed, ns.weight_init  # edge-popup's own flags for them (recorded once)
    prep = _prepare(ns, "edge-popup", need_model=False)
    if prep is None:
        return 0
    md, run, splits, _ = prep
    cfg, ecfg = from_namespace(TrainConfig, ns), from_namespace(EdgePopupConfig, ns)
    stage(ns, f"edge-popup on {md.model}/{md.dataset}: density {ecfg.density}, weights {ecfg.weight_init} "
              f"(seed {ecfg.network_seed}); out {run.path}")
    ticket, result = edge_popup(md.model, splits, ecfg, cfg, out=run.path, device=ns.device, progress=not ns.quiet,
                                activation=md.activation, **model_kwargs(md))
    result.pop("loaded_from", None)
    result.update({"kind": "edge_popup", "method": "edge-popup", "density": ticket.masks.density,
                   "edge_popup": to_dict(ecfg), "model_data": to_dict(md), "data": splits.describe(),
                   "arch": ticket.arch, "init": ticket.init})
    plots.training_curves({"edge-popup": result["history"]}, run.path / "training.png",
                          title=f"edge-popup, {md.model} on {md.dataset}, density {100 * ticket.masks.density:.1f}%, "
                                f"weights untrained")
    run.finish(result, [f"ticket {run.path / 'ticket.safetensors'}: density {pct(ticket.masks.density)}, test "
                        f"accuracy {pct(result['final']['test_accuracy'])} with untrained weights"])
    return 0


def cmd_early_bird(ns) -> int:
    from ..find.early_bird import EarlyBird, bn_channels
    from ..io import read_json, write_json
    from ..masks import Mask

    prep = _prepare(ns, "early-bird")
    if prep is None:
        return 0
    md, run, splits, model = prep
    cfg = from_namespace(TrainConfig, ns)
    kind = ns.kind
    if kind == "auto":
        has_bn = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
        kind = "channel" if has_bn else "magnitude"
    if kind == "channel":
        try:
            bn_channels(model)
        except ValueError as e:
            raise ValueError(f"--kind channel: {e}. Use --kind magnitude, or a model with BatchNorm "
                             f"(e.g. --model conv2 --batch-norm)") from None
    settings = {"density": ns.eb_density, "kind": kind, "window": ns.window, "threshold": ns.threshold, "l1": ns.l1,
                "retrain": ns.retrain}
    eb = EarlyBird(model, density=ns.eb_density, kind=kind, window=ns.window, threshold=ns.threshold, l1=ns.l1)
    stage(ns, f"early-bird search ({kind} masks at density {ns.eb_density}); out {run.path}")
    search = train(model, splits, cfg, out=run.path / "search", callbacks=[eb], device=ns.device,
                   progress=not ns.quiet, extra_hash={"model_data": to_dict(md), "early_bird": settings})
    drawn_file = run.path / "drawn.json"
    if search.pop("loaded_from", None):  # the detector's state lives in the search: read what it wrote
        if not drawn_file.exists():
            raise ValueError(f"{run.path}/search finished but its early-bird record is missing (killed in between); "
                             f"delete {run.path} and rerun")
        rec = read_json(drawn_file)
        drawn, checks = rec["drawn"], rec["checks"]
        mask = Mask.load(run.path / "mask.safetensors") if drawn is not None else None
    else:
        checks = eb.checks
        drawn = None if eb.drawn is None else {k: v for k, v in eb.drawn.items() if k != "mask"}
        mask = None if eb.drawn is None else eb.drawn["mask"]
        if mask is not None:
            mask.save(run.path / "mask.safetensors")
        plots.mask_distance_matrix(eb.distance_matrix(), run.path / "mask_distance.png",
                                   labels=[f"{c['epoch']:.1f}" for c in eb.checks],
                                   title=f"early-bird mask distance, {md.model} on {md.dataset}")
        write_json(drawn_file, {"drawn": drawn, "checks": checks})
    base = {"kind": "early_bird", "method": "early-bird", "early_bird": settings, "drawn": drawn, "checks": checks,
            "search": search, **_model_record(md, splits, model)}
    if drawn is None:
        run.finish({**base, "density": None}, ["no early-bird ticket: the masks kept changing until the end of the "
                                               "budget (raise --budget or --threshold)"])
        return 1
    stage(ns, f"early-bird ticket drawn at iteration {drawn['iteration']} ({100 * drawn['fraction_of_budget']:.1f}% "
              f"of the budget); retraining it ({ns.retrain})")
    if ns.retrain == "scratch":
        model = build_model(md, splits, ns.device)
    final = train(model, splits, cfg, mask=mask, out=run.path / "retrain", device=ns.device, progress=not ns.quiet,
                  extra_hash={"model_data": to_dict(md), "retrain": ns.retrain})
    final.pop("loaded_from", None)
    lines = [f"early-bird ticket (drawn at iteration {drawn['iteration']}, density {pct(mask.density)}): retrained "
             f"test accuracy {pct(final['final']['test_accuracy'])}"]
    compact = None
    if kind == "channel":
        compact = _save_compact(model, mask, splits, run.path / "compact.safetensors")
        if compact is not None:
            lines.append(f"physically smaller network {run.path / 'compact.safetensors'}: {compact['parameters']:,} of "
                         f"{compact['parameters_before']:,} parameters, forward pass {compact['speedup']:.2f}x faster "
                         f"({ns.threads} thread(s)); lotterylab.runs.load_weights reads it")
    run.finish({**base, "density": mask.density, "retrain": final, "final": final["final"], "compact": compact,
                "min_val_loss": final["min_val_loss"], "min_val_loss_iteration": final["min_val_loss_iteration"]},
               lines)
    return 0


def _save_compact(model, mask, splits, path) -> dict | None:
    """The channel ticket as a smaller dense ConvNet (when the model is one), saved with its architecture."""
    from ..find.early_bird import compact_channels
    from ..find.gfs import forward_time
    from ..io import save_tensors

    try:
        small = compact_channels(model, mask)
    except ValueError as e:
        print(f"note: no physically smaller network ({e})")
        return None
    model.eval()
    small.eval()
    x = splits.test.x[:1000]
    t_big, t_small = forward_time(model, x), forward_time(small, x)
    save_tensors(path, {k: v.detach().cpu() for k, v in small.state_dict().items()},
                 {"kind": "weights", "arch": small.lotterylab_arch, "source": "early-bird channel ticket"})
    return {"parameters": sum(p.numel() for p in small.parameters()),
            "parameters_before": sum(p.numel() for p in model.parameters()), "plan": small.plan,
            "forward_s": {"masked": t_big, "compact": t_small}, "speedup": t_big / t_small}
