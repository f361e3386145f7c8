"""What every command shares: the model/data settings, common flags, value checks and run folders.

One vocabulary (README, "Command-line vocabulary"): ``--density`` is the fraction kept,
``--model-seed`` draws a model's initial weights, ``--source-seed`` a construction's random
source, ``--seed`` the data order and other sampling, ``--batch-size`` examples per step,
``--out`` a run folder that a rerun resumes or returns, never one it overwrites.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import __version__, models
from .. import data as data_mod
from ..hparams import CHECKS, run_hash
from ..io import read_json, remove_stale_tmp, write_json
from ..threads import set_threads

# flags that change how a run is carried out or shown, not what it computes: left out of its hash
PRESENTATION = {"func", "out", "quiet", "threads", "device", "command", "data_command", "study", "json", "argv",
                "executor", "workers"}


@dataclass
class ModelDataConfig:
    model: str = field(default="lenet_300_100", metadata={
        "help": f"zoo model ({', '.join(models.names())}) or your own: path/to/file.py:factory (a function or "
                f"class returning an nn.Module; torch's RNG is seeded with --model-seed before it is called)"})
    activation: str = field(default="relu", metadata={"help": "activation", "choices": list(models.ACTIVATIONS)})
    init: str = field(default="", metadata={"help": "init scheme (empty: the model's literature default)"})
    model_seed: int = field(default=0, metadata={"help": "seed of the initial weights", "check": "nonneg"})
    widths: str = field(default="", metadata={"help": "hidden widths of the 'mlp' model, e.g. 600,200"})
    batch_norm: bool = field(default=False, metadata={"help": "BatchNorm after each conv (conv2/4/6)"})
    dataset: str = field(default="mnist", metadata={"help": "data set", "choices": list(data_mod.DATASETS)})
    data_root: str = field(default="", metadata={"help": "directory of the data set files (CIFAR-10; your own MNIST "
                                                         "or Fashion-MNIST IDX files)"})
    view: str = field(default="", metadata={"help": "'32x32x3' to pad and repeat MNIST-type images; '7x7x1' to "
                                                   "average-pool them 4x4 (49 inputs)"})
    val_size: int = field(default=5000, metadata={"help": "training examples held out for validation",
                                                  "check": "positive"})
    split_seed: int = field(default=0, metadata={"help": "seed of the validation split", "check": "nonneg"})
    verify: bool = field(default=True, metadata={"help": "check the data files' SHA-256 (--no-verify: your own "
                                                         "files in the standard format)"})


def model_kwargs(md: ModelDataConfig) -> dict:
    kw = {}
    if md.widths:
        try:
            kw["widths"] = [int(w) for w in md.widths.split(",")]
        except ValueError:
            raise ValueError(f"--widths {md.widths!r}: give positive integers separated by commas, e.g. 600,200") from None
        if min(kw["widths"]) < 1:
            raise ValueError(f"--widths {md.widths!r}: every width must be >= 1")
    if md.batch_norm:
        kw["batch_norm"] = True
    return kw


def load_data(md: ModelDataConfig, device=None):
    return data_mod.load(md.dataset, root=md.data_root or None, val_size=md.val_size, seed=md.split_seed,
                         view=md.view or None, device=device, verify=md.verify)


def build_model(md: ModelDataConfig, splits, device=None, seed: int | None = None, init=None):
    """The command's model: a zoo model or the user's factory (``file.py:name``)."""
    from .targets import is_factory, load_factory

    seed = md.model_seed if seed is None else seed
    if is_factory(md.model):
        if md.init:
            raise ValueError(f"--init {md.init!r} applies to zoo models; {md.model} initialises its own weights "
                             f"(seeded with --model-seed)")
        torch.manual_seed(seed)
        model = load_factory(md.model)()
        return model.to(device) if device is not None else model
    return models.create(md.model, md.activation, splits.input_shape, splits.num_classes,
                         init=init if init is not None else (md.init or None), seed=seed, device=device,
                         **model_kwargs(md))


def check_device(name: str) -> str:
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {name!r} is not a device; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: this torch build ({torch.__version__}) has no usable CUDA device; "
                         f"use --device cpu or install a CUDA build of torch")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {name}: lotterylab runs on cpu or cuda")
    return name


def add_run_options(p: argparse.ArgumentParser, device: bool = True, out_help: str = "") -> None:
    g = p.add_argument_group("run")
    g.add_argument("--out", default="", help=out_help or "run folder (default: runs/<command>-...-<hash of the "
                                                         "settings>); a rerun resumes it or returns the finished run")
    g.add_argument("--threads", type=CHECKS["positive"](int), default=1,
                   help="torch (and numba) threads (default 1: steady on shared machines)")
    if device:
        g.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    g.add_argument("--quiet", action="store_true", help="no progress bars or stage messages")


def add_data_options(p: argparse.ArgumentParser, choices, default: str, dataset_help: str, val_help: str) -> None:
    """``--dataset``, ``--data-root``, ``--val-size``, ``--verify``: the MNIST-type images a command reads."""
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default=default, choices=list(choices), help=f"{dataset_help} (default: {default})")
    g.add_argument("--data-root", default="", help="directory of the data set files")
    g.add_argument("--val-size", type=CHECKS["positive"](int), default=5000, help=f"{val_help} (default: 5000)")
    g.add_argument("--verify", action=argparse.BooleanOptionalAction, default=True,
                   help="check the data files' SHA-256 (--no-verify: your own files in the standard format)")


def add_executor_options(p: argparse.ArgumentParser, default: str = "serial", workers: int | None = None,
                         what: str = "independent pieces of work") -> None:
    """``--executor`` / ``--workers``: where a command's parallel work runs (lotterylab.executors)."""
    from ..executors import EXECUTORS

    g = p.add_argument_group("executor")
    g.add_argument("--executor", default=default, choices=list(EXECUTORS),
                   help=f"where {what} run: serial (this process), processes (a local pool) or ray (RAY_ADDRESS, "
                        f"else a local Ray cluster; pip install 'lotterylab[ray]') (default: {default})")
    g.add_argument("--workers", type=CHECKS["positive"](int), default=workers,
                   help="processes, or CPUs of the local Ray cluster (default: " +
                        (f"{workers})" if workers else "every core)"))


