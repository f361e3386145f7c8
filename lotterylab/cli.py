"""``lotterylab`` command line: a thin layer over the library API."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import data as data_mod
from . import models
from .hparams import add_arguments, from_namespace, run_hash, to_dict
from .io import FileFormatError, load_tensors, read_json, write_json
from .training import TrainConfig, train


@dataclass
class ModelDataConfig:
    model: str = field(default="lenet_300_100", metadata={"help": f"zoo model: {', '.join(models.names())}"})
    activation: str = field(default="relu", metadata={"help": "activation", "choices": list(models.ACTIVATIONS)})
    init: str = field(default="", metadata={"help": "init scheme (empty: the model's literature default)"})
    model_seed: int = field(default=0, metadata={"help": "seed of the initial weights"})
    dataset: str = field(default="mnist", metadata={"help": "data set", "choices": list(data_mod.DATASETS)})
    data_root: str = field(default="", metadata={"help": "directory of the data set files (CIFAR-10, other copies)"})
    view: str = field(default="", metadata={"help": "'32x32x3' to pad and repeat MNIST-type images"})
    val_size: int = field(default=5000, metadata={"help": "training examples held out for validation"})
    split_seed: int = field(default=0, metadata={"help": "seed of the validation split"})
    verify: bool = field(default=True, metadata={"help": "check the data files' SHA-256 (--no-verify: your own "
                                                         "files in the standard format)"})


def _load_data(md: ModelDataConfig, device):
    return data_mod.load(md.dataset, root=md.data_root or None, val_size=md.val_size, seed=md.split_seed,
                         view=md.view or None, device=device, verify=md.verify)


def cmd_train(ns) -> int:
    md, cfg = from_namespace(ModelDataConfig, ns), from_namespace(TrainConfig, ns)
    torch.set_num_threads(ns.threads)
    splits = _load_data(md, ns.device)
    model = models.create(md.model, md.activation, splits.input_shape, splits.num_classes,
                          init=md.init or None, seed=md.model_seed, device=ns.device)
    out = Path(ns.out) if ns.out else Path("runs") / f"train-{md.model}-{md.dataset}-{run_hash(md, cfg)}"
    print(f"{md.model} ({md.activation}) on {md.dataset}: {sum(p.numel() for p in model.parameters()):,} parameters; "
          f"{cfg.optimizer} lr {cfg.lr}, batch {cfg.batch_size}, {cfg.budget}; {ns.threads} thread(s); out {out}")
    result = train(model, splits, cfg, out=out, device=ns.device, progress=not ns.quiet,
                   extra_hash={"model_data": to_dict(md)})
    final = result["final"]
    if result.pop("loaded_from", None):
        print(f"test accuracy {final['test_accuracy']:.4f} (finished run loaded from {out}; nothing recomputed)")
        return 0
    result["model_data"] = to_dict(md)
    result["data"] = splits.describe()
    write_json(out / "result.json", result)
    print(f"test accuracy {final['test_accuracy']:.4f} (val {final['val_accuracy']:.4f}) after "
          f"{result['iterations']} iterations; min val loss at iteration {result['min_val_loss_iteration']}; "
          f"{result['seconds_per_epoch']:.2f} s per training epoch")
    return 0


def _load_target(ns):
    """A zoo name (trained once on MNIST with the default protocol, cached under runs/) or a
    safetensors state dict of a Linear chain (layers in file order, --activation between them)."""
    from torch import nn

    from .io import FileFormatError as _FFE

    path = Path(ns.target)
    if path.exists():
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            sd = load_file(str(path))
        except (SafetensorError, OSError) as e:
            raise _FFE(f"{path}: not a readable safetensors state dict ({e})") from None
        ws = [k for k, v in sd.items() if k.endswith("weight") and v.dim() == 2]
        if not ws:
            raise _FFE(f"{path}: no 2-D '*.weight' tensors; expected the state dict of a chain of nn.Linear layers")
        layers = []
        for k, name in enumerate(ws):
            w = sd[name]
            lin = nn.Linear(w.shape[1], w.shape[0])
            lin.weight.data.copy_(w)
            b = sd.get(name[: -len("weight")] + "bias")
            lin.bias.data.copy_(b if b is not None else torch.zeros(w.shape[0]))
            layers.append(lin)
            if k < len(ws) - 1:
                layers.append(models.make_activation(ns.activation))
        return nn.Sequential(*layers), None
    if ns.target not in models.names():
        raise ValueError(f"--target {ns.target!r} is neither a file nor a zoo model ({', '.join(models.names())})")
    splits = data_mod.load("mnist")
    model = models.create(ns.target, ns.activation, splits.input_shape, splits.num_classes, seed=0)
    train(model, splits, TrainConfig(), out=Path("runs") / f"target-{ns.target}-{ns.activation}", progress=not ns.quiet)
    return model.eval(), splits


def cmd_construct(ns) -> int:
    from . import construct, verify

    torch.set_num_threads(ns.threads)
    target, splits = _load_target(ns)
    domain = splits.test.x if splits is not None else (ns.low, ns.high)
    kwargs = {"eps_param": ns.eps_param} if ns.eps_param else {"eps": ns.eps}
    if ns.calibration:
        if splits is None or not ns.eps_param:
            raise ValueError("--calibration needs a zoo target (it draws from the target's training data) and "
                             "--eps-param (paper mode); drop --calibration or pass both")
        kwargs["calibration"] = splits.train.take(ns.calibration, seed=ns.seed).x
    if ns.compensate and not ns.calibration:
        raise ValueError("--compensate needs --calibration N (and --eps-param): it cancels errors over that sample")
    if ns.compensate:
        kwargs["compensate"] = True
    if ns.copy_objective:
        kwargs["copy_objective"] = ns.copy_objective
    ticket = construct(target, mode=ns.mode, seed=ns.seed, domain=domain, first_layer=ns.first_layer or None, **kwargs)
    out = Path(ns.out)
    ticket.save(out / "ticket.safetensors")
    rep = dict(ticket.report)
    if ns.verify_samples:
        rep["verify"] = verify(target, ticket, domain=domain, samples=ns.verify_samples, attack_steps=ns.attack_steps)
    if splits is not None:  # the data the target was trained for: accuracy, agreement, largest output difference
        from .verification import _as_float64
        x, y = splits.test.x.double(), splits.test.y
        with torch.no_grad():
            out_t = _as_float64(target, "cpu")(x)
            out_k = _as_float64(ticket.network(), "cpu")(x)
        rep["test"] = {"target_accuracy": float((out_t.argmax(1) == y).double().mean()),
                       "ticket_accuracy": float((out_k.argmax(1) == y).double().mean()),
                       "agreement": float((out_t.argmax(1) == out_k.argmax(1)).double().mean()),
                       "max_output_error": float((out_t - out_k).abs().max())}
    rep["file"] = ticket.file_report(out / "ticket.safetensors")
    from . import plots
    plots.construction(rep, out / "construction.png", rep.get("verify"), rep.get("test"))
    write_json(out / "result.json", {"kind": "construct", "target": ns.target, "args": {k: v for k, v in vars(ns).items()
                                                                                        if k != "func"}, "report": rep})
    p = rep["parameters"]
    print(f"{ns.mode} ticket: source {p['source']:,} params, ticket {p['ticket']:,} ({p['ticket_per_target']:.1f}x the "
          f"target's {p['target']:,}); certificate {rep['certificate']:.3g}"
          + (f"; sampled+attacked error {rep['verify']['sup_error']:.3g}" if "verify" in rep else "")
          + f"; {rep['timings_s']['total']:.1f} s; written to {out}")
    if "test" in rep:
        te = rep["test"]
        print(f"test set: target accuracy {100 * te['target_accuracy']:.2f}%, ticket {100 * te['ticket_accuracy']:.2f}%, "
              f"top-1 agreement {100 * te['agreement']:.2f}%, largest output difference {te['max_output_error']:.3g}")
    return 0


def _setup(ns):
    md = from_namespace(ModelDataConfig, ns)
    torch.set_num_threads(ns.threads)
    splits = _load_data(md, ns.device)
    model = models.create(md.model, md.activation, splits.input_shape, splits.num_classes,
                          init=md.init or None, seed=md.model_seed, device=ns.device)
    return md, splits, model


def cmd_imp(ns) -> int:
    from . import plots
    from .find.imp import IMP, IMPConfig

    md, splits, model = _setup(ns)
    cfg, icfg = from_namespace(TrainConfig, ns), from_namespace(IMPConfig, ns)
    out = Path(ns.out) if ns.out else Path("runs") / f"imp-{md.model}-{md.dataset}-{run_hash(md, cfg, icfg)}"
    run = IMP(model, splits, cfg, icfg, out=out, device=ns.device, progress=not ns.quiet)
    print(f"IMP on {md.model}/{md.dataset}: rewind {icfg.rewind}, {icfg.scope}, to density {icfg.target_density}; "
          f"out {out}")
    state = run.run()
    series = {"IMP": [(r["density"], r["test_accuracy_at_min_val_loss"]) for r in state["rounds"]]}
    speed = {"IMP": [(r["density"], r["min_val_loss_iteration"]) for r in state["rounds"]]}
    if ns.control != "none":
        c = run.control(ns.control, seed=ns.control_seed)
        series[ns.control] = [(r["density"], r["test_accuracy_at_min_val_loss"]) for r in c["rounds"]]
        speed[ns.control] = [(r["density"], r["min_val_loss_iteration"]) for r in c["rounds"]]
        state["control"] = c
    plots.accuracy_vs_density(series, out / "accuracy_vs_density.png", title=f"IMP, {md.model} on {md.dataset}")
    plots.learning_speed_vs_density(speed, out / "learning_speed.png", title=f"IMP, {md.model} on {md.dataset}")
    write_json(out / "result.json", {**state, "model_data": to_dict(md)})
    for r in state["rounds"]:
        print(f"round {r['round']:>2}  density {100 * r['density']:7.3f}%  test acc (early stop) "
              f"{100 * r['test_accuracy_at_min_val_loss']:6.2f}%  min val loss at it {r['min_val_loss_iteration']}")
    return 0


def cmd_pai(ns) -> int:
    from . import plots
    from .find.pai import PaIConfig, ablate, prune_at_init

    md, splits, model = _setup(ns)
    cfg, pcfg = from_namespace(TrainConfig, ns), from_namespace(PaIConfig, ns)
    out = Path(ns.out) if ns.out else Path("runs") / f"pai-{pcfg.method}-{md.model}-{md.dataset}-{run_hash(md, cfg, pcfg)}"
    mask = prune_at_init(model, splits, pcfg)
    if pcfg.ablation == "reinit":
        model, mask = ablate(model, mask, "reinit", seed=pcfg.score_seed + 1)
    from .find.scores import collapsed_layers
    mask.save(out / "mask.safetensors")
    print(f"{pcfg.method} at density {mask.density:.5f} ({pcfg.scope}); collapsed layers: "
          f"{collapsed_layers(mask) or 'none'}; training, out {out}")
    result = train(model, splits, cfg, mask=mask, out=out, device=ns.device, progress=not ns.quiet,
                   extra_hash={"model_data": to_dict(md), "pai": to_dict(pcfg)})
    result.pop("loaded_from", None)
    result.update({"method": pcfg.method, "density": mask.density, "layer_density": mask.layer_density(),
                   "collapsed_layers": collapsed_layers(mask), "pai": to_dict(pcfg), "model_data": to_dict(md)})
    write_json(out / "result.json", result)
    plots.training_curves({pcfg.method: result["history"]}, out / "training.png",
                          title=f"{pcfg.method} at density {mask.density:.4f}")
    print(f"test accuracy {result['final']['test_accuracy']:.4f}")
    return 0


def cmd_edge_popup(ns) -> int:
    from . import plots
    from .find.edge_popup import EdgePopupConfig, edge_popup

    md = from_namespace(ModelDataConfig, ns)
    torch.set_num_threads(ns.threads)
    splits = _load_data(md, ns.device)
    cfg, ecfg = from_namespace(TrainConfig, ns), from_namespace(EdgePopupConfig, ns)
    out = Path(ns.out) if ns.out else Path("runs") / f"edgepopup-{md.model}-{md.dataset}-{run_hash(md, cfg, ecfg)}"
    kwargs = {"widths": [int(w) for w in ns.widths.split(",")]} if ns.widths else {}
    ticket, result = edge_popup(md.model, splits, ecfg, cfg, out=out, device=ns.device, progress=not ns.quiet,
                                activation=md.activation, **kwargs)
    result.pop("loaded_from", None)
    result.update({"method": "edge_popup", "density": ticket.masks.density, "edge_popup": to_dict(ecfg)})
    write_json(out / "result.json", result)
    plots.training_curves({"edge-popup": result["history"]}, out / "training.png",
                          title=f"edge-popup, {md.model}, density {ticket.masks.density:.2f}, weights untrained")
    print(f"ticket {out / 'ticket.safetensors'}: density {ticket.masks.density:.3f}, test accuracy "
          f"{result['final']['test_accuracy']:.4f} with untrained weights")
    return 0


def cmd_early_bird(ns) -> int:
    from . import plots
    from .find.early_bird import EarlyBird

    md, splits, model = _setup(ns)
    cfg = from_namespace(TrainConfig, ns)
    out = Path(ns.out) if ns.out else Path("runs") / f"earlybird-{md.model}-{md.dataset}-{run_hash(md, cfg)}"
    eb = EarlyBird(model, density=ns.eb_density, kind=ns.kind, window=ns.window, threshold=ns.threshold, l1=ns.l1)
    result = train(model, splits, cfg, out=out / "search", callbacks=[eb], device=ns.device, progress=not ns.quiet,
                   extra_hash={"model_data": to_dict(md), "early_bird": [ns.eb_density, ns.kind, ns.window,
                                                                           ns.threshold, ns.l1]})
    if result.get("loaded_from"):
        raise ValueError(f"{out}/search already finished; the early-bird detector's state lives only in a running "
                         f"search: delete {out} or pick another --out")
    if eb.drawn is None:
        print("no early-bird ticket: the masks kept changing until the end of the budget")
        return 1
    drawn = {k: v for k, v in eb.drawn.items() if k != "mask"}
    eb.drawn["mask"].save(out / "mask.safetensors")
    plots.mask_distance_matrix(eb.distance_matrix(), out / "mask_distance.png",
                               labels=[f"{c['epoch']:.1f}" for c in eb.checks])
    print(f"early-bird ticket drawn at iteration {drawn['iteration']} ({100 * drawn['fraction_of_budget']:.1f}% of "
          f"the budget); retraining it ({ns.retrain})")
    if ns.retrain == "scratch":
        model = models.create(md.model, md.activation, splits.input_shape, splits.num_classes,
                              init=md.init or None, seed=md.model_seed, device=ns.device)
    final = train(model, splits, cfg, mask=eb.drawn["mask"], out=out / "retrain", device=ns.device,
                  progress=not ns.quiet, extra_hash={"model_data": to_dict(md), "retrain": ns.retrain})
    final.pop("loaded_from", None)
    write_json(out / "result.json", {"kind": "early_bird", "drawn": drawn, "checks": eb.checks, "search": result,
                                     "retrain": final, "model_data": to_dict(md)})
    print(f"retrained ticket: test accuracy {final['final']['test_accuracy']:.4f}")
    return 0


def cmd_gfs(ns) -> int:
    from .find.gfs import GFSConfig, forward_time, gfs
    from .io import save_tensors
    from .training import evaluate

    torch.set_num_threads(ns.threads)
    target, splits = _load_target(ns)
    if splits is None:
        raise ValueError("gfs selects on training data: give a zoo model name as --target (trained on MNIST)")
    cfg = from_namespace(GFSConfig, ns)
    out = Path(ns.out)
    small, rec = gfs(target, splits, cfg, progress=not ns.quiet)
    dense_acc = evaluate(target, splits.test)["accuracy"]
    acc = evaluate(small, splits.test)["accuracy"]
    t_dense, t_small = forward_time(target, splits.test.x), forward_time(small, splits.test.x)
    save_tensors(out / "model.safetensors", {k: v.detach().cpu() for k, v in small.state_dict().items()},
                 {"kind": "weights", "widths": rec["widths"], "activation": ns.activation,
                  "layout": "nn.Sequential(Flatten, Linear, act, ..., Linear)"})
    write_json(out / "result.json", {"kind": "gfs", "target": ns.target, "config": to_dict(cfg), "selection": rec,
                                     "dense_test_accuracy": dense_acc, "test_accuracy": acc,
                                     "forward_s": {"dense": t_dense, "pruned": t_small}, "speedup": t_dense / t_small})
    print(f"GFS: widths {rec['widths']}; test accuracy {100 * acc:.2f}% (dense {100 * dense_acc:.2f}%); forward pass "
          f"{t_dense / t_small:.2f}x faster ({ns.threads} thread(s)); written to {out}")
    return 0


def cmd_study(ns) -> int:
    from .study import PretrainStudyConfig, run_study

    torch.set_num_threads(ns.threads)
    splits = data_mod.load(ns.dataset)
    res = run_study(splits, from_namespace(PretrainStudyConfig, ns), out=ns.out, plots_dir=ns.plots_dir or None,
                    workers=ns.workers)
    print(f"T*(m): {res['T_star']}; fitted slope {res['fit']['slope']:.1f} iterations per e-fold of m "
          f"(R^2 {res['fit']['r2']:.2f}); {res['wall_time_s']:.0f} s; results in {res['out']}")
    return 0


def cmd_plot(ns) -> int:
    from . import plots

    series: dict = {}
    for d in ns.runs:
        r = read_json(Path(d) / "result.json")
        rows = r.get("rounds") or [{"density": r.get("density", 1.0), "test_accuracy_at_min_val_loss":
                                    (r.get("min_val_loss") or r["final"])["test_accuracy"],
                                    "min_val_loss_iteration": r.get("min_val_loss_iteration")}]
        label = r.get("method") or r.get("kind") or Path(d).name
        key = "test_accuracy_at_min_val_loss" if ns.kind == "accuracy" else "min_val_loss_iteration"
        series.setdefault(label, []).extend((row["density"], row[key]) for row in rows)
    fn = plots.accuracy_vs_density if ns.kind == "accuracy" else plots.learning_speed_vs_density
    print(f"wrote {fn(series, ns.out, title=ns.title)}")
    return 0


def cmd_fetch(ns) -> int:
    data_mod.fetch(ns.name)
    return 0


def cmd_info(ns) -> int:
    path = Path(ns.path)
    if path.is_dir():
        path = path / "result.json"
    if path.suffix == ".json":
        r = read_json(path)
        print(json.dumps({k: v for k, v in r.items() if k != "history"}, indent=2))
        return 0
    _, meta = load_tensors(path)
    kind = meta.get("kind")
    if kind == "ticket":
        from .tickets import load_ticket
        t = load_ticket(path)
        print(f"ticket {path}: {t.arch['name']} ({t.arch.get('activation')}), seed {t.seed}, generator {meta['generator']}")
        print(json.dumps({**t.counts(), **t.file_report(path)}, indent=2))
        print(t.masks.report())
    elif kind == "mask":
        from .masks import Mask
        m = Mask.load(path)
        print(f"mask {path}: density {m.density:.4f}, sparsity {m.sparsity:.4f}")
        print(m.report())
    elif kind == "checkpoint":
        print(f"checkpoint {path}: iteration {meta['iteration']}, lotterylab {meta.get('lotterylab')}")
        if meta["history"]:
            print(json.dumps(meta["history"][-1], indent=2))
    else:
        raise FileFormatError(f"{path}: unknown lotterylab file kind {kind!r}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lotterylab", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("data", help="data sets")
    dsub = d.add_subparsers(dest="data_command", required=True)
    f = dsub.add_parser("fetch", help="make a data set available offline")
    f.add_argument("name", choices=["mnist", "fashion-mnist", "cifar10"])
    f.set_defaults(func=cmd_fetch)

    t = sub.add_parser("train", help="train a zoo model (default: LeNet-300-100 on MNIST, Frankle & Carbin protocol)")
    add_arguments(t, ModelDataConfig)
    add_arguments(t, TrainConfig)
    t.add_argument("--out", default="", help="run directory (default: runs/train-<model>-<data>-<hash>); reruns resume")
    t.add_argument("--threads", type=int, default=1, help="torch threads (default 1: steady on shared machines)")
    t.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)

    c = sub.add_parser("construct", help="construct a strong ticket of a fully connected target (partial: see docs)")
    c.add_argument("--target", default="lenet_300_100", help="zoo model (trained on MNIST once, cached) or a "
                                                              "safetensors state dict of a Linear chain")
    c.add_argument("--activation", default="relu", help="the target's activation")
    c.add_argument("--mode", default="L+1", choices=["L+1", "2L"])
    c.add_argument("--eps", type=float, default=0.01, help="bound on the output error over the domain")
    c.add_argument("--eps-param", type=float, default=0.0, help="per-parameter tolerance (papers' mode) instead of --eps")
    c.add_argument("--first-layer", default="", choices=["", "sign_trick", "linearize", "identity"])
    c.add_argument("--calibration", type=int, default=0,
                   help="paper mode: correct every bias for the mean error on this many training examples (0: off)")
    c.add_argument("--compensate", action="store_true",
                   help="with --calibration: later weights' subset-sum targets cancel earlier errors (GPTQ-style)")
    c.add_argument("--copy-objective", default="", choices=["", "min_cardinality", "min_l1", "min_error"],
                   help="subset choice in the L+1 copy layers (default: as the other layers)")
    c.add_argument("--low", type=float, default=-1.0, help="domain box (state-dict targets)")
    c.add_argument("--high", type=float, default=1.0)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--verify-samples", type=int, default=100_000, help="0: skip verification")
    c.add_argument("--attack-steps", type=int, default=200)
    c.add_argument("--threads", type=int, default=1)
    c.add_argument("--quiet", action="store_true")
    c.add_argument("--out", default="runs/construct", help="directory for ticket.safetensors and result.json")
    c.set_defaults(func=cmd_construct)

    from .find.edge_popup import EdgePopupConfig
    from .find.imp import IMPConfig
    from .find.pai import PaIConfig

    def common(sp, train_defaults=None):
        add_arguments(sp, ModelDataConfig)
        add_arguments(sp, TrainConfig, train_defaults)
        sp.add_argument("--out", default="", help="run directory (default: runs/<method>-<model>-<data>-<hash>)")
        sp.add_argument("--threads", type=int, default=1, help="torch threads")
        sp.add_argument("--device", default="cpu")
        sp.add_argument("--quiet", action="store_true")

    im = sub.add_parser("imp", help="iterative magnitude pruning with rewinding (resumable per round)")
    common(im)
    add_arguments(im, IMPConfig)
    im.add_argument("--control", default="none", choices=["none", "reinit", "random_mask"],
                    help="also train a control at every density")
    im.add_argument("--control-seed", type=int, default=1)
    im.set_defaults(func=cmd_imp)

    pa = sub.add_parser("pai", help="prune at initialisation (SNIP, GraSP, SynFlow, magnitude, random) and train")
    common(pa)
    add_arguments(pa, PaIConfig)
    pa.set_defaults(func=cmd_pai)

    ep = sub.add_parser("edge-popup", help="search a strong ticket on frozen random weights (writes a ticket file)")
    common(ep, TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4, batch_size=128, budget="20ep",
                           schedule="cosine"))
    add_arguments(ep, EdgePopupConfig)
    ep.add_argument("--widths", default="", help="hidden widths of the 'mlp' model, e.g. 600,200")
    ep.set_defaults(func=cmd_edge_popup)

    eb = sub.add_parser("early-bird", help="train with early-bird detection, then retrain the drawn ticket")
    common(eb)
    eb.add_argument("--eb-density", type=float, default=0.5, help="fraction of channels (or weights) kept")
    eb.add_argument("--kind", default="channel", choices=["channel", "magnitude"])
    eb.add_argument("--window", type=int, default=5)
    eb.add_argument("--threshold", type=float, default=0.1)
    eb.add_argument("--l1", type=float, default=1e-4, help="L1 penalty on BN scales (channel masks)")
    eb.add_argument("--retrain", default="scratch", choices=["scratch", "continue"])
    eb.set_defaults(func=cmd_early_bird)

    from .find.gfs import GFSConfig
    from .study import PretrainStudyConfig

    g = sub.add_parser("gfs", help="greedy forward selection of neurons of a trained MLP (physically smaller result)")
    g.add_argument("--target", default="lenet_300_100", help="zoo model, trained on MNIST once and cached")
    g.add_argument("--activation", default="relu")
    add_arguments(g, GFSConfig)
    g.add_argument("--threads", type=int, default=1)
    g.add_argument("--quiet", action="store_true")
    g.add_argument("--out", default="runs/gfs")
    g.set_defaults(func=cmd_gfs)

    st = sub.add_parser("study", help="experiments")
    stsub = st.add_subparsers(dest="study", required=True)
    pt = stsub.add_parser("pretraining", help="Wolfe et al.: pre-training needed before GFS finds a good subnetwork")
    add_arguments(pt, PretrainStudyConfig)
    pt.add_argument("--dataset", default="mnist", choices=list(data_mod.DATASETS))
    pt.add_argument("--out", default="runs/study-pretraining", help="cells and checkpoints (resumable)")
    pt.add_argument("--plots-dir", default="", help="where the PNGs go (default: the run folder)")
    pt.add_argument("--threads", type=int, default=1)
    pt.add_argument("--workers", type=int, default=2, help="processes (one subset size each, one thread each)")
    pt.set_defaults(func=cmd_study)

    pl = sub.add_parser("plot", help="accuracy or learning speed vs density for finished runs")
    pl.add_argument("runs", nargs="+", help="run directories holding result.json")
    pl.add_argument("--kind", default="accuracy", choices=["accuracy", "speed"])
    pl.add_argument("--title", default="")
    pl.add_argument("--out", default="runs/plot.png")
    pl.set_defaults(func=cmd_plot)

    i = sub.add_parser("info", help="summarise a ticket, mask, checkpoint or result file")
    i.add_argument("path")
    i.set_defaults(func=cmd_info)
    return p


def main(argv=None) -> int:
    ns = build_parser().parse_args(argv)
    try:
        return ns.func(ns)
    except (data_mod.DataError, FileFormatError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
