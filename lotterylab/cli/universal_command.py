"""``universal``: a universal ticket, its readout on a batch of random tasks, optionally a real task."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..hparams import from_namespace, to_dict
from .options import RunFolder, print_finished, stage, start


@dataclass
class UniversalConfig:
    family: str = field(default="poly", metadata={"help": "function family: poly (monomials via log-linear-exp), "
                                                          "fourier (sin/cos), lipschitz (ReLU features)",
                                                  "choices": ["poly", "fourier", "lipschitz"]})
    dim: int = field(default=2, metadata={"help": "input coordinates", "check": "positive"})
    degree: int = field(default=0, metadata={"help": "--family poly: total degree (0: 4)", "check": "nonneg"})
    frequencies: int = field(default=0, metadata={"help": "--family fourier: highest frequency per coordinate (0: 2)",
                                                  "check": "nonneg"})
    breakpoints: int = field(default=0, metadata={
        "help": "--family lipschitz: pieces per coordinate (0: from --eps and --lipschitz)", "check": "nonneg"})
    lipschitz: float = field(default=1.0, metadata={"help": "--family lipschitz: Lipschitz constant of the family "
                                                            "(and of the random tasks)", "check": "positive"})
    eps: float = field(default=0.01, metadata={"help": "guaranteed sup readout error over the family's unit ball",
                                               "check": "rate"})
    low: float = field(default=0.0, metadata={"help": "domain box [low, high]^dim"})
    high: float = field(default=1.0, metadata={"help": "upper end of the domain box"})
    objective: str = field(default="min_cardinality", metadata={
        "help": "subset-sum objective (min_cardinality: fewest kept weights)",
        "choices": ["min_cardinality", "min_l1", "min_error"]})
    source_seed: int = field(default=0, metadata={"help": "seed of the random source network", "check": "nonneg"})
    seed: int = field(default=0, metadata={"help": "seed of the random tasks, samples and PCA subsample",
                                           "check": "nonneg"})
    tasks: int = field(default=1000, metadata={"help": "random tasks of the family in the readout check (0: skip)",
                                               "check": "nonneg"})
    fit_points: int = field(default=4000, metadata={"help": "random points each readout is fitted on",
                                                    "check": "positive"})
    ridge: float = field(default=0.0, metadata={"help": "ridge of the task readouts (relative)", "check": "nonneg"})


FAMILY_FLAGS = {"degree": "poly", "frequencies": "fourier", "breakpoints": "lipschitz"}


def check(cfg: UniversalConfig, ns) -> dict:
    """Every flag honoured or refused, before any work; returns construct_universal's arguments."""
    from ..universal.families import check as check_basis

    dataset = ns.dataset
    if not cfg.tasks and (cfg.ridge or cfg.fit_points != UniversalConfig.fit_points):
        raise ValueError("--ridge and --fit-points shape the task readouts; with --tasks 0 there are none: drop them")
    if not cfg.tasks and dataset == "none" and cfg.seed:
        raise ValueError("--seed draws the random tasks and the PCA sample; with --tasks 0 and no --dataset nothing "
                         "is drawn: drop it")
    if dataset == "none" and (ns.data_root or ns.val_size != 5000 or not ns.verify):
        raise ValueError("--data-root, --val-size and --no-verify are for --dataset mnist|fashion-mnist; drop them "
                         "or name the data set")

    for flag, fam in FAMILY_FLAGS.items():
        if getattr(cfg, flag) and cfg.family != fam:
            raise ValueError(f"--{flag} is for --family {fam}, not {cfg.family}; drop it")
    if cfg.lipschitz != 1.0 and cfg.family != "lipschitz":
        raise ValueError(f"--lipschitz is for --family lipschitz, not {cfg.family}; drop it")
    kw = {"degree": cfg.degree or 4} if cfg.family == "poly" else \
        {"frequencies": cfg.frequencies or 2} if cfg.family == "fourier" else \
        {"breakpoints": cfg.breakpoints or None, "lipschitz": cfg.lipschitz}
    check_basis(cfg.family, cfg.dim, kw.get("degree"), kw.get("frequencies"), kw.get("breakpoints"),
                (cfg.low, cfg.high), cfg.eps)
    if dataset != "none" and cfg.dim > 64:
        raise ValueError(f"--dataset projects images onto --dim principal components; {cfg.dim} > 64 is not a "
                         f"projection worth a universal basis")
    return kw


def cmd_universal(ns) -> int:
    from .. import data as data_mod
    from ..universal import construct_universal
    from ..universal.demo import classification, task_batch
    from ..universal.report import curves, figures, summary

    start(ns)
    cfg = from_namespace(UniversalConfig, ns)
    kw = check(cfg, ns)
    run = RunFolder(ns, "universal", [cfg.family, f"d{cfg.dim}"])
    done = run.check()
    if done is not None:
        print_finished(done, run.path)
        return 0
    splits = None
    if ns.dataset != "none":
        splits = data_mod.load(ns.dataset, root=ns.data_root or None, val_size=ns.val_size,
                               verify=ns.verify)  # files checked first
    stage(ns, f"universal {cfg.family} ticket, dim {cfg.dim}, eps {cfg.eps}")
    ut = construct_universal(cfg.family, cfg.dim, eps=cfg.eps, seed=cfg.source_seed, domain=(cfg.low, cfg.high),
                             objective=cfg.objective, **kw)
    path = ut.save(run.path / "ticket.safetensors")
    result = {"kind": "universal", "config": to_dict(cfg), "dataset": ns.dataset, "report": ut.report,
              "ticket_file": ut.ticket.file_report(path), "curves": curves(ut)}
    if cfg.tasks:
        stage(ns, f"{cfg.tasks} random tasks: one least-squares readout each")
        result["task_batch"] = task_batch(ut, cfg.tasks, cfg.seed, cfg.fit_points, ridge=cfg.ridge,
                                          lipschitz=cfg.lipschitz)
    if splits is not None:
        stage(ns, f"{ns.dataset}: PCA to {cfg.dim} components, linear readouts")
        result["classification"] = classification(ut, splits, cfg.seed)
        result["data"] = splits.describe()
    figures(result, run.path)
    run.finish(result, summary(result) + [f"ticket, result.json and figures in {run.path}"])
    return 0
