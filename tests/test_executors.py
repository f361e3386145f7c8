"""Executors: the same results in the same order on every executor; subset sums split across
workers give the solver's own result bit for bit; constructions give the same mask bytes.
(Ray: tests/test_ray.py, one real local cluster.)"""

import pytest
import torch
from torch import nn

from lotterylab import executors
from lotterylab import subsetsum as ss
from lotterylab.construct import construct


@pytest.fixture(scope="module")
def pool():
    with executors.create("processes", workers=2) as ex:
        yield ex


def test_map_keeps_the_order_and_reports_every_call(pool):
    calls = [(b, 3) for b in range(7)]
    for ex in (executors.create("serial"), pool):
        seen = []
        assert ex.map(pow, calls, lambda i, r, seen=seen: seen.append((i, r))) == [b ** 3 for b in range(7)]
        assert sorted(seen) == [(b, b ** 3) for b in range(7)]
    # the worker's thread count is the executor's, whatever the machine has
    assert pool.map(torch.get_num_threads, [()] * 4) == [1] * 4


def test_bad_executor_settings_are_refused():
    with pytest.raises(ValueError, match="unknown executor"):
        executors.create("threads")
    with pytest.raises(ValueError, match="parallel executor"):
        executors.create("serial", workers=2)
    with pytest.raises(ValueError, match="positive integer"):
        executors.create("processes", workers=0)


def _same(a, b):
    for f in ("mask", "sum", "error", "ok", "fallback"):
        x, y = getattr(a, f), getattr(b, f)
        assert x.dtype == y.dtype and torch.equal(x, y), f
    assert a.exact == b.exact


@pytest.mark.parametrize("objective", ["min_cardinality", "min_l1", "min_error"])
def test_split_scalar_instances_are_solved_exactly_as_in_one_call(pool, monkeypatch, objective):
    monkeypatch.setattr(ss, "PART_MIN_SCALAR", 300)  # split even this small batch
    v, t = ss.sample_instances("uniform", 2000, 16, seed=4)
    calls = []
    real = pool.map
    monkeypatch.setattr(pool, "map", lambda fn, c, *a: calls.append(len(c)) or real(fn, c, *a))
    res = ss.solve_on(pool, v, t, 0.01, objective)
    assert calls == [6]  # six parts went to the workers
    _same(res, ss.solve(v, t, 0.01, objective))
    assert res.method.endswith("-processes")


def test_split_vector_instances_match_the_beam_search(pool):
    v, t = ss.sample_instances("nsn", 24, 96, seed=3, d=9)
    res = ss.solve_on(pool, v, t, 0.1, "min_cardinality", beam_width=32)
    _same(res, ss.solve(v, t, 0.1, "min_cardinality", beam_width=32))
    assert not res.exact


def test_construction_on_a_pool_gives_the_same_mask_bytes(pool, monkeypatch):
    monkeypatch.setattr(ss, "PART_MIN_SCALAR", 100)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(12, 24), nn.ReLU(), nn.Linear(24, 6))
    calls = []
    real = pool.map
    monkeypatch.setattr(pool, "map", lambda fn, c, *a: calls.append(len(c)) or real(fn, c, *a))
    here = construct(net, mode="2L", eps_param=0.01, seed=2)
    there = construct(net, mode="2L", eps_param=0.01, seed=2, executor=pool)
    assert calls and max(calls) >= 2  # batches really were split across the workers
    assert there.masks.fingerprint() == here.masks.fingerprint()
    for k in here.masks:
        assert torch.equal(here.masks[k], there.masks[k]), k
    assert there.report["executor"] == {"executor": "processes", "workers": 2, "threads_per_worker": 1}


def test_construct_command_runs_on_a_pool_and_records_it(tmp_path, capsys):
    import json

    from lotterylab import load_ticket
    from lotterylab.cli import main

    from test_cli_conformance import _chain_file

    target = str(_chain_file(tmp_path / "chain.safetensors"))
    argv = ["construct", "--target", target, "--mode", "2L", "--eps-param", "0.01", "--verify-samples", "100",
            "--attack-steps", "1", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "here")]) == 0
    assert main([*argv, "--executor", "processes", "--workers", "2", "--out", str(tmp_path / "pool")]) == 0
    res = json.loads((tmp_path / "pool" / "result.json").read_text())
    assert (res["run"]["executor"], res["run"]["workers"]) == ("processes", 2)
    assert res["report"]["executor"]["executor"] == "processes"
    a, b = (load_ticket(tmp_path / d / "ticket.safetensors").masks for d in ("here", "pool"))
    assert a.fingerprint() == b.fingerprint()
    # where the work runs is not part of the run: the finished run is returned, not recomputed
    assert main([*argv, "--executor", "processes", "--workers", "2", "--out", str(tmp_path / "here")]) == 0
    assert "nothing recomputed" in capsys.readouterr().out
    assert main([*argv, "--workers", "2", "--out", str(tmp_path / "x")]) == 2
    assert "parallel executor" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def _zoo_target_job(root: str) -> tuple[list[str], str]:
    """A worker that needs the zoo target ``mlp`` (what a sweep's cells do): its log and weights hash."""
    from lotterylab import data
    from lotterylab.cli.targets import TargetConfig, zoo_target
    from lotterylab.tickets import state_sha256

    splits = data.load("fashion-mnist", root=root, verify=False, val_size=10)
    lines: list[str] = []
    model = zoo_target(TargetConfig(target="mlp", target_budget="40it", dataset="fashion-mnist"), splits,
                       progress=False, log=lines.append)
    return lines, state_sha256(model)


def test_parallel_workers_train_a_zoo_target_once(tmp_path, monkeypatch):
    import gzip

    from conftest import idx_bytes

    root = tmp_path / "fmnist"  # 130 training images: more than a zoo target's batch of 60
    root.mkdir()
    g = torch.Generator().manual_seed(2)
    for prefix, n in (("train", 130), ("t10k", 20)):
        (root / f"{prefix}-images-idx3-ubyte.gz").write_bytes(
            gzip.compress(idx_bytes(torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8))))
        (root / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(
            gzip.compress(idx_bytes(torch.arange(n, dtype=torch.uint8) % 10)))
    monkeypatch.setenv("LOTTERYLAB_TARGETS", str(tmp_path / "targets"))
    ex = executors.create("processes", 2, threads=1)
    try:
        out = ex.map(_zoo_target_job, [(str(root),)] * 2)
    finally:
        ex.close()
    training = [lines for lines, _ in out if any("training on" in line for line in lines)]
    assert len(training) == 1  # one worker trained it; the other waited and loaded the cached target
    assert out[0][1] == out[1][1]
