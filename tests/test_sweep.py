"""Sweeps: grids over any command, checked before any work; serial and a process pool give the same
table; a killed sweep, rerun, finishes without recomputing finished cells and gives the table of an
uninterrupted one. (Ray: tests/test_ray.py.)"""

import json
import os
import signal
import subprocess
import sys

import pytest

from lotterylab import sweep as sw
from lotterylab.cli import main

from conftest import needs_mnist


def base(d):
    return ["--dataset", "fashion-mnist", "--data-root", str(d), "--no-verify", "--val-size", "10", "--batch-size",
            "10", "--budget", "10it", "--eval-every", "5it"]


def rows(folder):
    """The table without the column that says whether a cell ran now or before."""
    t = json.loads((folder / "table.json").read_text())
    return [{k: v for k, v in r.items() if k != "status"} for r in t["rows"]]


def test_grids_expand_and_bad_grids_are_refused_before_any_work(tmp_path):
    g = sw.parse_grid(["method=snip,random", "model_seed=0,1"])
    assert g == {"method": ["snip", "random"], "model-seed": ["0", "1"]}
    assert [tuple(p.values()) for p in sw.expand(g)] == [("snip", "0"), ("snip", "1"), ("random", "0"),
                                                         ("random", "1")]
    argv = sw.cell_argv("pai", [], {"verify": "false", "density": "0.3"}, threads=1)
    assert argv == ["pai", "--no-verify", "--density", "0.3", "--threads", "1", "--quiet"]
    assert sw.parse_cell(argv).verify is False
    for grid, args, needle in [
        (["densty=0.1"], [], "did you mean --density"),
        (["method=snap"], [], "invalid choice: 'snap'"),
        (["density=0.1,2"], [], "density in (0, 1]"),
        (["verify=maybe"], [], "not true or false"),
        (["density=0.1"], ["--density", "0.2"], "also among the fixed flags"),
        (["density=0.1"], ["--out", "x"], "set by the sweep"),
        (["density"], [], "key=value1,value2"),
        (["density=0.1", "density=0.2"], [], "given twice"),
    ]:
        with pytest.raises(ValueError, match=".*" + needle.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
            sw.sweep("pai", sw.parse_grid(grid), args, out=tmp_path / "s", progress=False, log=lambda *_: None)
    assert not (tmp_path / "s").exists()  # nothing written for a refused sweep
    with pytest.raises(ValueError, match="cannot sweep"):
        sw.sweep("info", {"json": ["true"]}, out=tmp_path / "s", log=lambda *_: None)


def test_serial_and_processes_give_the_same_table_and_a_rerun_recomputes_nothing(fashion_fixture_dir, tmp_path):
    grid = {"method": ["snip", "random"], "density": ["0.5", "0.2"]}
    args = [*base(fashion_fixture_dir), "--batches", "1"]
    a = sw.sweep("pai", grid, args, out=tmp_path / "serial", progress=False, log=lambda *_: None)
    b = sw.sweep("pai", grid, args, out=tmp_path / "pool", executor="processes", workers=2, progress=False,
                 log=lambda *_: None)
    assert a["ran"] == b["ran"] == 4 and not a["failed"] and not b["failed"]
    assert rows(tmp_path / "serial") == rows(tmp_path / "pool")
    r = rows(tmp_path / "serial")
    assert {(x["method"], x["density"]) for x in r} == {(m, d) for m in grid["method"] for d in grid["density"]}
    assert all(x["result.density"] == pytest.approx(float(x["density"]), rel=0.05) for x in r)
    assert all(0 <= x["final.test_accuracy"] <= 1 for x in r)
    # each cell is a run folder of its own, recording the flags it ran with
    res = json.loads((tmp_path / "serial" / "cells" / r[0]["cell"] / "result.json").read_text())
    assert res["run"]["argv"][:2] == ["pai", "--dataset"] and res["pai"]["method"] == r[0]["method"]
    # a rerun with one more density reuses the four finished cells
    more = dict(grid, density=["0.5", "0.2", "0.1"])
    c = sw.sweep("pai", more, args, out=tmp_path / "serial", progress=False, log=lambda *_: None)
    assert (c["ran"], c["reused"]) == (2, 4)
    # the same folder with other fixed flags is refused (it would mix two sweeps)
    with pytest.raises(ValueError, match="holds a sweep of"):
        sw.sweep("pai", grid, [*args, "--lr", "0.5"], out=tmp_path / "serial", progress=False, log=lambda *_: None)


def test_a_killed_sweep_finishes_on_rerun_without_recomputing(fashion_fixture_dir, tmp_path):
    argv = ["sweep", "--quiet", "--grid", "density=0.5,0.3,0.2", "pai", "--method", "random", *base(fashion_fixture_dir)]

    def run(out, fault=None):
        env = {k: v for k, v in os.environ.items() if k != "LOTTERYLAB_FAULT"}
        if fault:
            env["LOTTERYLAB_FAULT"] = fault
        argv_out = argv[:2] + ["--out", str(out)] + argv[2:]
        return subprocess.run([sys.executable, "-m", "lotterylab", *argv_out], env=env, capture_output=True, text=True,
                              timeout=600)

    ref = run(tmp_path / "ref")
    assert ref.returncode == 0, ref.stderr[-2000:]
    # killed in the middle of the second cell's second checkpoint write (each cell writes two)
    killed = run(tmp_path / "k", fault="checkpoint.safetensors:4:mid")
    assert killed.returncode == -signal.SIGKILL
    cells = sorted((tmp_path / "k" / "cells").iterdir(), key=lambda p: p.name, reverse=True)  # 0.5, 0.3, 0.2
    assert [(c / "result.json").exists() for c in cells] == [True, False]  # the third never started
    first = cells[0] / "result.json"
    before = (first.read_bytes(), first.stat().st_mtime_ns)
    again = run(tmp_path / "k")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "2 ran, 1 finished before, 0 failed" in again.stdout
    assert (first.read_bytes(), first.stat().st_mtime_ns) == before  # not recomputed, not rewritten
    assert rows(tmp_path / "k") == rows(tmp_path / "ref")  # the resumed cell as if never killed


def test_sweep_command_reads_a_sweep_file_and_reports_failed_cells(fashion_fixture_dir, tmp_path, capsys):
    spec = tmp_path / "grid.json"
    spec.write_text(json.dumps({"command": "train", "grid": {"widths": [8, 0]},
                                "args": ["--model", "mlp", *base(fashion_fixture_dir)]}))
    out = tmp_path / "s"
    assert main(["sweep", "--spec", str(spec), "--out", str(out), "--quiet"]) == 1  # a width of 0 fails when run
    text = capsys.readouterr().out
    assert "2 cells: 1 ran" in text and "1 failed" in text and "failed: widths-0" in text
    r = rows(out)
    assert r[0]["widths"] == "8" and r[0]["final.test_accuracy"] is not None
    assert "final.test_accuracy" not in r[1]  # no result for the failed cell, and its log says why
    assert "every width must be >= 1" in (out / "logs" / f"{r[1]['cell']}.txt").read_text()
    assert (out / "table.csv").read_text().splitlines()[0].startswith("widths,cell,status")
    assert main(["info", str(out)]) == 0
    assert "sweep of 2 train cells over widths on serial" in capsys.readouterr().out
    assert main(["sweep", "--spec", str(spec), "--grid", "lr=0.1", "--out", str(out)]) == 2
    assert "not both" in capsys.readouterr().err


SWEEP_GRID = {"construct": {"low": ["-1", "-0.5"]}, "train": {"weight-decay": ["0", "0.0001"]}}


@needs_mnist
@pytest.mark.parametrize("name", sw.COMMANDS)
def test_every_sweepable_command_sweeps(name, tmp_path, monkeypatch):
    """The conformance battery's tiny command lines, as two-cell sweeps: both cells run into their own
    run folders, the table has a row per cell with the cell's result, and a rerun recomputes nothing."""
    from test_cli_conformance import COMMANDS

    monkeypatch.setenv("LOTTERYLAB_TARGETS", str(tmp_path / "targets"))
    argv = COMMANDS[name](tmp_path)[1:]
    fixed, i = [], 0
    while i < len(argv):  # the sweep sets --quiet and --threads itself
        if argv[i] == "--quiet":
            i += 1
        elif argv[i] == "--threads":
            i += 2
        else:
            fixed.append(argv[i])
            i += 1
    grid = SWEEP_GRID.get(name, {"seed": ["1", "2"]})
    res = sw.sweep(name, grid, fixed, out=tmp_path / "s", progress=False, log=lambda *_: None)
    assert not res["failed"], [p.read_text()[-1500:] for p in (tmp_path / "s" / "logs").glob("*.txt")]
    r = rows(tmp_path / "s")
    assert [x[list(grid)[0]] for x in r] == list(grid.values())[0]
    for x in r:
        res_file = tmp_path / "s" / "cells" / x["cell"] / "result.json"
        assert json.loads(res_file.read_text())["run"]["command"].startswith(name.split("-")[0])
    again = sw.sweep(name, grid, fixed, out=tmp_path / "s", progress=False, log=lambda *_: None)
    assert (again["ran"], again["reused"]) == (0, 2)


def test_sweep_files_in_yaml_read_as_json_ones(tmp_path):
    pytest.importorskip("yaml", reason="PyYAML is not installed (it comes with the ray extra)")
    (tmp_path / "g.yaml").write_text("command: pai\ngrid:\n  density: [0.1, 0.05]\n  verify: [true]\nargs: [--budget, 10it]\n")
    (tmp_path / "g.json").write_text(json.dumps({"command": "pai", "grid": {"density": [0.1, 0.05], "verify": [True]},
                                                 "args": ["--budget", "10it"]}))
    a, b = sw.load_spec(tmp_path / "g.yaml"), sw.load_spec(tmp_path / "g.json")
    assert a == b == {"command": "pai", "grid": {"density": ["0.1", "0.05"], "verify": ["true"]},
                      "args": ["--budget", "10it"]}
    (tmp_path / "bad.json").write_text('{"grid": {"density": [0.1]}, "extra": 1}')
    with pytest.raises(ValueError, match="unknown keys"):
        sw.load_spec(tmp_path / "bad.json")
