"""Sweeps: a grid of runs of any command, each cell its own resumable run folder, on any executor.

A cell is (key, function, arguments) whose result is written once, to a file the sweep can read
back (:class:`Cell`); :func:`run_cells` reads finished cells and runs the others on an executor
(:mod:`lotterylab.executors`: ``serial``, ``processes``, ``ray``). Re-submitting a sweep resumes
it: finished cells are read, not recomputed; a cell that was interrupted resumes inside its run
folder as that command resumes (training from its last checkpoint).

:func:`sweep` expands a grid over a CLI command (``train``, ``imp``, ``pai``, ``edge-popup``,
``early-bird``, ``gfs``, ``construct``), checks every cell's flags with that command's own parser
before any work, runs the cells into ``<out>/cells/<cell>`` and collects every ``result.json`` into
one table (``table.csv``, ``table.json``), plus accuracy-vs-density plots where the results have
both. The sweep folder is named by the command and its fixed flags, not the grid: extending a grid
reuses every finished cell.
"""

from __future__ import annotations

import contextlib
import csv
import difflib
import io
import itertools
import json
import re
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .hparams import run_hash
from .io import atomic_write_bytes, read_json, write_json

COMMANDS = ("train", "imp", "pai", "edge-popup", "early-bird", "gfs", "construct", "universal")
# result fields that say how long or where something ran, not what it computed: not in the table
_VOLATILE = re.compile(r"(time|seconds|wall|_s$|^threads$|loaded_from|speedup|forward_s)")
_SKIP = {"run", "versions", "data", "arch", "history", "config", "model_data", "layer_density", "checks", "rounds",
         "executor"}


@dataclass(frozen=True)
class Cell:
    """One unit of a sweep: ``fn(*args)`` writes ``result`` (a JSON file). ``fn`` must be a module-level
    function for the processes and ray executors (workers import it)."""

    key: str
    fn: Callable
    args: tuple
    result: Path
    done: Callable[[dict], bool] | None = None  # is a result file already there this cell's? (default: yes)

    def finished(self) -> dict | None:
        if not self.result.exists():
            return None
        res = read_json(self.result)
        return res if self.done is None or self.done(res) else None


def run_cells(cells: list[Cell], executor, progress: bool = True, desc: str = "sweep") -> dict[str, dict]:
    """Every cell's result, by key: finished ones read back, the others run on ``executor``.
    Returns what each cell's function returned beside its result: ``{key: {"result", "status"}}``."""
    out: dict[str, dict] = {}
    todo = []
    for c in cells:
        res = c.finished()
        if res is not None:
            out[c.key] = {"result": res, "status": "finished before"}
        else:
            todo.append(c)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(cells), initial=len(cells) - len(todo), desc=desc, unit="cell", dynamic_ncols=True)

    def done(i, ret):
        c = todo[i]
        res = c.finished()  # (a result file of something else, e.g. a refused folder's, is not this cell's)
        out[c.key] = {"result": res, "status": "ran" if res is not None else "failed", "return": ret}
        if bar is not None:
            bar.update(1)

    try:
        executor.map(_apply, [(c.fn, c.args) for c in todo], done)
    finally:
        if bar is not None:
            bar.close()
    return {c.key: out[c.key] for c in cells}


def _apply(fn, args):
    return fn(*args)


# --- sweeps over CLI commands -----------------------------------------------------------------
def expand(grid: dict[str, list[str]]) -> list[dict[str, str]]:
    """The cartesian product of the grid, in the order given (the last key varies fastest)."""
    keys = list(grid)
    return [dict(zip(keys, vals)) for vals in itertools.product(*(grid[k] for k in keys))]


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    """``["method=snip,grasp", "density=0.1,0.05"]`` -> ``{"method": [...], "density": [...]}``."""
    grid: dict[str, list[str]] = {}
    for item in items:
        key, sep, vals = item.partition("=")
        key = key.strip().lstrip("-").replace("_", "-")
        values = [v.strip() for v in vals.split(",") if v.strip()]
        if not sep or not key or not values:
            raise ValueError(f"--grid {item!r}: write key=value1,value2 (e.g. --grid density=0.1,0.05)")
        if key in grid:
            raise ValueError(f"--grid {key} is given twice; list all its values in one --grid {key}=a,b")
        if len(set(values)) < len(values):
            raise ValueError(f"--grid {item!r} repeats a value")
        grid[key] = values
    return grid


