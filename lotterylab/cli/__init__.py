"""``lotterylab`` command line: a thin layer over the library API, its flags generated from the
same config dataclasses the library takes (one vocabulary: see the README's table)."""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from .. import __version__
from .. import data as data_mod
from ..executors import WorkerLost
from ..hparams import CHECKS, DeprecatedAlias, add_arguments
from ..io import FileFormatError
from ..training import TrainConfig
from .options import ModelDataConfig, add_data_options, add_executor_options, add_run_options


def _trainer(sub, name: str, help_: str, train_defaults=None, exclude=()):
    sp = sub.add_parser(name, help=help_)
    add_arguments(sp, ModelDataConfig, exclude=exclude)
    add_arguments(sp, TrainConfig, train_defaults)
    add_run_options(sp)
    return sp


def build_parser() -> argparse.ArgumentParser:
    from ..find.edge_popup import PAPER_TRAINING, EdgePopupConfig
    from ..find.gfs import GFSConfig
    from ..find.imp import IMPConfig
    from ..find.pai import PaIConfig
    from ..planted_study import PlantedStudyConfig
    from ..study import PretrainStudyConfig
    from . import construct_commands as cc
    from . import file_commands as fc
    from . import sweep_command
    from . import train_commands as tc
    from .targets import TargetConfig

    p = argparse.ArgumentParser(prog="lotterylab", description=__doc__)
    p.add_argument("--version", action="version", version=f"lotterylab {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("data", help="data sets")
    dsub = d.add_subparsers(dest="data_command", required=True)
    f = dsub.add_parser("fetch", help="make a data set available offline")
    f.add_argument("name", choices=["mnist", "fashion-mnist", "cifar10"])
    f.set_defaults(func=fc.cmd_fetch)

    t = _trainer(sub, "train", "train a model (default: LeNet-300-100 on MNIST, Frankle & Carbin protocol)")
    t.set_defaults(func=tc.cmd_train)

    c = sub.add_parser("construct", help="construct a strong ticket of a target by pruning a random source")
    add_arguments(c, TargetConfig)
    add_arguments(c, cc.ConstructConfig)
    add_run_options(c, device=False)
    add_executor_options(c, what="large batches of subset sums (the ticket is the same on each)")
    c.set_defaults(func=cc.cmd_construct)

    im = _trainer(sub, "imp", "iterative magnitude pruning with rewinding (resumable per round)")
    add_arguments(im, IMPConfig)
    im.add_argument("--control", default="none", choices=["none", "reinit", "random_mask"],
                    help="also train a control at every density")
    im.add_argument("--control-seed", type=CHECKS["nonneg"](int), default=1)
    im.set_defaults(func=tc.cmd_imp)

    pa = _trainer(sub, "pai", "prune at initialisation (SNIP, GraSP, SynFlow, magnitude, random) and train")
    add_arguments(pa, PaIConfig)
    pa.set_defaults(func=tc.cmd_pai)

    ep = _trainer(sub, "edge-popup", "search a strong ticket on frozen random weights (writes a ticket file)",
                  PAPER_TRAINING, exclude=("init", "model_seed"))
    add_arguments(ep, EdgePopupConfig)
    ep.set_defaults(func=tc.cmd_edge_popup)

    eb = _trainer(sub, "early-bird", "train with early-bird detection, then retrain the drawn ticket")
    g = eb.add_argument_group("EarlyBird")
    dens = CHECKS["rate"](float)
    g.add_argument("--density", dest="eb_density", type=dens, default=0.5,
                   help="fraction of channels (channel masks) or weights (magnitude masks) kept (default: 0.5)")
    g.add_argument("--eb-density", dest="eb_density", type=dens, action=DeprecatedAlias, new_flag="--density",
                   help=argparse.SUPPRESS)
    g.add_argument("--kind", default="auto", choices=["auto", "channel", "magnitude"],
                   help="channel (BN scales; models with BatchNorm), magnitude, or auto: channel when the model "
                        "has BatchNorm (default: auto)")
    g.add_argument("--window", type=CHECKS["positive"](int), default=5, help="masks compared (default: 5)")
    g.add_argument("--threshold", type=CHECKS["positive"](float), default=0.1,
                   help="largest normalised Hamming distance within the window (default: 0.1)")
    g.add_argument("--l1", type=CHECKS["nonneg"](float), default=1e-4, help="L1 penalty on BN scales (channel masks)")
    g.add_argument("--retrain", default="scratch", choices=["scratch", "continue"])
    eb.set_defaults(func=tc.cmd_early_bird)

    gf = sub.add_parser("gfs", help="greedy forward selection of neurons / filters (physically smaller result)")
    add_arguments(gf, TargetConfig)
    add_arguments(gf, GFSConfig)
    add_run_options(gf, device=False)
    gf.set_defaults(func=cc.cmd_gfs)

    st = sub.add_parser("study", help="experiments")
    stsub = st.add_subparsers(dest="study", required=True)
    pt = stsub.add_parser("pretraining", help="Wolfe et al.: pre-training needed before GFS finds a good subnetwork")
    add_arguments(pt, PretrainStudyConfig)
    pt.add_argument("--dataset", default="mnist", choices=list(data_mod.DATASETS))
    pt.add_argument("--plots-dir", default="", help="where the PNGs go (default: the run folder)")
    add_executor_options(pt, default="processes", what="subset sizes (one thread each)")
    add_run_options(pt, device=False, out_help="run folder (default: runs/study-pretraining-<model>-<data>-<hash of "
                                               "what the cells depend on>); a rerun reuses every finished cell")
    pt.set_defaults(func=cc.cmd_study)
    pl = stsub.add_parser("planted", help="every finder on planted tickets of several families and activations: "
                                          "do they recover them?")
    add_arguments(pl, PlantedStudyConfig)
    add_data_options(pl, ["mnist", "fashion-mnist"], "mnist", "images (average-pooled to 7x7) the targets learn and "
                     "the teachers label", "training examples held out for validation")
    pl.add_argument("--plots-dir", default="", help="where the PNGs go (default: the run folder)")
    add_executor_options(pl, default="processes", what="the cells (one thread each)")
    add_run_options(pl, device=False, out_help="run folder (default: runs/study-planted-<task>-<data>-<hash of what "
                                               "the cells depend on>); a rerun reuses every finished cell")
    pl.set_defaults(func=cc.cmd_study_planted)

    from .universal_command import UniversalConfig, cmd_universal

    un = sub.add_parser("universal", help="a universal ticket: one pruned random network whose features serve a "
                                          "function family through a linear readout")
    add_arguments(un, UniversalConfig)
    add_data_options(un, ["none", "mnist", "fashion-mnist"], "none", "also a real task: images projected by PCA onto "
                     "--dim components, linear readouts on the ticket, the raw projection, the unpruned source and "
                     "random features", "training examples held out to pick the readout's ridge")
    add_run_options(un, device=False)
    un.set_defaults(func=cmd_universal)

    from ..sweep import COMMANDS as SWEEPABLE
    sw = sub.add_parser("sweep", help="a grid of runs of any command, resumable, on serial / processes / ray",
                        description="lotterylab sweep [sweep options] COMMAND [the command's fixed flags]: the "
                                    "sweep's own options come before the command")
    sw.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                    help="a flag of the command and its values (repeat for more keys; the cells are the product)")
    sw.add_argument("--spec", default="", help="a sweep file instead: JSON (YAML with PyYAML) with command, grid, args")
    add_executor_options(sw, what="the cells")
    add_run_options(sw, device=False, out_help="sweep folder (default: runs/sweep-<command>-<hash of the fixed flags>; "
                                               "a rerun reuses every finished cell)")
    sw.add_argument("sweep_command", nargs="?", choices=SWEEPABLE, metavar="COMMAND",
                    help=f"one of {', '.join(SWEEPABLE)} (or from --spec)")
    sw.add_argument("args", nargs=argparse.REMAINDER, help="the command's flags, the same in every cell")
    sw.set_defaults(func=sweep_command.cmd_sweep)

    pl = sub.add_parser("plot", help="accuracy or learning speed vs density for finished runs")
    pl.add_argument("runs", nargs="+", help="run folders (or their result.json)")
    pl.add_argument("--kind", default="accuracy", choices=["accuracy", "speed"])
    pl.add_argument("--title", default="", help="default: the methods, models and data sets")
    pl.add_argument("--out", default="", help="folder the figure is written into (default: runs/plot)")
    pl.set_defaults(func=fc.cmd_plot)

    ex = sub.add_parser("export", help="a ticket or trained run as plain and torch.nn.utils.prune state dicts")
    ex.add_argument("path", help="a run folder (train, pai, imp, early-bird) or a ticket file")
    ex.add_argument("--out", required=True, help="folder for model.safetensors, prune_state_dict.safetensors, "
                                                 "mask.safetensors and export.json")
    ex.set_defaults(func=fc.cmd_export)

    i = sub.add_parser("info", help="summarise any file or run folder lotterylab writes")
    i.add_argument("path")
    i.add_argument("--json", action="store_true", help="the full record as JSON")
    i.set_defaults(func=fc.cmd_info)
    return p


def main(argv=None) -> int:
    ns = build_parser().parse_args(argv)
    ns.argv = list(argv) if argv is not None else sys.argv[1:]
    warnings.filterwarnings("ignore", category=FutureWarning, module="lotterylab.hparams")  # printed once already
    try:
        return ns.func(ns)
    except (data_mod.DataError, FileFormatError, FileNotFoundError, ValueError, WorkerLost) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `lotterylab info ... | head`: the reader left; not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
