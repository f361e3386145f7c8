"""Strong tickets by construction for fully connected targets: certificates that hold, real source networks."""

import pytest
import torch
from torch import nn

import lotterylab as ll
from lotterylab import models, rng
from lotterylab.construct_mlp import ConstructionError
from lotterylab.target import UnsupportedTarget, read_mlp

def trained_mlp(act: str, widths=(4, 8, 6, 3), seed=0, steps=150):
    """A small MLP trained to imitate a random teacher on the box [-1, 1]^n0 (a real, trained target)."""
    g = torch.Generator().manual_seed(seed)
    layers = []
    for k in range(len(widths) - 1):
        layers.append(nn.Linear(widths[k], widths[k + 1]))
        if k < len(widths) - 2:
            layers.append(models.make_activation(act))
    net = nn.Sequential(*layers)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    teacher = torch.randn(widths[0], widths[-1], generator=g)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(steps):
        x = torch.rand(64, widths[0], generator=g) * 2 - 1
        loss = ((net(x) - torch.sin(x @ teacher)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


# pure prunings of a source with the target's activation (sign trick or linearised first layer)
FAITHFUL = [("relu", "L+1"), ("relu", "2L"), ("leaky_relu", "L+1"), ("leaky_relu", "2L"), ("tanh", "2L"),
            ("sigmoid", "2L")]
# the papers' idealised first layer (identity), for every activation
IDEALISED = [(a, m) for a in ("gelu", "silu", "elu", "softplus", "sigmoid") for m in ("L+1", "2L")] + [("tanh", "L+1")]


@pytest.mark.parametrize("act,mode,first_layer", [(a, m, None) for a, m in FAITHFUL] +
                         [(a, m, "identity") for a, m in IDEALISED])
def test_guarantee_mode_holds(act, mode, first_layer):
    target = trained_mlp(act)
    eps = 0.01
    ticket = ll.construct(target, mode=mode, eps=eps, seed=1, first_layer=first_layer)
    rep = ticket.report
    L = read_mlp(target).depth
    assert rep["depth"]["source"] == (L + 1 if mode == "L+1" else 2 * L)
    assert len(ticket.source().linears) == rep["depth"]["source"]
    assert rep["certificate"] <= eps
    check = ll.verify(target, ticket, samples=100_000, attack_steps=100)
    assert check["sup_error"] <= rep["certificate"]  # the certificate is an upper bound...
    assert check["sup_error"] <= eps                  # ...and the ticket meets the request


def test_ticket_is_a_pruning_of_one_fixed_source(tmp_path):
    target = trained_mlp("relu")
    ticket = ll.construct(target, mode="L+1", eps=0.02, seed=3)
    src, net = ticket.source(), ticket.network()
    names = {n for n, _ in src.named_parameters()}
    assert set(ticket.masks) == names  # every parameter has a mask
    for (n, s), p in zip(src.named_parameters(), net.parameters()):
        assert torch.equal(p, s * ticket.masks[n])  # kept entries bit-identical, others exactly 0
    # the source is regenerated from the seed alone
    path = ticket.save(tmp_path / "t.ticket")
    back = ll.load_ticket(path)
    x = torch.rand(256, 4) * 2 - 1
    assert torch.equal(back.network()(x), net(x))
    assert back.report["certificate"] == ticket.report["certificate"]
    assert ticket.file_report(path)["bits_per_source_parameter"] < 2


def test_paper_mode_and_report():
    target = trained_mlp("tanh", widths=(6, 10, 4))
    t = ll.construct(target, mode="L+1", eps_param=0.01, seed=0, domain=(-1.0, 1.0))
    rep = t.report
    assert not rep["guarantee_mode"] and rep["eps_param"] == 0.01
    for key in ("certificate", "certificate_per_layer", "widths", "parameters", "subset_sum", "timings_s",
                "theory_width_bound"):
        assert key in rep
    assert rep["parameters"]["ticket"] < rep["parameters"]["source"]
    assert ll.verify(target, t, samples=20_000, attack_steps=20)["sup_error"] <= rep["certificate"]


def test_identity_first_layer_is_labelled():
    target = trained_mlp("tanh", widths=(4, 6, 3))
    t = ll.construct(target, mode="L+1", eps=0.01, first_layer="identity", seed=0)
    assert t.report["first_layer"] == "identity"
    assert t.arch["kwargs"]["acts"][0] == "identity"  # not a pure pruning of a tanh network: said so


def test_growth_adds_real_neurons_without_redrawing():
    # appending rows / columns keeps every drawn value: the basis of growing the source on failures
    full = rng.uniform_grid(7, 11, (10, 12))
    assert torch.equal(full[:6, :9], rng.uniform_grid(7, 11, (6, 9)))
    assert torch.equal(full[6:, 9:], rng.uniform_grid(7, 11, (4, 3), row_offset=6, col_offset=9))
    target = trained_mlp("relu", widths=(4, 6, 3))
    t = ll.construct(target, mode="2L", eps_param=0.002, seed=0, rho_first=12)  # few candidates: failures
    ss = t.report["subset_sum"]
    assert ss["failed_first_try"] > 0 and ss["neurons_added"] > 0 and ss["unresolved"] == 0


def test_clear_errors():
    with pytest.raises(UnsupportedTarget, match="Conv2d"):
        read_mlp(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2, 2)))
    with pytest.raises(UnsupportedTarget, match="Hardswish"):
        read_mlp(nn.Sequential(nn.Linear(2, 2), nn.Hardswish(), nn.Linear(2, 2)))
    with pytest.raises(UnsupportedTarget, match="last layer"):
        read_mlp(nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2), nn.Sigmoid()))

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 3)

        def forward(self, x):
            return self.b(torch.relu(self.a(x)) + x)

    with pytest.raises(UnsupportedTarget, match="residual"):
        read_mlp(Residual())
    target = trained_mlp("relu", widths=(3, 4, 2), steps=1)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ConstructionError, match="eps"):
            ll.construct(target, eps=bad)
    with pytest.raises(ConstructionError, match="lower > upper"):
        ll.construct(target, domain=(torch.tensor([0.0, 1.0, 0.0]), torch.tensor([1.0, 0.0, 1.0])))
    with torch.no_grad():
        target[0].weight[0, 0] = float("nan")
    with pytest.raises(UnsupportedTarget, match="non-finite"):
        ll.construct(target)
    with pytest.raises(ConstructionError, match="sign trick"):
        ll.construct(trained_mlp("tanh", widths=(3, 4, 2), steps=1), first_layer="sign_trick")
    # a linearised first layer whose remainder is too large for eps says what to do instead
    with pytest.raises(ConstructionError, match="first_layer='identity'"):
        ll.construct(trained_mlp("gelu"), mode="L+1", eps=0.01, seed=1)