def load_spec(path) -> dict:
    """A sweep file: ``{"command": "pai", "grid": {"density": [0.1, 0.05]}, "args": ["--budget", "1ep"]}``
    (JSON; YAML too where PyYAML is installed)."""
    path = Path(path)
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ValueError(f"{path}: reading YAML needs PyYAML (pip install pyyaml); or write the sweep as JSON") \
                from None
        spec = yaml.safe_load(text)
    else:
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("grid"), dict):
        raise ValueError(f"{path}: expected an object with 'grid' (key -> list of values), 'command' and 'args'")
    unknown = set(spec) - {"command", "grid", "args"}
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}; a sweep file has command, grid and args")
    grid = {}
    for k, v in spec["grid"].items():
        vals = v if isinstance(v, list) else [v]
        grid[str(k).lstrip("-").replace("_", "-")] = [_text(x) for x in vals]
    args = spec.get("args", [])
    if not isinstance(args, list):
        raise ValueError(f"{path}: 'args' must be a list of command-line tokens, e.g. [\"--budget\", \"1ep\"]")
    return {"command": spec.get("command"), "grid": grid, "args": [str(a) for a in args]}


def _text(v) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


def _flag_tokens(action, flag: str, value: str) -> list[str]:
    """The command-line tokens that set ``flag`` to ``value`` (booleans: the flag or its --no- form)."""
    import argparse

    if isinstance(action, (argparse.BooleanOptionalAction, argparse._StoreTrueAction)):
        v = value.lower()
        if v not in ("true", "false", "yes", "no", "1", "0"):
            raise ValueError(f"--grid {flag[2:]}: {value!r} is not true or false")
        on = v in ("true", "yes", "1")
        if isinstance(action, argparse._StoreTrueAction):
            return [flag] if on else []
        return [flag] if on else ["--no-" + flag[2:]]
    return [flag, value]


def _command_parser(command: str, parser=None):
    """The CLI parser (``parser``, or a new one: a sweep builds it once) and its subparser for ``command``."""
    from .cli import build_parser

    p = parser or build_parser()
    sub = next(a for a in p._actions if a.dest == "command")
    return p, sub.choices[command]


def cell_argv(command: str, base: list[str], point: dict[str, str], threads: int, parser=None) -> list[str]:
    """One cell's command line (without ``--out``), checked against the command's flags."""
    _, sp = _command_parser(command, parser)
    flags = {s: a for a in sp._actions for s in a.option_strings}
    argv = [command, *base]
    for key, value in point.items():
        flag = "--" + key
        if flag not in flags:
            near = difflib.get_close_matches(flag, [f for f in flags if f.startswith("--")], n=3)
            raise ValueError(f"--grid {key}: {command} has no flag {flag}" + (f"; did you mean {', '.join(near)}?"
                                                                               if near else ""))
        argv += _flag_tokens(flags[flag], flag, value)
    return [*argv, "--threads", str(threads), "--quiet"]


def parse_cell(argv: list[str], parser=None):
    """The command's namespace for ``argv``; its parser's message as a ValueError when it refuses."""
    p, _ = _command_parser(argv[0], parser)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return p.parse_args(argv)
    except SystemExit:
        msg = err.getvalue().strip().splitlines()
        raise ValueError(f"cell `lotterylab {' '.join(argv)}`: {msg[-1] if msg else 'refused'}") from None


def run_command(argv: list[str], log: str) -> dict:
    """In a worker: one CLI command, its output into ``log``; returns its exit code and seconds."""
    from .cli import main

    t0 = time.perf_counter()
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        try:
            rc = main(argv)
        except Exception:  # a crash is this cell's failure, reported with its log; the others go on
            traceback.print_exc()
            rc = 1
    return {"rc": rc, "seconds": time.perf_counter() - t0}


def flatten(result: dict) -> dict:
    """The scalar fields of a result (one level of nesting as ``a.b``), without timings and paths."""
    row = {}
    for k, v in result.items():
        if k in _SKIP or _VOLATILE.search(k):
            continue
        if isinstance(v, dict):
            for k2, v2 in v.items():
                if not isinstance(v2, (dict, list)) and not _VOLATILE.search(k2):
                    row[f"{k}.{k2}"] = v2
        elif not isinstance(v, list):
            row[k] = v
    return row


def _what(argv: list[str]) -> list[str]:
    """A cell's command line without what does not change its result (--threads N, --quiet)."""
    out, skip = [], False
    for tok in argv:
        if skip:
            skip = False
        elif tok == "--threads":
            skip = True
        elif tok != "--quiet" and not tok.startswith("--threads="):
            out.append(tok)
    return out


def default_folder(command: str, base: list[str]) -> Path:
    return Path("runs") / f"sweep-{command}-{run_hash({'command': command, 'args': list(base)})}"


