"""Universal tickets: basis networks against their exact functions, the ticket as a pruning of its
regenerated source, certificates against realised errors, shared blocks, readouts over task batches."""

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lotterylab.tickets import Ticket
from lotterylab.universal import (
    BasisError,
    UniversalError,
    construct_universal,
    fourier,
    load_universal,
    monomials,
    sample_tasks,
    univariate,
)
from lotterylab.universal.basis import _minimax, grid
from lotterylab.universal.demo import classification, task_batch


@pytest.fixture(scope="module")
def poly2():
    return construct_universal("poly", 2, degree=3, eps=0.02, seed=3)


# --- basis networks ---------------------------------------------------------------------------------
@settings(max_examples=12, deadline=None)
@given(a=st.floats(0.3, 6.0), b=st.floats(-1.0, 1.0), eps=st.sampled_from([1e-2, 1e-3]))
def test_univariate_net_is_within_its_stated_error_on_a_finer_grid(a, b, eps):
    g = lambda x: np.sin(a * x + b) + 0.3 * np.exp(-x)  # noqa: E731
    u = univariate(g, domain=(-1.0, 2.0), eps=eps)
    x = torch.linspace(-1.0, 2.0, 300_001, dtype=torch.float64)
    err = float((u(x) - torch.from_numpy(g(x.numpy()))).abs().max())
    assert err <= eps * 1.001
    assert abs(err - u.error) <= 0.02 * eps  # the reported error is the measured one
    fewer = univariate(g, len(u.knots) - 2, domain=(-1.0, 2.0)) if len(u.knots) > 2 else None
    assert fewer is None or fewer.error > eps  # the fewest pieces that reach eps


def test_minimax_beats_interpolation_on_the_same_knots():
    t = np.linspace(0.0, 3.0, 9)
    v, best = _minimax(np.exp, t)
    x = np.linspace(0.0, 3.0, 100_001)
    interp = np.abs(np.interp(x, t, np.exp(t)) - np.exp(x)).max()
    assert best <= 0.55 * interp  # convex pieces: the minimax error is half the interpolation error


def test_the_relu_form_is_the_piecewise_linear_function():
    u = univariate(np.cos, 7, domain=(0.0, 3.0), placement="uniform")
    x = torch.linspace(0.0, 3.0, 1001, dtype=torch.float64)
    pl = np.interp(x.numpy(), u.knots, u.values)
    assert torch.allclose(u(x), torch.from_numpy(pl), atol=1e-12)
    with torch.no_grad():  # and as a plain module, an ordinary target
        assert torch.allclose(u.module()(x.unsqueeze(1))[:, 0], u(x), atol=1e-12)


@pytest.mark.parametrize("make, eps", [(lambda: monomials(2, 3, eps=2e-3), 2e-3),
                                       (lambda: fourier(2, 1, eps=1e-2), 1e-2)])
def test_monomial_and_fourier_bases_within_eps_of_the_exact_functions(make, eps):
    b = make()
    x = grid(b, points=40_000)
    err = (b.module()(x) - b.exact(x)).abs().amax(0)
    assert float(err.max()) <= eps and len(err) == len(b.features)
    if b.family == "poly":  # the exact functions are the monomials of (1 + y) / 2
        y = (1 + x) / 2
        assert torch.allclose(b.exact(x)[:, b.features.index("u1^2*u2")], y[:, 0] ** 2 * y[:, 1])
        assert len(b.features) == math.comb(2 + 3, 3) - 1


# --- the ticket ---------------------------------------------------------------------------------------
def test_ticket_is_a_pruning_of_its_regenerated_source(poly2, tmp_path):
    path = poly2.save(tmp_path / "u.safetensors")
    back = load_universal(path)
    src = back.ticket.source()
    net = back.network()
    kept = 0
    for (name, p), (_, s) in zip(net.named_parameters(), src.named_parameters()):
        m = back.ticket.masks[name]
        assert torch.equal(p[m], s[m]) and bool((p[~m] == 0).all())
        kept += int(m.sum())
    assert kept == poly2.counts()["ticket_parameters"] < 0.05 * poly2.counts()["source_parameters"]
    x = grid(poly2.basis, points=2000)
    assert torch.equal(back.features(x), poly2.features(x))  # bit for bit after the round trip
    assert isinstance(Ticket.load(path), Ticket)  # an ordinary ticket file


def test_same_seed_same_ticket_other_seed_other_source(tmp_path):
    a = construct_universal("fourier", 1, frequencies=1, eps=0.02, seed=5)
    b = construct_universal("fourier", 1, frequencies=1, eps=0.02, seed=5)
    c = construct_universal("fourier", 1, frequencies=1, eps=0.02, seed=6)
    assert a.ticket.masks.fingerprint() == b.ticket.masks.fingerprint() != c.ticket.masks.fingerprint()
    # byte-identical files: no timings or other run-dependent values in them
    assert a.save(tmp_path / "a.safetensors").read_bytes() == b.save(tmp_path / "b.safetensors").read_bytes()


