"""Structured tickets (da Cunha et al. 2023): whole kernels and filters, compact networks equal to the
masked source, certified guarantee mode, and clear refusals."""

import pytest
import torch
from torch import nn

import lotterylab as ll
from lotterylab.construct import ConstructionError
from lotterylab.structured import cost, plan_macs, structure

from targets import SHAPE, small_cnn, trained_on_templates

_BUILT: dict = {}


def built(act="relu", **kw):
    key = (act, tuple(sorted(kw.items())))
    if key not in _BUILT:
        target = small_cnn(act)
        kw = {"mode": "structured", "eps_param": 0.05, **kw}
        _BUILT[key] = target, ll.construct(target, seed=0, domain=(0.0, 1.0), input_shape=SHAPE, **kw)
    return _BUILT[key]


def test_structured_ticket_keeps_whole_kernels_and_removes_whole_filters():
    _, ticket = built()
    s = structure(ticket)
    assert s["structured"] and s["removed_channels_not_zero"] == 0
    assert len(s["layers"]) == 2  # both 3x3 layers
    for layer in s["layers"]:
        assert layer["kernels_partial"] == 0
        assert 0 < layer["kernels_kept"] < layer["kernels_total"]
        assert 0 < layer["filters_kept"] < layer["filters_total"]  # unused expansion filters are gone
    # entry by entry: every (output, expansion channel) block of a 3x3 layer is all kept or all pruned,
    # and a removed expansion channel has no kept weight in, no bias, no weight out
    for k in (1, 3):
        M = ticket.masks[f"layers.{k}.weight"].bool()
        U, Ub = ticket.masks[f"layers.{k - 1}.weight"].bool().flatten(1), ticket.masks[f"layers.{k - 1}.bias"].bool()
        real = U.any(1)
        per = M.flatten(2).sum(2)[:, real]
        assert bool(((per == 0) | (per == 9)).all())
        dead = ~M.flatten(2).any(2).any(0)
        assert not U[dead].any() and not Ub[dead].any()
    # the unstructured ticket of the same kind is not: the check can fail
    target = small_cnn("relu")
    two = ll.construct(target, mode="2L", eps_param=0.05, seed=0, domain=(0.0, 1.0), input_shape=SHAPE)
    assert not structure(two)["structured"] and structure(two)["layers"][0]["kernels_partial"] > 0


@pytest.mark.parametrize("fold", [False, True])
def test_compact_equals_the_masked_source_and_reloads(fold, tmp_path):
    _, ticket = built()
    net = ticket.network().double().eval()
    small = ticket.compact(fold=fold)
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.rand(64, *SHAPE, generator=g, dtype=torch.float64),
                   torch.zeros(1, *SHAPE, dtype=torch.float64), torch.ones(1, *SHAPE, dtype=torch.float64)])
    with torch.no_grad():
        a, b = net(x), small(x)
    assert float((a - b).abs().max()) <= 1e-6 * max(1.0, float(a.abs().max()))
    c, c_src = cost(small, SHAPE), cost(net, SHAPE)
    assert c["parameters"] < c_src["parameters"] and c["macs"] < c_src["macs"]  # physically smaller
    assert plan_macs(ticket.arch["kwargs"]["plan"], SHAPE) == c_src["macs"]  # the source's count, unbuilt
    back = ll.load_ticket(ticket.save(tmp_path / "t.safetensors")).compact(fold=fold)
    sd, sd2 = small.state_dict(), back.state_dict()
    assert sd.keys() == sd2.keys() and all(torch.equal(sd[k], sd2[k]) for k in sd)


@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_guarantee_mode_certifies_a_small_cnn(act):
    # the worst-case certificate multiplies each layer's l-inf error by its l1 row mass (~30 here), so a
    # d = 9 kernel sum would need ~1e-4 per entry for eps = 0.5: out of reach at n <= 512; eps = 20-30 is
    # certified (a non-constant ticket: both conv layers keep kernels), and the error found by sampling,
    # border-heavy inputs and attack stays below it. (tanh does not fold: its compact network holds every
    # kept expansion channel, so its check is smaller.)
    target = small_cnn(act)
    eps = {"relu": 20.0, "tanh": 30.0}[act]
    ticket = ll.construct(target, mode="structured", eps=eps, seed=0, domain=(0.0, 1.0), input_shape=SHAPE,
                          max_growth_rounds=4)
    cert = ticket.report["certificate"]
    assert cert <= eps
    # guarantee mode asks for min_l1, which the kernel heuristic does not have: the report says what ran
    assert ticket.report["objective"] == "min_l1" and ticket.report["kernel_objective"] == "min_cardinality"
    s = structure(ticket)
    assert s["structured"] and all(layer["kernels_kept"] > 0 for layer in s["layers"])
    small = {"relu": (2000, 20), "tanh": (300, 4)}[act]
    check = ll.verify(target, ticket, domain=(0.0, 1.0), samples=small[0], attack_steps=small[1])
    assert 0 < check["sup_error"] <= cert


def test_filter_granularity_keeps_every_kernel_of_a_kept_filter():
    _, ticket = built(granularity="filter", eps_param=0.3)
    s = structure(ticket)
    assert s["structured"]
    for layer in s["layers"]:
        assert layer["filters_partial"] == 0 and layer["kernels_partial"] == 0
        assert layer["kernels_kept"] == layer["filters_kept"] * layer["outputs"]
    _, kernel = built(eps_param=0.3)
    assert any(layer["filters_partial"] > 0 for layer in structure(kernel)["layers"])


def test_weight_granularity_is_the_unstructured_ticket_of_the_same_source():
    # (no growth: both keep the source's first draw, so the architectures are equal too)
    _, ticket = built(granularity="weight", eps_param=0.05, rho_kernel=64, max_growth_rounds=0)
    _, kernel = built(eps_param=0.05, rho_kernel=64, max_growth_rounds=0)
    assert ticket.init == kernel.init and ticket.arch == kernel.arch  # one source
    assert not structure(ticket)["structured"]


def test_refusals_name_the_limit_and_the_way_out():
    wide = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(8 * 36, 5))
    wide = trained_on_templates(wide, 0, 5)
    with pytest.raises(ConstructionError, match="limit on d.*granularity='kernel'"):
        ll.construct(wide, mode="structured", granularity="filter", eps_param=0.1, input_shape=SHAPE,
                     domain=(0.0, 1.0))
    with pytest.raises(ConstructionError, match="granularity='filter' is for mode='structured'"):
        ll.construct(wide, mode="2L", granularity="filter", eps_param=0.1, input_shape=SHAPE)
    with pytest.raises(ConstructionError, match="rho_kernel sizes the expansion layers"):
        ll.construct(wide, mode="2L", rho_kernel=64, eps_param=0.1, input_shape=SHAPE)
    with pytest.raises(ConstructionError, match="granularity must be one of"):
        ll.construct(wide, mode="structured", granularity="channel", eps_param=0.1, input_shape=SHAPE)
