"""``data fetch``, ``info`` and ``plot``: commands on data sets and on what other commands wrote."""

from __future__ import annotations

import json
from pathlib import Path

from .. import data as data_mod
from ..io import FileFormatError, finite_json, load_tensors, read_json, regular_file
from .options import pct

MAX_JSON_BYTES = 64 << 20


def cmd_fetch(ns) -> int:
    data_mod.fetch(ns.name)
    return 0


# --- info ---------------------------------------------------------------------------------------

def summarize_result(r: dict) -> list[str]:
    """A few lines about any result.json lotterylab writes."""
    run = r.get("run", {})
    kind = r.get("kind", run.get("command", "?"))
    md = r.get("model_data") or {}
    lines = [f"{kind} run" + (f" ({run.get('command')})" if run.get("command") else "")
             + (f": {md.get('model')} ({md.get('activation')}) on {md.get('dataset')}" if md else "")]
    if kind == "imp":
        for row in r.get("rounds", []):
            lines.append(f"  round {row['round']}: density {pct(row['density'])}, test accuracy "
                         f"{pct(row['test_accuracy_at_min_val_loss'])}")
    elif kind == "construct":
        rep = r.get("report", {})
        p = rep.get("parameters", {})
        lines.append(f"  {rep.get('mode')} ticket of {r.get('target', {}).get('target')}: {p.get('ticket', 0):,} of "
                     f"{p.get('source', 0):,} source parameters; certificate {rep.get('certificate', float('nan')):.3g}")
        if rep.get("test"):
            t = rep["test"]
            lines.append(f"  test: target {pct(t['target_accuracy'])}, ticket {pct(t['ticket_accuracy'])}, agreement "
                         f"{pct(t['agreement'])}")
    elif kind == "gfs":
        lines.append(f"  widths {r['selection']['widths']}; test accuracy {pct(r.get('test_accuracy'))} (dense "
                     f"{pct(r.get('dense_test_accuracy'))}); forward {r.get('speedup', 0):.2f}x faster")
    elif kind == "study_pretraining":
        lines.append(f"  T*(m) {r.get('T_star')}; fit {r.get('fit')}")
    elif kind == "study_planted":
        lines.append(f"  {len(r['rows'])} cells on {len(r['problems'])} planted problems ({r['config']['task']}); "
                     f"table.csv and heat maps in the run folder")
        from ..planted_study import summary_lines

        lines += ["  " + line for line in summary_lines(r)]
    elif kind == "universal":
        from ..universal.report import summary

        lines += summary(r)
    elif kind == "sweep":
        lines[0] = f"sweep of {r['cells']} {r['command']} cells over {', '.join(r['grid'])} on {r['executor']['executor']}"
        lines.append(f"  {r['ran']} ran, {r['reused']} finished before, {len(r['failed'])} failed; table: table.csv")
    else:
        final = r.get("final") or {}
        if r.get("density") is not None:
            lines.append(f"  density {pct(r['density'])}")
        if final:
            lines.append(f"  final test accuracy {pct(final.get('test_accuracy'))} at iteration {final.get('iteration')}")
        if r.get("min_val_loss_iteration") is not None:
            lines.append(f"  min validation loss at iteration {r['min_val_loss_iteration']}")
    if run:
        lines.append(f"  threads {run.get('threads')}; lotterylab {run.get('lotterylab')}")
    return lines


def _info_tensors(path: Path) -> list[str]:
    _, meta = load_tensors(path)
    kind = meta.get("kind")
    if kind == "ticket":
        from ..tickets import load_ticket
        t = load_ticket(path)
        c = {**t.counts(), **t.file_report(path)}
        return [f"ticket {path}: {t.arch.get('name')} ({t.arch.get('activation')}), seed {t.seed}, generator "
                f"{meta.get('generator')}",
                f"  {c['ticket_parameters']:,} of {c['source_parameters']:,} parameters kept (density "
                f"{pct(c['density'])}); file {c['file_bytes']:,} bytes, bits_per_source_parameter "
                f"{c['bits_per_source_parameter']:.3f}", t.masks.report()]
    if kind == "mask":
        from ..masks import Mask
        m = Mask.load(path)
        return [f"mask {path}: density {m.density:.4f}, sparsity {m.sparsity:.4f}", m.report()]
    if kind == "checkpoint":
        from ..training import check_checkpoint
        tensors, _ = load_tensors(path, kind="checkpoint")
        check_checkpoint(tensors, meta, path)
        hist = meta.get("history")
        last = hist[-1] if isinstance(hist, list) and hist and isinstance(hist[-1], dict) else {}
        return [f"checkpoint {path}: iteration {meta.get('iteration')}, lotterylab {meta.get('lotterylab')}",
                f"  last evaluation: test accuracy {pct(last.get('test_accuracy'))}, validation loss "
                f"{last.get('val_loss')}"]
    if kind == "weights":
        tensors, _ = load_tensors(path, kind="weights")
        if "arch" in meta:  # it can be rebuilt: check that it is
            from ..runs import load_weights
            load_weights(path)
        n = sum(v.numel() for v in tensors.values())
        extra = {k: v for k, v in meta.items() if k in ("iteration", "widths", "activation", "layout", "source")}
        return [f"weights {path}: {len(tensors)} tensors, {n:,} values" + (f"; {extra}" if extra else "")]
    raise FileFormatError(f"{path}: unknown lotterylab file kind {kind!r}")


