"""The subset-sum engine against plain enumeration of all subsets, for every objective and backend."""

import itertools
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lotterylab import subsetsum as ss

BACKENDS = ["numba", "torch"] if ss.HAVE_NUMBA else ["torch"]
TOL = 1e-9  # float64 sums of the same subset in different orders differ by ~1e-16


def brute(values, target, eps, objective, k=None):
    """Plain Python enumeration: (error, size, l1) of the best subset and whether one is within eps."""
    n = len(values)
    vector = isinstance(target, tuple)
    subsets = []
    for bits in itertools.product((0, 1), repeat=n):
        chosen = [v for v, b in zip(values, bits) if b]
        if vector:
            s = [sum(c[q] for c in chosen) for q in range(len(target))]
            e = max(abs(t - x) for t, x in zip(target, s))
            l1 = sum(sum(abs(x) for x in c) for c in chosen)
        else:
            e = abs(target - sum(chosen))
            l1 = sum(abs(v) for v in chosen)
        subsets.append((e, sum(bits), l1))
    within = [x for x in subsets if x[0] <= eps]
    if objective == "min_error":
        return min(subsets), True
    if objective == "fixed_size":
        return min(x for x in subsets if x[1] == k), True
    if not within:
        return min(subsets), False
    if objective == "min_cardinality":
        return min(within, key=lambda x: (x[1], x[0])), True
    return min(within, key=lambda x: (x[2], x[0])), True


def check(res, values, targets, eps, objective, k=None):
    for i in range(values.shape[0]):
        vals = values[i].tolist()
        (e, size, l1), any_within = brute(vals, float(targets[i]), eps, objective, k)
        got_e = float(res.error[i])
        got_size = int(res.size[i])
        got_l1 = sum(abs(v) for v, b in zip(vals, res.mask[i].tolist()) if b)
        near_boundary = abs(e - eps) < TOL
        if objective == "min_error":
            assert got_e <= e + TOL
        elif objective == "fixed_size":
            assert got_size == k and got_e <= e + TOL
        elif not any_within:
            assert bool(res.fallback[i]) or near_boundary
            assert got_e <= e + TOL
        else:
            assert bool(res.ok[i]) or near_boundary
            if objective == "min_cardinality" and not near_boundary:
                assert got_size == size and got_e <= e + TOL
            elif not near_boundary:
                assert got_l1 <= l1 + TOL
        # reported numbers describe the reported subset
        s = sum(v for v, b in zip(vals, res.mask[i].tolist()) if b)
        assert math.isclose(float(res.sum[i]), s, abs_tol=1e-12)
        assert math.isclose(got_e, abs(float(targets[i]) - s), abs_tol=1e-12)
        assert bool(res.ok[i]) == (got_e <= eps)


tie_values = st.sampled_from([-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0])
any_values = st.floats(-2, 2, allow_nan=False, width=64)


@st.composite
def instances(draw, max_n=10):
    n = draw(st.integers(1, max_n))
    B = draw(st.integers(1, 4))
    elem = draw(st.sampled_from([tie_values, any_values]))
    values = torch.tensor([[draw(elem) for _ in range(n)] for _ in range(B)], dtype=torch.float64)
    targets = torch.tensor([draw(st.floats(-6, 6, allow_nan=False)) for _ in range(B)], dtype=torch.float64)
    eps = draw(st.sampled_from([0.0, 0.01, 0.1, 0.5]) | st.floats(0, 1))
    return values, targets, eps


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("objective", ["min_error", "min_cardinality", "min_l1"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inst=instances())
def test_matches_brute_force(backend, objective, inst):
    values, targets, eps = inst
    check(ss.solve(values, targets, eps, objective, backend=backend), values, targets, eps, objective)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inst=instances(), data=st.data())
def test_fixed_size_matches_brute_force(backend, inst, data):
    values, targets, eps = inst
    k = data.draw(st.integers(0, values.shape[1]))
    check(ss.solve(values, targets, eps, "fixed_size", k=k, backend=backend), values, targets, eps, "fixed_size", k)


