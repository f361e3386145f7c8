"""The ray executor on a real local Ray cluster (num_cpus=2), started once for the test run: one
test, so that pytest-xdist cannot start a second cluster in another worker. The same sweep table,
the same subset-sum results and the same ticket mask bytes as serial."""

import pytest
import torch
from torch import nn

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'lotterylab[ray]' (scripts/test does)")

from lotterylab import executors  # noqa: E402
from lotterylab import subsetsum as ss  # noqa: E402
from lotterylab import sweep as sw  # noqa: E402
from lotterylab.construct import construct  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=256 * 2**20)
    yield
    ray.shutdown()


def test_ray_gives_what_serial_gives(cluster, fashion_fixture_dir, tmp_path, monkeypatch):
    from test_sweep import base, rows

    with pytest.raises(ValueError, match="cannot resize it"):  # a running cluster is not silently another size
        executors.create("ray", workers=5)
    with executors.create("ray", workers=2) as ex:  # (the size it has: accepted)
        assert ex.workers == 2
    with executors.create("ray") as ex:
        assert ex.workers == 2 and ex.shares_objects
        assert ex.map(pow, [(b, 2) for b in range(5)]) == [0, 1, 4, 9, 16]
        assert ex.map(torch.get_num_threads, [()] * 3) == [1] * 3  # the task's thread count, set in the worker

        # subset sums: parts read from the object store, merged in order, bit for bit the solver's own
        monkeypatch.setattr(ss, "PART_MIN_SCALAR", 250)
        v, t = ss.sample_instances("uniform", 1000, 14, seed=9)
        a, b = ss.solve_on(ex, v, t, 0.01, "min_l1"), ss.solve(v, t, 0.01, "min_l1")
        assert a.method.endswith("-ray")
        for f in ("mask", "sum", "error", "ok", "fallback"):
            assert torch.equal(getattr(a, f), getattr(b, f)), f
        vv, tv = ss.sample_instances("nsn", 16, 80, seed=2, d=4)
        a, b = ss.solve_on(ex, vv, tv, 0.1, "min_error", beam_width=16), ss.solve(vv, tv, 0.1, "min_error",
                                                                                 beam_width=16)
        assert torch.equal(a.mask, b.mask) and torch.equal(a.sum, b.sum)

        # a construction: the same mask bytes
        monkeypatch.setattr(ss, "PART_MIN_SCALAR", 100)
        torch.manual_seed(1)
        net = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 4))
        here = construct(net, mode="2L", eps_param=0.01, seed=5)
        there = construct(net, mode="2L", eps_param=0.01, seed=5, executor=ex)
        assert there.report["executor"]["executor"] == "ray"
        for k in here.masks:
            assert here.masks[k].numpy().tobytes() == there.masks[k].numpy().tobytes(), k
    assert ray.is_initialized()  # an executor does not stop a cluster it did not start

    # a sweep: the same table as serial
    grid = {"method": ["snip", "random"], "density": ["0.5", "0.2"]}
    args = [*base(fashion_fixture_dir), "--batches", "1"]
    s = sw.sweep("pai", grid, args, out=tmp_path / "serial", progress=False, log=lambda *_: None)
    r = sw.sweep("pai", grid, args, out=tmp_path / "ray", executor="ray", progress=False, log=lambda *_: None)
    assert s["ran"] == r["ran"] == 4 and not r["failed"] and r["executor"]["executor"] == "ray"
    assert rows(tmp_path / "serial") == rows(tmp_path / "ray")
