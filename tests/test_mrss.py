"""Multidimensional subset sum at realistic sizes: the beam-search heuristic against brute force and
against an exact MILP (HiGHS), determinism, and the limits it refuses clearly."""

import pytest
import torch

from lotterylab import subsetsum as ss

pytest.importorskip("scipy")
from lotterylab.subsetsum_milp import solve_milp  # noqa: E402


def test_beam_finds_the_brute_force_optimum_on_small_instances():
    v, t = ss.sample_instances("nsn", 40, 14, seed=5, d=3)
    exact = ss.solve(v, t, 0.0, "min_error", backend="brute_force")
    beam = ss.solve(v, t, 0.0, "min_error", backend="beam", beam_width=256)
    assert exact.exact and not beam.exact and beam.method.endswith("heuristic")
    assert torch.all(beam.error >= exact.error - 1e-12)  # it can never beat the optimum
    hits = int(((beam.error - exact.error).abs() <= 1e-12).sum())
    assert hits >= 36, f"the beam found the optimum on only {hits} of 40 instances"
    for eps in (0.1, 0.2):
        ec = ss.solve(v, t, eps, "min_cardinality", backend="brute_force")
        bc = ss.solve(v, t, eps, "min_cardinality", backend="beam", beam_width=256)
        assert torch.equal(bc.ok, ec.ok)
        assert torch.all(bc.size[bc.ok] <= ec.size[bc.ok] + 1)
        assert torch.equal(bc.fallback, ~bc.ok)


@pytest.mark.parametrize("n,d,eps,limit", [(24, 4, 0.08, 5.0), (32, 9, 0.4, 5.0), (48, 4, 0.03, 1.0)])
def test_beam_succeeds_wherever_the_milp_does(n, d, eps, limit):
    v, t = ss.sample_instances("nsn", 6, n, seed=7, d=d)
    milp = solve_milp(v, t, eps, "min_cardinality", time_limit=limit)
    beam = ss.solve(v, t, eps, "min_cardinality")
    assert not beam.exact and beam.method == "numba-vector-beam-heuristic"
    # the MILP's subsets are real subsets within eps where it says so
    s = (v.double() * milp.mask.unsqueeze(-1)).sum(1)
    assert torch.allclose(s, milp.sum.double()) and torch.all(milp.ok == (milp.error <= eps))
    assert int(beam.ok.sum()) >= int(milp.ok.sum())
    proven = milp.info["proven_optimal"] & milp.ok & beam.ok
    assert torch.all(beam.size[proven] >= milp.size[proven])  # a proven minimum is a lower bound


def test_milp_min_error_is_optimal_on_small_instances():
    v, t = ss.sample_instances("nsn", 5, 10, seed=2, d=2)
    exact = ss.solve(v, t, 0.0, "min_error", backend="brute_force")
    milp = solve_milp(v, t, 0.0, "min_error", time_limit=10.0)
    assert bool(milp.info["proven_optimal"].all())
    assert torch.allclose(milp.error.double(), exact.error.double(), atol=1e-7)


def test_beam_is_deterministic_across_calls_and_threads():
    v, t = ss.sample_instances("nsn", 24, 96, seed=3, d=9)
    n0 = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = ss.solve(v, t, 0.1, "min_cardinality")
        torch.set_num_threads(2)
        b = ss.solve(v, t, 0.1, "min_cardinality")
    finally:
        torch.set_num_threads(n0)
    assert torch.equal(a.mask, b.mask) and torch.equal(a.error, b.error)
    # never worse than the empty subset, sums are the chosen candidates' sums
    assert torch.all(a.error <= t.abs().amax(1) + 1e-6)
    assert torch.allclose((v.double() * a.mask.unsqueeze(-1)).sum(1), a.sum.double(), atol=1e-5)


def test_zero_candidates_are_never_chosen_by_the_beam():
    v, t = ss.sample_instances("nsn", 10, 40, seed=4, d=4)
    v[:, ::3] = 0
    r = ss.solve(v, t, 0.05, "min_cardinality")
    assert not r.mask[:, ::3].any()


def test_realistic_sizes_and_the_limits():
    v, t = ss.sample_instances("nsn", 2, 512, seed=1, d=49)
    r = ss.solve(v, t, 0.5, "min_error", beam_width=64)
    assert r.mask.shape == (2, 512) and torch.all(r.error < t.abs().amax(1))
    with pytest.raises(ValueError, match="limit on n"):
        ss.solve(torch.zeros(1, 513, 4), torch.zeros(1, 4), 0.1)
    with pytest.raises(ValueError, match="limit on d"):
        ss.solve(torch.zeros(1, 8, 50), torch.zeros(1, 50), 0.1)
    with pytest.raises(ValueError, match="heuristically"):
        ss.solve(torch.zeros(1, 40, 4), torch.zeros(1, 4), 0.1, "min_l1")
    with pytest.raises(ValueError, match="beam_width"):
        ss.solve(torch.zeros(1, 40, 4), torch.zeros(1, 4), 0.1, beam_width=0)
    with pytest.raises(ValueError, match="beam_width"):  # refused before any work, whichever solver would run
        ss.solve(torch.zeros(1, 8), torch.zeros(1), 0.1, beam_width=0)
    with pytest.raises(ValueError, match="scalar instances"):
        ss.solve(torch.zeros(1, 8), torch.zeros(1), 0.1, backend="beam")