def test_certificate_bounds_the_realised_error_and_eps_bounds_the_certificate(poly2):
    rep = poly2.report
    x = grid(poly2.basis, points=40_000)
    err = float((poly2.features(x) - poly2.basis.exact(x)).abs().max())
    assert err <= rep["certificate"] <= rep["eps"]
    assert err >= 0.05 * rep["certificate"]  # not a vacuous bound


def test_each_stage_error_is_the_exact_sup_of_its_block_against_its_basis_stage(poly2):
    """Each block alone, ticket vs basis stage: the recorded construction error is the sup itself
    (a fine grid gets within 1 % of it from below, never above), not a loose bound."""
    net = poly2.network().double()
    for i in (0, 2):  # the log and the exp block
        u = poly2.basis.stages[i][1]
        lo, hi = u.domain
        x = torch.linspace(lo, hi, 400_001, dtype=torch.float64).unsqueeze(1)
        with torch.no_grad():
            got = net.stages[i](x)[:, 0]
        sup = float((got - u(x[:, 0])).abs().max())
        rec = poly2.report["stages"][i]["construction_error"]
        assert 0.99 * rec <= sup <= rec * (1 + 1e-9)
    dense = poly2.report["stages"][1]
    top = math.log(2) * 1.001  # inside the dense block's certified input range [0, ln 2 + E_log]
    z = torch.cartesian_prod(*[torch.linspace(0.0, top, 201, dtype=torch.float64)] * 2)
    with torch.no_grad():
        v = net.stages[1](z)
    K = torch.tensor(poly2.basis.stages[1][1].matrix())
    err = float((v - z @ K.T).abs().max())
    assert err <= dense["construction_error"] * (1 + 1e-9)


def test_one_mask_serves_every_coordinate():
    """The shared blocks' masks do not grow with dim, and the log block treats coordinates alike."""
    t1 = construct_universal("poly", 1, degree=2, eps=0.02, seed=0)
    t3 = construct_universal("poly", 3, degree=2, eps=0.02, seed=0)
    for name in ("stages.0.copies.weight", "stages.0.neurons.weight", "stages.0.out.weight"):
        assert t1.ticket.masks[name].shape == t3.ticket.masks[name].shape
        assert torch.equal(t1.ticket.masks[name], t3.ticket.masks[name])  # the same basis net, the same solution
    net = t3.network().double()
    x = torch.rand(64, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    perm = torch.tensor([2, 0, 1])
    with torch.no_grad():
        assert torch.equal(net.stages[0](x)[:, perm], net.stages[0](x[:, perm]))


# --- readouts -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("family, kw", [("poly", dict(degree=3, eps=0.02)), ("fourier", dict(frequencies=1, eps=0.02)),
                                        ("lipschitz", dict(eps=0.05))])
def test_readout_fitted_on_one_sample_is_within_eps_on_a_fresh_grid_for_every_task(family, kw):
    ut = construct_universal(family, 2 if family != "lipschitz" else 1, seed=1, **kw)
    res = task_batch(ut, 200, seed=4, fit_points=2000, grid_points=10_000)
    assert res["within_eps"] == 1.0 and res["max"] <= kw["eps"]
    tasks = sample_tasks(ut.basis, 3, seed=4)
    x = grid(ut.basis, points=500)
    one = ut.fit_readout(x, tasks(x)[:, 0])  # a single task: vector in, vector out
    assert one.weight.dim() == 1 and float(ut.readout_error(one, x, tasks(x)[:, 0])) <= kw["eps"]


def test_readout_of_a_function_outside_the_family_is_not_within_eps(poly2):
    x = grid(poly2.basis, points=4000)
    y = torch.sign(x[:, 0] - 0.5)  # a step is no polynomial: the check can fail
    r = poly2.fit_readout(x, y)
    assert float(poly2.readout_error(r, x, y)) > 0.5


def test_classification_demo_on_fixture_images(fashion_fixture_dir):
    from lotterylab import data

    splits = data.load("fashion-mnist", root=fashion_fixture_dir, val_size=10, verify=False)
    ut = construct_universal("poly", 2, degree=2, eps=0.05, seed=0)
    res = classification(ut, splits, seed=0)
    assert set(res["readouts"]) == {"ticket", "raw_projection", "unpruned_source", "random_features"}
    assert res["readouts"]["ticket"]["features"] == 5 and res["readouts"]["raw_projection"]["features"] == 2
    assert all(0.0 <= r["test_accuracy"] <= 1.0 for r in res["readouts"].values())