def test_functional_forward_is_read():
    class F(nn.Module):
        def __init__(self):
            super().__init__()
            self.l1, self.l2 = nn.Linear(5, 7), nn.Linear(7, 2)

        def forward(self, x):
            return self.l2(torch.nn.functional.leaky_relu(self.l1(x.flatten(1)), 0.2))

    t = read_mlp(F())
    assert t.activations == ["leaky_relu:0.2"] and t.widths == [5, 7, 2]


def test_inputs_constant_over_the_domain_are_folded_into_biases():
    target = trained_mlp("relu")
    lo, hi = torch.tensor([-1.0, 0.3, -1.0, -1.0]), torch.tensor([1.0, 0.3, 1.0, 1.0])  # input 1 is fixed at 0.3
    ticket = ll.construct(target, mode="L+1", eps=0.01, seed=0, domain=(lo, hi))
    assert ticket.report["constant_inputs_folded"] == 1
    assert not ticket.masks["linears.1.weight"].view(ticket.masks["linears.1.weight"].shape[0], -1).any(0)[
        ticket.masks["linears.0.weight"][:, 1]].any()  # no copy of input 1 is used
    check = ll.verify(target, ticket, domain=(lo, hi), samples=20_000, attack_steps=50)
    assert check["sup_error"] <= ticket.report["certificate"] <= 0.01


def test_bias_correction_removes_the_mean_error_on_the_data():
    target = trained_mlp("relu")
    g = torch.Generator().manual_seed(5)
    calib, held_out = torch.rand(512, 4, generator=g), torch.rand(4096, 4, generator=g)  # inputs in [0, 1]: mean 0.5
    kw = dict(mode="L+1", eps_param=0.05, seed=0, domain=(0.0, 1.0))
    plain = ll.construct(target, **kw)
    fixed = ll.construct(target, **kw, calibration=calib)
    assert plain.report["bias_correction"] is None
    bc = fixed.report["bias_correction"]
    assert bc["samples"] == 512 and max(bc["max_shift_per_layer"]) > 0
    with torch.no_grad():
        y = target(held_out).double()
        bias_plain = (plain.network()(held_out).double() - y).mean(0).abs().max()
        bias_fixed = (fixed.network()(held_out).double() - y).mean(0).abs().max()
    assert bias_fixed < 0.5 * bias_plain  # the mean error on unseen inputs of the same distribution shrinks
    src, net = fixed.source(), fixed.network()
    for (n, s), p in zip(src.named_parameters(), net.parameters()):
        assert torch.equal(p, s * fixed.masks[n])  # still a pruning of the same kind of source
    # the certificate stays honest: it counts the correction as a bias error
    assert ll.verify(target, fixed, domain=(0.0, 1.0), samples=20_000, attack_steps=20)["sup_error"] <= \
        fixed.report["certificate"]
    with pytest.raises(ConstructionError, match="paper mode"):
        ll.construct(target, mode="L+1", eps=0.05, calibration=calib)
    with pytest.raises(ConstructionError, match="4 values"):
        ll.construct(target, **kw, calibration=torch.rand(10, 5))


