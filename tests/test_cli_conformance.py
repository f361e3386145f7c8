"""Conformance battery: every subcommand on tiny budgets, checked for the same promises.

exit 0; strict JSON ``result.json`` recording dataset, model, seeds, threads and every flag given;
the thread count set by ``--threads`` held through the run; a rerun into the same ``--out`` returns
the finished run without recomputing (never another run's result); ``info`` (and ``plot`` where the
result kind has density/accuracy points) succeed on the output.
"""

import json

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from lotterylab.cli import main

from conftest import needs_mnist

FAST = ["--val-size", "500", "--quiet", "--threads", "1"]


def _strict(text: str) -> dict:
    def bad(token):
        raise ValueError(f"non-standard JSON token {token}")
    return json.loads(text, parse_constant=bad)


def _chain_file(path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


COMMANDS = {
    "train": lambda tmp: ["train", *FAST, "--budget", "20it", "--eval-every", "10it", "--lr", "0.002",
                          "--model-seed", "2", "--seed", "1"],
    "imp": lambda tmp: ["imp", *FAST, "--budget", "10it", "--eval-every", "10it", "--rounds", "1", "--density", "0.5"],
    "pai": lambda tmp: ["pai", *FAST, "--budget", "10it", "--eval-every", "10it", "--method", "snip", "--density", "0.2",
                        "--batches", "1"],
    "edge-popup": lambda tmp: ["edge-popup", *FAST, "--model", "mlp", "--widths", "32,16", "--budget", "10it",
                               "--eval-every", "10it", "--density", "0.3", "--model-seed", "3", "--init",
                               "kaiming_normal"],
    "early-bird": lambda tmp: ["early-bird", *FAST, "--budget", "20it", "--eval-every", "2it", "--window", "2",
                               "--threshold", "0.9", "--density", "0.4"],
    "construct": lambda tmp: ["construct", "--target", str(_chain_file(tmp / "chain.safetensors")), "--mode", "2L",
                              "--eps", "0.05", "--verify-samples", "200", "--attack-steps", "2", "--quiet",
                              "--threads", "1", "--source-seed", "4"],
    "gfs": lambda tmp: ["gfs", "--target", "lenet_300_100", "--target-budget", "20it", "--val-size", "500",
                        "--density", "0.1", "--selection-examples", "256", "--quiet", "--threads", "1"],
    "study": lambda tmp: ["study", "pretraining", "--sizes", "100,200", "--iterations", "0,10", "--width", "16",
                          "--neurons", "4", "--selection-examples", "50", "--batch-size", "20", "--workers", "1",
                          "--pool", "0", "--quiet", "--threads", "1"],
    "study-planted": lambda tmp: ["study", "planted", "--families", "2L", "--activations", "relu", "--finders",
                                  "snip,random", "--density-factors", "2", "--width", "4", "--target-budget", "20it",
                                  "--budget", "5it", "--val-size", "500", "--executor", "serial", "--quiet",
                                  "--threads", "1"],
    "universal": lambda tmp: ["universal", "--dim", "2", "--degree", "2", "--eps", "0.05", "--tasks", "50",
                              "--fit-points", "500", "--dataset", "mnist", "--val-size", "500", "--quiet",
                              "--threads", "1", "--source-seed", "2"],
}
OWN_FIGURES = {"construct": ["construction.png"],  # a file target: no test set, so its construction figure
               "universal": ["universal_basis.png", "readout_errors.png"],
               "study": ["pretraining_heatmap.png", "pretraining_threshold.png"],
               "study-planted": ["planted_recall.png", "planted_score.png"]}


def _given_flags(argv):
    """{dest: value} of the flags on a command line (flag -> dest by the argparse convention)."""
    out, i = {}, 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("--") and a not in ("--quiet", "--threads", "--out"):
            out[a[2:].replace("-", "_")] = argv[i + 1]
            i += 2
        else:
            i += 1
    return out


ALIASES = {"density": ("target_density", "eb_density", "fraction", "density"),
           "selection_examples": ("batch", "gfs_batch"), "init": ("weight_init", "init"),
           "model_seed": ("network_seed", "model_seed")}


@needs_mnist
@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_conforms(name, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LOTTERYLAB_TARGETS", str(tmp_path / "targets"))
    out = tmp_path / "run"
    argv = COMMANDS[name](tmp_path) + ["--out", str(out)]
    torch.set_num_threads(1)
    assert main(argv) == 0, capsys.readouterr().err
    assert torch.get_num_threads() == 1  # nothing (numba included) raised it during the run
    res = _strict((out / "result.json").read_text())
    run = res["run"]
    assert run["threads"] == 1
    settings = run["settings"]
    for flag, value in _given_flags(argv[2:] if name.startswith("study") else argv[1:]).items():
        if flag in ("executor", "workers"):  # where the work ran: recorded beside the settings, not in the hash
            assert str(run[flag]) == value, flag
            continue
        dests = [d for d in ALIASES.get(flag, (flag,)) if d in settings]
        assert dests, f"{flag} not recorded in result.json"
        assert str(settings[dests[0]]) == value or float(settings[dests[0]]) == float(value), flag
    assert ("dataset" in settings) or name == "construct"
    assert any(k.endswith("seed") for k in settings)
    capsys.readouterr()

    # rerun: the finished run comes back unchanged and nothing is recomputed
    before = (out / "result.json").read_bytes()
    assert main(argv) == 0
    assert "nothing recomputed" in capsys.readouterr().out
    assert (out / "result.json").read_bytes() == before

    # another run into the same folder is refused, not answered with this run's result
    other = argv + ["--seed" if name != "construct" else "--source-seed", "7"]
    assert main(other) == 2
    assert "holds another run" in capsys.readouterr().err
    assert (out / "result.json").read_bytes() == before

    assert main(["info", str(out)]) == 0
    assert len(capsys.readouterr().out.splitlines()) <= 12  # a summary, not a dump
    assert main(["info", str(out), "--json"]) == 0
    assert _strict(capsys.readouterr().out)
    assert main(["plot", str(out), "--out", str(tmp_path / "fig")]) == 0
    for png in OWN_FIGURES.get(name, ["accuracy_vs_density.png"]):
        assert (tmp_path / "fig" / png).read_bytes()[:4] == b"\x89PNG"
    if name in OWN_FIGURES:  # mixed with others, a result without density points is a clear error
        assert main(["plot", str(out), str(out), "--out", str(tmp_path / "fig2")]) == 2
        assert "plot" in capsys.readouterr().err


@needs_mnist
def test_data_fetch_and_version(capsys):
    assert main(["data", "fetch", "mnist"]) == 0
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and "lotterylab" in capsys.readouterr().out


@pytest.mark.parametrize("argv, needle", [
    (["train", "--batch-size", "0"], "must be > 0"),
    (["train", "--lr", "inf"], "finite"),
    (["train", "--lr", "nan"], "finite"),
    (["train", "--threads", "0"], "must be > 0"),
    (["train", "--budget", "0it"], "at least 1"),
    (["train", "--val-size", "0"], "must be > 0"),
    (["imp", "--rounds", "-2"], ">= 0"),
    (["imp", "--density", "0"], "density in (0, 1]"),
    (["pai", "--synflow-iterations", "0"], "must be > 0"),
    (["edge-popup", "--density", "0"], "density in (0, 1]"),
    (["construct", "--verify-samples", "-5"], ">= 0"),
    (["train", "--gamma", "nan"], "finite"),
    (["train", "--milestones", "80ep,x"], "must look like"),
])
def test_bad_values_stop_at_parse_time(argv, needle, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and needle in capsys.readouterr().err


def test_device_without_cuda_is_a_clear_error(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["train", "--device", "cuda", "--out", str(tmp_path / "r")]) == 2
    assert "no usable CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # refused before any work


def test_out_that_is_a_file_is_refused_before_work(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["construct", "--target", str(_chain_file(tmp_path / "c.safetensors")), "--out", str(f)]) == 2
    assert "is a file" in capsys.readouterr().err


def test_deprecated_spellings_warn_and_work(capsys):
    from lotterylab.cli import build_parser

    ns = build_parser().parse_args(["imp", "--target-density", "0.3"])
    assert ns.target_density == 0.3
    assert "--target-density is deprecated; use --density" in capsys.readouterr().err
    ns = build_parser().parse_args(["gfs", "--fraction", "0.2", "--batch", "64"])
    assert ns.fraction == 0.2 and ns.batch == 64
    ns = build_parser().parse_args(["edge-popup", "--network-seed", "5", "--weight-init", "kaiming_normal"])
    assert ns.network_seed == 5 and ns.weight_init == "kaiming_normal"


def test_output_files_honour_the_umask(tmp_path):
    import os
    import stat

    from lotterylab.io import write_json

    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"x": float("nan")})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
    assert _strict((tmp_path / "a.json").read_text()) == {"x": None}


def test_info_survives_a_closed_pipe(tmp_path):
    import subprocess
    import sys

    from lotterylab.io import write_json

    write_json(tmp_path / "result.json", {"kind": "train", "history": list(range(200_000))})
    p = subprocess.run(f"{sys.executable} -m lotterylab info --json {tmp_path} | head -c 3", shell=True,
                       capture_output=True, text=True)
    assert p.returncode == 0 and "Traceback" not in p.stderr