# --- bad input --------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, kw, needle", [
    (("poly", 2), dict(degree=3, eps=0.0), "eps must be"),
    (("poly", 2), dict(degree=3, eps=-1.0), "eps must be"),
    (("poly", 2), dict(degree=3, eps=float("nan")), "eps must be"),
    (("poly", 12), dict(degree=8, eps=0.01), "over the limit"),
    (("fourier", 6), dict(frequencies=4, eps=0.01), "over the limit"),
    (("poly", 0), dict(degree=3), "dim must be"),
    (("poly", 2), dict(), "needs degree"),
    (("fourier", 2), dict(degree=3, frequencies=1), "degree= is for family 'poly'"),
    (("poly", 2), dict(degree=3, domain=(1.0, 0.0)), "domain must be"),
    (("poly", 2), dict(degree=3, domain=(0.0, float("inf"))), "domain must be"),
    (("bogus", 2), dict(degree=3), "family must be"),
    (("lipschitz", 1), dict(eps=1e-4, lipschitz=10.0), "over the limit"),
    (("poly", 2), dict(degree=3, objective="fastest"), "objective must be"),
    (("poly", 1000), dict(degree=1, eps=0.01), "needs a source of about"),
    (("poly", 2), dict(degree=3, lipschitz=2.0), "lipschitz= is for family 'lipschitz'"),
    (("poly", 2), dict(degree=3, seed=-1), "seed must be"),
])
def test_bad_input_is_refused_before_work(args, kw, needle):
    with pytest.raises((BasisError, UniversalError)) as e:
        construct_universal(*args, **kw)
    assert needle in str(e.value)


def test_features_outside_the_domain_are_refused(poly2):
    with pytest.raises(ValueError, match="leaves the ticket's domain"):
        poly2.features(torch.tensor([[0.5, 1.5]]))
    with pytest.raises(ValueError, match=r"x must be \[B, 2\]"):
        poly2.features(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="non-finite"):
        poly2.fit_readout(torch.full((4, 2), 0.5), torch.tensor([0.0, float("nan"), 1.0, 2.0]))


@pytest.mark.parametrize("argv, needle", [
    (["--family", "fourier", "--degree", "3"], "--degree is for --family poly"),
    (["--family", "poly", "--lipschitz", "2"], "--lipschitz is for --family lipschitz"),
    (["--family", "poly", "--dim", "12", "--degree", "8"], "over the limit"),
    (["--family", "lipschitz", "--breakpoints", "5000"], "over the limit"),
    (["--tasks", "0", "--ridge", "0.1"], "with --tasks 0 there are none"),
    (["--val-size", "100"], "are for --dataset"),
    (["--no-verify"], "are for --dataset"),
    (["--tasks", "0", "--seed", "3"], "nothing is drawn"),
])
def test_cli_refuses_flags_it_would_not_honour_before_any_work(argv, needle, tmp_path, capsys):
    from lotterylab.cli import main

    assert main(["universal", *argv, "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_cli_eps_outside_0_1_stops_at_parse_time(capsys):
    from lotterylab.cli import main

    with pytest.raises(SystemExit) as e:
        main(["universal", "--eps", "1.5"])
    assert e.value.code == 2 and "in (0, 1)" in capsys.readouterr().err


def test_layout_constants_agree():
    from lotterylab.universal import families, prune

    assert families.DENSE_COPIES == prune.DENSE_COPIES  # the size check before work sees the real source


@pytest.mark.parametrize("family, dim, kw", [("poly", 2, dict(degree=3)), ("fourier", 2, dict(frequencies=1)),
                                             ("lipschitz", 2, dict())])
def test_compact_features_equal_the_masked_source(family, dim, kw):
    """features() runs on the kept neurons only; the masked source gives the same values."""
    ut = construct_universal(family, dim, eps=0.05, seed=2, **kw)
    x = grid(ut.basis, points=3000)
    with torch.no_grad():
        full = ut.network().double()(x)
    full = full[:, ut.columns] if ut.columns is not None else full
    small = ut.features(x)
    assert small.shape == full.shape
    assert torch.allclose(small, full, rtol=1e-12, atol=1e-12)
    n_small = sum(p.numel() for p in ut.compact().parameters())
    assert n_small < 0.5 * ut.counts()["source_parameters"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_features_and_readouts_on_a_gpu_match_the_cpu(poly2):
    x = grid(poly2.basis, points=2000)
    y = sample_tasks(poly2.basis, 5, seed=0)(x)
    on_gpu = poly2.features(x.cuda())
    assert on_gpu.device.type == "cuda" and torch.allclose(on_gpu.cpu(), poly2.features(x), atol=1e-12)
    r = poly2.fit_readout(x.cuda(), y.cuda())
    assert torch.allclose(poly2.readout_error(r, x.cuda(), y.cuda()).cpu(),
                          poly2.readout_error(poly2.fit_readout(x, y), x, y), atol=1e-9)


def test_cli_reads_your_own_image_files_with_no_verify(fashion_fixture_dir, tmp_path, capsys):
    """--data-root and --no-verify are honoured (the fixture's files are not the pinned ones)."""
    from lotterylab.cli import main

    base = ["universal", "--dim", "2", "--degree", "2", "--eps", "0.05", "--tasks", "5", "--dataset", "fashion-mnist",
            "--data-root", str(fashion_fixture_dir), "--val-size", "10", "--quiet"]
    assert main(base + ["--out", str(tmp_path / "a")]) == 2  # checked against the pinned hashes: refused
    assert "sha" in capsys.readouterr().err.lower()
    assert main(base + ["--no-verify", "--out", str(tmp_path / "b")]) == 0
    res = json.loads((tmp_path / "b" / "result.json").read_text())
    assert res["data"]["train"] == 50 and set(res["classification"]["readouts"]) >= {"ticket", "raw_projection"}