@pytest.mark.parametrize("act,mode", [("relu", "2L"), ("relu", "L+1"), ("leaky_relu", "2L")])
def test_error_compensation_cancels_correlated_errors(act, mode):
    # inputs on a 3-dimensional manifold in [0, 1]^32 (as pixels are): later weights can absorb earlier errors
    target = trained_mlp(act, widths=(32, 12, 3), steps=100)
    g = torch.Generator().manual_seed(7)
    A = torch.randn(3, 32, generator=g)
    calib, held_out = (torch.sigmoid(torch.randn(n, 3, generator=g) @ A) for n in (1024, 4096))
    kw = dict(mode=mode, eps_param=0.05, seed=0, domain=(0.0, 1.0), calibration=calib)
    plain, comp = ll.construct(target, **kw), ll.construct(target, **kw, compensate=True)
    assert plain.report["compensation"] is None
    shifts = comp.report["compensation"]["max_target_shift_per_layer"]
    assert shifts[0] > 0 and all(s is not None for s in shifts)  # every (fully connected) layer took part
    with torch.no_grad():
        y = target(held_out).double()
        errs = [t.network()(held_out).double() - y for t in (plain, comp)]
    # its spread (bias correction handles the mean, up to eps_param) shrinks on unseen inputs of the same distribution
    spread = [(e - e.mean(0)).pow(2).mean().sqrt() for e in errs]
    assert spread[1] < 0.8 * spread[0], spread  # measured: x0.50 (L+1) to x0.76
    src, net = comp.source(), comp.network()
    for (n, s), p in zip(src.named_parameters(), net.parameters()):
        assert torch.equal(p, s * comp.masks[n])  # still a pruning of the same kind of source
    assert comp.report["subset_sum"]["unresolved"] == 0
    with pytest.raises(ConstructionError, match="needs calibration"):
        ll.construct(target, mode=mode, eps_param=0.05, compensate=True)


@pytest.mark.parametrize("mode", ["2L", "L+1"])
def test_zero_target_weights_are_skipped_and_stay_exact(mode):
    # pruned targets (IMP): a weight that is exactly 0 is met by the empty subset; nothing is solved or kept for it
    target = trained_mlp("relu")
    with torch.no_grad():
        target[0].weight[:, ::2] = 0.0
        target[2].weight[::3] = 0.0
    ticket = ll.construct(target, mode=mode, eps=0.01, seed=0, domain=(-1.0, 1.0))
    ss = ticket.report["subset_sum"]
    zeros = int((target[0].weight == 0).sum() + (target[2].weight == 0).sum())
    assert ss["zero_weights_skipped"] >= zeros and ss["unresolved"] == 0
    assert ticket.report["parameters"]["target_nonzero"] == ticket.report["parameters"]["target"] - zeros
    check = ll.verify(target, ticket, domain=(-1.0, 1.0), samples=20_000, attack_steps=30)
    assert check["sup_error"] <= ticket.report["certificate"] <= 0.01


def test_large_biases_and_min_l1_copies():
    # inputs fixed over the domain fold into the first layer's bias (as MNIST's border pixels, which
    # give biases near -8): the constants' scale widens to reach it, so nothing is left unresolved
    target = trained_mlp("relu", widths=(12, 8, 6, 3))
    with torch.no_grad():
        target[0].weight[:, 2:] = -1.2  # ten fixed inputs at 1.0: folded biases near -12
    lo, hi = torch.full((12,), 1.0), torch.full((12,), 1.0)
    lo[:2] = -1.0
    t = ll.construct(target, mode="L+1", eps_param=0.01, seed=0, domain=(lo, hi))
    ss = t.report["subset_sum"]
    assert t.report["constant_inputs_folded"] == 10
    assert ss["unresolved"] == 0 and all(u["biases"] == 0 for u in ss["unresolved_per_layer"])
    assert ll.verify(target, t, domain=(lo, hi), samples=20_000, attack_steps=20)["sup_error"] <= \
        t.report["certificate"]
    # min_l1 subsets in the copy layers: smaller l1 masses, so smaller amplification of copy errors
    l1 = ll.construct(target, mode="L+1", eps_param=0.01, seed=0, domain=(lo, hi), copy_objective="min_l1")
    assert l1.report["copy_objective"] == "min_l1" and t.report["copy_objective"] == "min_cardinality"
    assert l1.report["certificate"] < t.report["certificate"]
    with pytest.raises(ConstructionError, match="copy_objective"):
        ll.construct(target, mode="L+1", eps_param=0.01, copy_objective="first_hit")