def sweep(command: str, grid: dict[str, list[str]], base: list[str] | None = None, out=None, executor="serial",
          workers: int | None = None, threads: int = 1, progress: bool = True, log=print) -> dict:
    """Run (or resume) a grid of ``command`` runs; returns ``{"rows", "failed", "out", ...}`` and
    writes ``table.csv``, ``table.json`` and ``sweep.json`` into the sweep folder."""
    from . import executors

    base = list(base or [])
    if command not in COMMANDS:
        raise ValueError(f"cannot sweep {command!r}; sweepable commands: {', '.join(COMMANDS)}")
    if not grid:
        raise ValueError("an empty grid: give at least one --grid key=v1,v2 (or a sweep file)")
    fixed = {tok.split("=")[0] for tok in base if tok.startswith("--")}
    for flag in ("--out", "--threads", "--quiet"):
        if flag in fixed:
            raise ValueError(f"{flag} is set by the sweep for every cell (use the sweep's own --out / --threads); "
                             f"remove it from the command's flags")
    clash = [k for k in grid if f"--{k}" in fixed]
    if clash:
        raise ValueError(f"--grid {clash[0]} is also among the fixed flags; give it once")
    folder = Path(out) if out else default_folder(command, base)
    _check_folder(folder, command, base)
    from .cli import build_parser

    parser = build_parser()
    cells, rows_meta = [], []
    for point in expand(grid):  # every cell checked by the command's own parser before any work
        argv = cell_argv(command, base, point, threads, parser)
        parse_cell(argv, parser)
        name = "_".join(f"{k}-{v}" for k, v in point.items())
        name = re.sub(r"[^A-Za-z0-9._=+-]", "_", name)[:80] + "-" + run_hash({"argv": argv[:-3]})[:8]
        cdir = folder / "cells" / name
        full = [*argv, "--out", str(cdir)]
        want = _what(full)  # finished = its result.json records this very command line (threads aside)
        cells.append(Cell(name, run_command, (full, str(folder / "logs" / f"{name}.txt")), cdir / "result.json",
                          done=lambda res, want=want: _what(res.get("run", {}).get("argv") or []) == want))
        rows_meta.append((point, name))
    write_json(folder / "sweep.json", {"kind": "sweep", "command": command, "args": base, "grid": grid,
                                        "cells": len(cells), "finished": False})
    ex = executors.create(executor, workers, threads=threads)
    t0 = time.perf_counter()
    try:
        log(f"sweep of {len(cells)} {command} cells on {ex.name} ({ex.workers} worker(s), {threads} thread(s) each); "
            f"out {folder}")
        done = run_cells(cells, ex, progress=progress, desc=f"sweep {command}")
    finally:
        ex.close()
    rows, failed = [], []
    for point, name in rows_meta:
        d = done[name]
        row = {**point, "cell": name, "status": d["status"]}
        if d["result"] is not None:  # (a result field named like a grid key: "result.<key>")
            row.update({(f"result.{k}" if k in row else k): v for k, v in flatten(d["result"]).items()})
        else:
            failed.append(f"{name} (log: {folder / 'logs' / (name + '.txt')})")
        rows.append(row)
    write_table(folder, rows)
    _plots(folder, rows, grid, command)
    summary = {"kind": "sweep", "command": command, "grid": grid, "args": base, "cells": len(rows), "rows": rows,
               "failed": failed, "out": str(folder), "finished": True,
               "executor": ex.describe(), "ran": sum(d["status"] == "ran" for d in done.values()),
               "reused": sum(d["status"] == "finished before" for d in done.values()),
               "wall_time_s": time.perf_counter() - t0}
    write_json(folder / "sweep.json", {k: v for k, v in summary.items() if k != "rows"})
    return summary


def _check_folder(folder: Path, command: str, base: list[str]) -> None:
    """A sweep folder holds one command with one set of fixed flags (grids may grow); anything else is refused."""
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--out {folder} is a file; --out names a sweep folder")
    rec = folder / "sweep.json"
    if rec.exists():
        old = read_json(rec)
        if old.get("command") != command or old.get("args") != base:
            raise ValueError(f"--out {folder} holds a sweep of `{old.get('command')} {' '.join(old.get('args', []))}`; "
                             f"this one is `{command} {' '.join(base)}`: choose another --out")
    elif folder.is_dir() and any(folder.iterdir()):
        raise ValueError(f"--out {folder} is not empty and holds no sweep; choose another --out")


def write_table(folder: Path, rows: list[dict]) -> None:
    """``table.json`` and ``table.csv`` of ``rows`` (columns in order of first appearance)."""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    write_json(folder / "table.json", {"columns": cols, "rows": rows})
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_bytes(folder / "table.csv", buf.getvalue().encode())


def _plots(folder: Path, rows: list[dict], grid: dict, command: str) -> None:
    """Accuracy vs density, one series per combination of the other grid keys (where results have both)."""
    from . import plots

    acc, dens = "final.test_accuracy", "result.density"  # the density reached, beside the one asked for
    if "density" not in grid or not any(acc in r and dens in r for r in rows):
        return
    others = [k for k in grid if k != "density"]
    series: dict[str, list] = {}
    for r in rows:
        if acc in r and isinstance(r.get(dens), (int, float)):
            name = ", ".join(f"{k}={r[k]}" for k in others) or command
            series.setdefault(name, []).append((r[dens], r[acc]))
    plots.accuracy_vs_density(series, folder / "accuracy_vs_density.png", title=f"sweep: {command}")