def cmd_info(ns) -> int:
    path = Path(ns.path)
    if path.is_dir():
        if (path / "sweep.json").exists() and not (path / "result.json").exists():
            path = path / "sweep.json"
        elif not (path / "result.json").exists():
            files = sorted(p.name for p in path.iterdir())[:20]
            raise FileFormatError(f"{path}: no result.json (an unfinished or foreign folder); it holds {files}")
        else:
            path = path / "result.json"
    regular_file(path)
    if path.suffix == ".json":
        if path.stat().st_size > MAX_JSON_BYTES:
            raise FileFormatError(f"{path}: {path.stat().st_size:,} bytes, larger than any lotterylab result")
        r = read_json(path)
        if not isinstance(r, dict):
            raise FileFormatError(f"{path}: not a lotterylab result (top level is {type(r).__name__})")
        if ns.json:
            print(json.dumps(finite_json(r), indent=2, sort_keys=True))
            return 0
        try:
            lines = summarize_result(r)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError):
            raise FileFormatError(f"{path}: a result of unexpected structure (edited or from another tool); "
                                  f"`lotterylab info --json` shows it whole") from None
        print("\n".join(lines))
        return 0
    lines = _info_tensors(path)
    if ns.json:
        _, meta = load_tensors(path)
        print(json.dumps(meta, indent=2, sort_keys=True))
    else:
        print("\n".join(lines))
    return 0


# --- plot ---------------------------------------------------------------------------------------

def _points(r: dict, which: str, name: str) -> list[tuple[float, float]]:
    """(density, accuracy or learning speed) of one result; a clear error for kinds without them."""
    kind = r.get("kind")
    if kind == "imp":
        key = "test_accuracy_at_min_val_loss" if which == "accuracy" else "min_val_loss_iteration"
        return [(row["density"], row[key]) for row in r["rounds"]]
    if kind in ("train", "pai", "edge_popup", "early_bird"):
        best = r.get("min_val_loss") or r.get("final")
        if best is None:
            raise ValueError(f"{name}: the run has no evaluation to plot")
        return [(r.get("density") or 1.0, best["test_accuracy"] if which == "accuracy" else best["iteration"])]
    if kind in ("gfs", "construct"):
        if which != "accuracy":
            raise ValueError(f"{name}: a {kind} result has no training curve, so no learning speed; use --kind accuracy")
        if kind == "gfs":
            return [(r["density"], r["test_accuracy"])]
        rep = r["report"]
        if not rep.get("test"):
            raise ValueError(f"{name}: this construction was not evaluated on a test set (file target without data); "
                             f"plot it alone to get its construction figure")
        return [(rep["parameters"]["ticket"] / rep["parameters"]["source"], rep["test"]["ticket_accuracy"])]
    raise ValueError(f"{name}: plot draws accuracy / learning speed against density for train, imp, pai, edge-popup, "
                     f"early-bird, gfs and construct results; plot a {kind!r} result alone to redraw its own figures")


def _own_figures(r: dict, out: Path) -> list[Path]:
    """Results without density/accuracy points get their own figures redrawn (study, construction)."""
    from .. import plots
    from ..study import parse_ints

    if r.get("kind") == "study_planted":
        from ..planted_report import write_report

        out.mkdir(parents=True, exist_ok=True)
        return write_report(r, out)
    if r.get("kind") == "universal":
        from ..universal.report import figures

        return figures(r, out)
    if r.get("kind") == "study_pretraining":
        cfg, cells = r["config"], r["cells"]
        sizes, its = parse_ints(cfg["sizes"]), parse_ints(cfg["iterations"])
        found = [(int(m), t) for m, t in r["T_star"].items() if t is not None]
        grid = [[next(c["pruned_train_loss"] for c in cells if c["m"] == m and c["t"] == t) for t in its] for m in sizes]
        return [plots.heatmap(grid, out / "pretraining_heatmap.png", [str(t) for t in its], [str(m) for m in sizes],
                              "pre-training iterations t", "training subset size m",
                              f"GFS-pruned train loss ({cfg['neurons']} of {cfg['width']} neurons)", "train loss"),
                plots.threshold_plot(found, r["fit"], r["bound"], cells, sizes, its, out / "pretraining_threshold.png",
                                     level=cfg["tol"] if cfg.get("rule") == "level" else None)]
    rep = r["report"]
    return [plots.construction(rep, out / "construction.png", rep.get("verify"), rep.get("test"))]