@pytest.mark.parametrize("backend", BACKENDS)
def test_edge_cases(backend):
    # n = 1; all-zero candidates; eps = 0; targets out of reach
    v = torch.tensor([[0.5], [0.0], [1.0]], dtype=torch.float64)
    t = torch.tensor([0.5, 0.3, 5.0], dtype=torch.float64)
    for obj in ("min_error", "min_cardinality", "min_l1"):
        r = ss.solve(v, t, 0.0, obj, backend=backend)
        assert r.mask[0].item() and r.mask[2].item()  # instance 1 is a tie: {} and {0.0} both miss by 0.3
        assert r.error.tolist() == pytest.approx([0.0, 0.3, 4.0])
        assert r.ok.tolist() == [True, False, False]
        if obj != "min_error":
            assert r.fallback.tolist() == [False, True, True]
    z = torch.zeros(3, 12, dtype=torch.float64)
    r = ss.solve(z, torch.tensor([0.0, 1.0, -1.0], dtype=torch.float64), 0.0, "min_cardinality", backend=backend)
    assert r.size.tolist()[0] == 0 and r.ok.tolist() == [True, False, False]
    assert r.error.tolist()[1:] == [1.0, 1.0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_larger_n_against_the_torch_reference(backend):
    values, targets = ss.sample_instances("uniform", 300, 16, seed=4)
    ref = ss.solve(values, targets, 0.01, "min_error", backend="brute_force")
    for obj in ("min_error", "min_cardinality", "min_l1"):
        got = ss.solve(values, targets, 0.01, obj, backend=backend)
        ref = ss.solve(values, targets, 0.01, obj, backend="brute_force")
        assert torch.allclose(got.error[~got.ok], ref.error[~ref.ok]) or obj == "min_error"
        assert torch.equal(got.ok, ref.ok)
        if obj == "min_error":
            assert torch.all(got.error <= ref.error + 1e-7)
        if obj == "min_cardinality":
            assert torch.equal(got.size, ref.size)
        if obj == "min_l1":
            l1 = lambda r: (values.abs() * r.mask).sum(1)  # noqa: E731
            assert torch.all(l1(got) <= l1(ref) + 1e-6)


def test_float32_and_float64_choose_the_same_subsets():
    v32, t32 = ss.sample_instances("uniform", 5000, 15, seed=2)
    for obj in ("min_error", "min_cardinality", "min_l1"):
        a = ss.solve(v32, t32, 0.01, obj)
        b = ss.solve(v32.double(), t32.double(), 0.01, obj)
        assert a.sum.dtype == torch.float32 and b.sum.dtype == torch.float64
        assert torch.equal(a.mask, b.mask)
        assert float((a.sum.double() - b.sum).abs().max()) <= 1e-6


def test_vector_exact_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    values = torch.randn(6, 7, 3, generator=g, dtype=torch.float64)
    targets = torch.rand(6, 3, generator=g, dtype=torch.float64) * 2 - 1
    for obj, k in (("min_error", None), ("min_cardinality", None), ("min_l1", None), ("fixed_size", 2)):
        for backend in BACKENDS:
            r = ss.solve(values, targets, 0.3, obj, k=k, backend=backend)
            assert r.exact
            for i in range(6):
                vecs = [tuple(row) for row in values[i].tolist()]
                # l1 of a vector subset: sum of the chosen vectors' l1 norms
                (e, size, _), any_within = brute(vecs, tuple(targets[i].tolist()), 0.3, obj, k)
                assert float(r.error[i]) <= e + TOL
                if obj == "min_cardinality" and any_within:
                    assert int(r.size[i]) == size
                if obj == "fixed_size":
                    assert int(r.size[i]) == 2


@pytest.mark.skipif(not ss.HAVE_NUMBA, reason="meet in the middle is compiled")
@pytest.mark.parametrize("d", [1, 2, 3])
def test_vector_meet_in_the_middle_matches_enumeration(d):
    """d <= 3 from 16 candidates on (moment matching's instances): exact, the same error and size as
    enumerating every subset, including instances with no subset within eps (fallback: least error)."""
    g = torch.Generator().manual_seed(d)
    for n in (16,):
        values = torch.randn(40, n, d, generator=g, dtype=torch.float64)
        values[:, :, 1:] *= 0.01  # the higher-moment components are small (as in the constructions)
        targets = torch.rand(40, d, generator=g, dtype=torch.float64) * 2 - 1
        targets[:, 1:] = 0
        for obj, eps in (("min_error", 0.0), ("min_cardinality", 1e-3), ("min_cardinality", 1e-5)):
            r = ss.solve(values, targets, eps, obj)
            assert r.exact and r.method == "numba-vector"
            ref = ss.solve(values, targets, eps, obj, backend="brute_force")
            if obj == "min_error" or eps < 1e-4:
                assert torch.allclose(r.error[r.fallback | (obj == "min_error")],
                                      ref.error[ref.fallback | (obj == "min_error")], atol=1e-12)
            assert torch.equal(r.fallback, ref.fallback) and torch.equal(r.ok, ref.ok)
            if obj == "min_cardinality":
                assert torch.equal(r.size[r.ok], ref.size[ref.ok])
                assert torch.all(r.error[r.ok] <= eps)


@pytest.mark.skipif(not ss.HAVE_NUMBA, reason="the size-staged search is compiled")
def test_vector_min_cardinality_by_size_matches_enumeration():
    """Vector min_cardinality tries subsets by increasing size first (the papers' mode needs 1-4 of
    20): the same sizes, oks and fallbacks as enumerating every subset, on instances answered by the
    staged search and on ones beyond its sizes (solved in full)."""
    assert [ss.staged_max_size(n) for n in (4, 7, 12, 16, 20, 32)] == [0, 2, 4, 6, 4, 4]
    g = torch.Generator().manual_seed(3)
    staged = full = 0
    for n, d, eps in ((12, 2, 0.01), (14, 2, 0.01), (12, 1, 1e-3)):
        values = torch.randn(60, n, d, generator=g, dtype=torch.float64)
        values[:, :, 1:] *= 0.01  # (small higher-moment components, as in moment matching)
        targets = torch.rand(60, d, generator=g, dtype=torch.float64) * 2 - 1
        targets[:, 1:] = 0
        r = ss.solve(values, targets, eps, "min_cardinality")
        ref = ss.solve(values, targets, eps, "min_cardinality", backend="brute_force")
        assert r.exact and torch.equal(r.ok, ref.ok) and torch.equal(r.fallback, ref.fallback)
        assert torch.equal(r.size[r.ok], ref.size[ref.ok]) and torch.all(r.error[r.ok] <= eps)
        assert torch.allclose(r.error[r.ok], ref.error[ref.ok], atol=1e-12)  # (ties by error, too)
        staged += int((r.size[r.ok] <= ss.staged_max_size(n)).sum())
        full += int((r.size[r.ok] > ss.staged_max_size(n)).sum())
    assert staged > 20 and full > 20  # both paths ran: small subsets found by size, larger ones in full


def test_vector_heuristic_is_flagged_and_sound():
    values, targets = ss.sample_instances("nsn", 40, 24, seed=1, d=4)
    r = ss.solve(values, targets, 0.1, "min_error")
    assert not r.exact and r.method.endswith("heuristic")
    assert torch.all(r.error <= targets.abs().amax(1) + 1e-6)  # never worse than the empty subset
    assert r.ok.float().mean() > 0.8  # 2**24 subsets of 4-d vectors: good solutions are plentiful
    c = ss.solve(values, targets, 0.1, "min_cardinality")
    assert torch.all(c.size[c.ok] <= r.size[c.ok])
    with pytest.raises(ValueError, match="heuristically"):
        ss.solve(values, targets, 0.1, "min_l1")


def test_bad_input_is_refused_before_work():
    v, t = torch.zeros(2, 5), torch.zeros(2)
    with pytest.raises(ValueError, match="1..32"):
        ss.solve(torch.zeros(2, 33), t, 0.1)
    with pytest.raises(ValueError, match="NaN or inf"):
        ss.solve(torch.tensor([[1.0, float("nan")]]), torch.zeros(1), 0.1)
    with pytest.raises(ValueError, match="NaN or inf"):
        ss.solve(v, torch.tensor([0.0, float("inf")]), 0.1)
    with pytest.raises(ValueError, match=">= 0"):
        ss.solve(v, t, -0.1)
    with pytest.raises(ValueError, match="finite"):
        ss.solve(v, t, float("nan"))
    with pytest.raises(ValueError, match="targets must have shape"):
        ss.solve(v, torch.zeros(3), 0.1)
    with pytest.raises(ValueError, match="targets must have shape"):
        ss.solve(torch.zeros(2, 5, 3), torch.zeros(2), 0.1)
    with pytest.raises(ValueError, match="integer k"):
        ss.solve(v, t, 0.1, "fixed_size")
    with pytest.raises(ValueError, match="only used"):
        ss.solve(v, t, 0.1, "min_error", k=2)
    with pytest.raises(ValueError, match="unknown objective"):
        ss.solve(v, t, 0.1, "fastest")
    with pytest.raises(TypeError, match="floating"):
        ss.solve(torch.zeros(2, 5, dtype=torch.int64), t, 0.1)


def test_empty_batch_and_chunking(monkeypatch):
    r = ss.solve(torch.zeros(0, 4), torch.zeros(0), 0.1)
    assert r.mask.shape == (0, 4)
    monkeypatch.setattr(ss, "CHUNK", 7)  # many chunks: results must not depend on the chunking
    v, t = ss.sample_instances("uniform", 50, 10, seed=3)
    a = ss.solve(v, t, 0.01, "min_cardinality")
    monkeypatch.setattr(ss, "CHUNK", 1 << 17)
    assert torch.equal(a.mask, ss.solve(v, t, 0.01, "min_cardinality").mask)


def test_calibration_matches_published_rates():
    # Burkholz's 100k solved instances: uniform candidates, n = 15, eps = 0.01 fail 0.40%
    r = ss.calibrate("uniform", 15, 0.01, trials=20000)
    assert r["ci95"][0] <= 0.004 <= r["ci95"][1] or abs(r["failure_rate"] - 0.004) < 0.002
    # products need about twice the candidates: clearly worse at the same n
    p = ss.calibrate("product", 15, 0.01, trials=20000)
    assert p["failure_rate"] > 3 * r["failure_rate"]
    assert ss.choose_n("uniform", 0.01, delta=0.02, trials=5000) in range(11, 16)
    with pytest.raises(ValueError, match="unknown distribution"):
        ss.sample_instances("cauchy", 3, 4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    v, t = ss.sample_instances("uniform", 2000, 15, seed=5)
    for obj in ("min_error", "min_cardinality"):
        a = ss.solve(v, t, 0.01, obj)
        b = ss.solve(v.cuda(), t.cuda(), 0.01, obj)
        assert b.mask.device.type == "cuda"
        assert torch.equal(a.ok, b.ok.cpu())
        assert torch.allclose(a.error, b.error.cpu(), atol=1e-7)


def test_zero_candidates_change_nothing_and_are_never_chosen():
    # constructions pad candidate tables with zeros: the minimum-cardinality solver drops them, so an
    # instance with zeros must give the same size, error and (mapped) subset as the one without
    g = torch.Generator().manual_seed(3)
    B, n, zeros = 400, 30, 10
    dense = torch.rand(B, n - zeros, generator=g, dtype=torch.float64) * 2 - 1
    targets = (torch.rand(B, generator=g, dtype=torch.float64) * 2 - 1) * torch.linspace(0.1, 4, B, dtype=torch.float64)
    where = torch.stack([torch.randperm(n, generator=g)[: n - zeros].sort().values for _ in range(B)])
    padded = torch.zeros(B, n, dtype=torch.float64).scatter_(1, where, dense)
    a = ss.solve(dense, targets, 0.001, "min_cardinality")
    b = ss.solve(padded, targets, 0.001, "min_cardinality")
    assert torch.equal(a.size, b.size) and torch.equal(a.error, b.error) and torch.equal(a.ok, b.ok)
    assert not (b.mask & (padded == 0)).any()
    assert torch.equal(torch.zeros(B, n, dtype=torch.bool).scatter_(1, where, a.mask), b.mask)
    assert (a.size >= 4).any() and (~a.ok).any()  # the staged search and the fallback were reached


def test_min_cardinality_with_zeros_matches_brute_force():
    g = torch.Generator().manual_seed(5)
    v = torch.rand(40, 16, generator=g, dtype=torch.float64) * 2 - 1
    v[torch.rand(40, 16, generator=g) < 0.3] = 0.0
    t = (torch.rand(40, generator=g, dtype=torch.float64) * 2 - 1) * 3
    got = ss.solve(v, t, 0.01, "min_cardinality")
    ref = ss.solve(v, t, 0.01, "min_cardinality", backend="brute_force")
    assert torch.equal(got.size, ref.size) and torch.equal(got.ok, ref.ok)
    assert torch.allclose(got.error, ref.error, atol=1e-12)
