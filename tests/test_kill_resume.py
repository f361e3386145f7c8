"""SIGKILL at checkpoint writes (mid-write, before and after the rename), then rerun: the final
weights / masks are bit-identical to an uninterrupted run (train with cosine + warm-up, IMP with
learning-rate rewinding, edge-popup). Each run is a real `python -m lotterylab` process; the kill
comes from LOTTERYLAB_FAULT (lotterylab.io's fault injection)."""

import os
import signal
import subprocess
import sys

import pytest

from lotterylab.io import load_tensors


def _args(d):
    return ["--dataset", "fashion-mnist", "--data-root", str(d), "--no-verify", "--val-size", "10", "--batch-size",
            "10", "--quiet", "--threads", "1"]


COMMANDS = {
    "train": lambda d: ["train", *_args(d), "--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.9", "--schedule",
                        "cosine", "--warmup", "6it", "--budget", "20it", "--eval-every", "5it"],
    "imp": lambda d: ["imp", *_args(d), "--rewind", "lr", "--rounds", "2", "--budget", "10it", "--eval-every", "5it",
                      "--schedule", "cosine"],
    "edge-popup": lambda d: ["edge-popup", *_args(d), "--model", "mlp", "--widths", "16", "--budget", "12it",
                             "--eval-every", "4it"],
}
# the file whose second write is interrupted, and what the finished run is compared by
KILL_FILE = {"train": "checkpoint.safetensors", "imp": "checkpoint.safetensors", "edge-popup": "checkpoint.safetensors"}


def _start(argv, out, fault=None):
    env = {k: v for k, v in os.environ.items() if k != "LOTTERYLAB_FAULT"}
    if fault:
        env["LOTTERYLAB_FAULT"] = fault
    return subprocess.Popen([sys.executable, "-m", "lotterylab", *argv, "--out", str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait(procs):
    """Run processes side by side (one torch thread each); their return codes and stderr."""
    return [(p.wait(timeout=600), p.stderr.read()) for p in procs]


def _final(name, out):
    """Everything the finished run produced that must not depend on the kill."""
    files = {"train": ["checkpoint.safetensors"],
             "imp": ["round_02/final.safetensors", "round_02/mask.safetensors", "round_01/mask.safetensors"],
             "edge-popup": ["ticket.safetensors", "checkpoint.safetensors"]}[name]
    got = {}
    for f in files:
        tensors, _ = load_tensors(out / f)
        got.update({f"{f}:{k}": v for k, v in tensors.items() if k != "torch_rng"})
    return got


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_kill_at_checkpoint_writes_then_resume_is_bit_identical(name, fashion_fixture_dir, tmp_path):
    argv = COMMANDS[name](fashion_fixture_dir)
    stages = ("mid", "before_rename", "after_rename")
    first = _wait([_start(argv, tmp_path / "ref")] +
                  [_start(argv, tmp_path / st, fault=f"{KILL_FILE[name]}:2:{st}") for st in stages])
    assert first[0][0] == 0, first[0][1]
    for st, (rc, err) in zip(stages, first[1:]):
        assert rc == -signal.SIGKILL, (st, err[-2000:])
    for st, (rc, err) in zip(stages, _wait([_start(argv, tmp_path / st) for st in stages])):
        assert rc == 0, (st, err[-2000:])
    want = _final(name, tmp_path / "ref")
    for stage in stages:
        out = tmp_path / stage
        got = _final(name, out)
        assert set(got) == set(want)
        for k in want:
            assert got[k].equal(want[k]), (stage, k)
        assert not list(out.rglob(".*.tmp"))  # the interrupted write left nothing behind