def cmd_plot(ns) -> int:
    from .. import plots

    out = Path(ns.out or "runs/plot")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; --out names a folder (the figure is written inside it)")
    if len(ns.runs) == 1:  # one result of a kind without density points: its own figures
        f = Path(ns.runs[0]) / "result.json" if Path(ns.runs[0]).is_dir() else Path(ns.runs[0])
        r = read_json(regular_file(f)) if f.exists() else {}
        own = r.get("kind") in ("study_pretraining", "study_planted", "universal")
        if own or (r.get("kind") == "construct" and not r["report"].get("test")):
            for p in _own_figures(r, out):
                print(f"wrote {p}")
            return 0
    series: dict = {}
    subjects = set()
    for d in ns.runs:
        p = Path(d)
        f = p / "result.json" if p.is_dir() else p
        if not f.exists():
            raise FileNotFoundError(f"{d}: no result.json (unfinished run?)")
        r = read_json(regular_file(f))
        label = r.get("method") or r.get("kind") or p.name
        series.setdefault(label, []).extend(_points(r, ns.kind, d))
        md = r.get("model_data") or {}
        if md:
            subjects.add(f"{md.get('model')} on {md.get('dataset')}")
    title = ns.title or f"{', '.join(series)}" + (f": {'; '.join(sorted(subjects))}" if subjects else "")
    name = "accuracy_vs_density.png" if ns.kind == "accuracy" else "learning_speed.png"
    fn = plots.accuracy_vs_density if ns.kind == "accuracy" else plots.learning_speed_vs_density
    print(f"wrote {fn(series, out / name, title=title)}")
    return 0


# --- export ---------------------------------------------------------------------------------------

def _run_mask(folder: Path, result: dict):
    """The mask a run folder's weights were trained under (None for dense runs)."""
    from ..masks import Mask

    kind = result.get("kind")
    if kind == "imp":
        masks = sorted(folder.glob("round_*/mask.safetensors"))
        return Mask.load(masks[-1]) if masks else None
    if (folder / "mask.safetensors").exists():
        return Mask.load(folder / "mask.safetensors")
    return None


def cmd_export(ns) -> int:
    """A ticket or a trained run as plain state dicts: pruned entries zero, and in
    ``torch.nn.utils.prune`` form (``<layer>.weight_orig`` + ``<layer>.weight_mask``)."""
    from ..io import save_tensors, write_json
    from ..masks import Mask
    from ..runs import load_run
    from ..tickets import load_ticket

    src = Path(ns.path)
    if src.is_dir():
        model, result = load_run(src)
        mask = _run_mask(src, result)
        what = f"{result.get('kind')} run {src}"
    else:
        ticket = load_ticket(src)
        model, mask, what = ticket.network(), ticket.masks, f"ticket {src}"
    if mask is None:
        mask = Mask.ones_like(model)
    out = Path(ns.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; --out names a folder")
    plain = {k: v.detach().cpu() for k, v in mask.apply(model).state_dict().items()}
    save_tensors(out / "model.safetensors", plain, {"kind": "weights", "arch": getattr(model, "lotterylab_arch", None),
                                                    "source": what})
    pruned = mask.to_prune(model)
    prune_form = {k: v.detach().cpu() for k, v in pruned.state_dict().items()}
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in prune_form.items()}, str(out / "prune_state_dict.safetensors"))
    mask.save(out / "mask.safetensors")
    write_json(out / "export.json", {
        "source": what, "density": mask.density,
        "files": {"model.safetensors": "the state dict, pruned entries exactly zero (lotterylab.runs.load_weights)",
                  "prune_state_dict.safetensors": "torch.nn.utils.prune form: <layer>.weight_orig and "
                                                  "<layer>.weight_mask; load it after prune.identity(layer, "
                                                  "'weight') on each masked layer",
                  "mask.safetensors": "the mask (lotterylab.Mask.load)"}})
    print(f"exported {what}: density {pct(mask.density)}; {out}/model.safetensors, prune_state_dict.safetensors, "
          f"mask.safetensors")
    return 0