def settings(ns) -> dict:
    """The flags that define what a run computes (its hash), as given."""
    return {k: v for k, v in sorted(vars(ns).items()) if k not in PRESENTATION}


class RunFolder:
    """``--out``: resumed when it holds this run, returned when finished, refused when it holds another.

    ``run.json`` (written when a run starts) names the command and its settings; ``result.json``
    is written last. A folder holding anything else of lotterylab's is never overwritten.
    """

    def __init__(self, ns, command: str, name_parts=(), key: dict | None = None):
        self.command = command
        self.settings = settings(ns)
        self.full_hash = run_hash({"command": command, "settings": self.settings})
        # ``key``: what identifies the folder when it is less than every flag (the study's cells)
        self.hash = run_hash({"command": command, "key": key}) if key is not None else self.full_hash
        default = Path("runs") / "-".join([command, *[str(p) for p in name_parts if p], self.hash])
        self.path = Path(ns.out) if ns.out else default
        self.quiet = getattr(ns, "quiet", False)
        self.argv = getattr(ns, "argv", sys.argv[1:])  # (cli.main sets it: a sweep runs commands in-process)
        # where its parallel work ran (commands with --executor): not in the hash, recorded in the result
        self.ran_on = {k: getattr(ns, k) for k in ("executor", "workers") if hasattr(ns, k)}

    def check(self) -> dict | None:
        """Before any work: the finished result if this run is done, else None; errors if refused."""
        p = self.path
        if p.exists() and not p.is_dir():
            raise ValueError(f"--out {p} is a file; --out names a run folder: choose a folder path")
        started = p / "run.json"
        if started.exists():
            rec = read_json(started)
            if rec.get("settings_hash") != self.hash:  # (a finished run also records "full_hash")
                diff = _diff(rec.get("settings", {}), self.settings)
                raise ValueError(f"--out {p} holds another run ({rec.get('command')}; differs in {diff}); choose "
                                 f"another --out or delete that folder")
            if (p / "result.json").exists():
                res = read_json(p / "result.json")
                if res.get("run", {}).get("full_hash", res.get("run", {}).get("settings_hash")) == self.full_hash:
                    return res
        elif p.is_dir() and any(p.iterdir()):
            raise ValueError(f"--out {p} is not empty and holds no lotterylab run of this version; choose another "
                             f"--out or delete its contents")
        p.mkdir(parents=True, exist_ok=True)
        _probe_writable(p)
        remove_stale_tmp(p)
        write_json(started, {"command": self.command, "settings": self.settings, "settings_hash": self.hash,
                             "lotterylab": __version__})
        return None

    def finish(self, result: dict, summary: list[str]) -> dict:
        result = dict(result)
        result["run"] = {"command": self.command, "settings": self.settings, "settings_hash": self.hash,
                         "full_hash": self.full_hash,
                         "threads": torch.get_num_threads(), "summary": summary, "lotterylab": __version__,
                         "argv": self.argv, **self.ran_on}
        write_json(self.path / "result.json", result)
        for line in summary:
            print(line)
        return result


def _diff(a: dict, b: dict) -> str:
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return ", ".join(f"{k} ({a.get(k)!r} there, {b.get(k)!r} now)" for k in keys[:4]) or "the command"


def _probe_writable(p: Path) -> None:
    probe = p / ".lotterylab-write-test.tmp"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ValueError(f"--out {p} is not writable ({e.strerror}); choose a folder you can write") from None


def print_finished(res: dict, path: Path) -> None:
    for line in res.get("run", {}).get("summary", []):
        print(line)
    print(f"(finished run loaded from {path}; nothing recomputed)")


_STARTED = [time.perf_counter()]


def stage(ns, text: str) -> None:
    """A stage message for a long command (stderr, so stdout stays the summary), with the seconds
    since the command started."""
    if not getattr(ns, "quiet", False):
        print(f"[lotterylab {time.perf_counter() - _STARTED[0]:6.1f} s] {text}", file=sys.stderr, flush=True)


def start(ns) -> None:
    """Threads and device, checked and set before any work."""
    _STARTED[0] = time.perf_counter()
    set_threads(ns.threads)
    if hasattr(ns, "device"):
        check_device(ns.device)


def pct(x) -> str:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return "n/a"
    return f"{100 * x:.2f}%"


def dumps(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)
