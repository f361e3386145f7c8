"""First-layer schemes: what a univariate copy is worth, checked against the network it builds; the
idealised identity layer is labelled as such."""

import pytest
import torch

import lotterylab as ll
from lotterylab import activations, subsetsum
from lotterylab.construct import ConstructionError
from lotterylab.construct.engine import two_stage
from lotterylab.construct.first_layer import LinearRegime, MomentMatching, SignTrick, first_layer_for

from targets import trained_mlp


@pytest.mark.parametrize("act", ["relu", "leaky_relu:0.2"])
def test_sign_trick_sums_are_the_network_they_build(act):
    """Copies phi(a x) weighted by v, split by the sign of a into side sums p and q: the scheme's
    ``realised`` pre-activation is exactly the pruned network's, and the side targets it asks for
    move the effective weights by exactly the requested shift."""
    psi = activations.get(act)
    s = first_layer_for(psi, "sign_trick")
    assert isinstance(s, SignTrick) and s.sides == 2
    g = torch.Generator().manual_seed(0)
    a, v = torch.randn(40, generator=g, dtype=torch.float64), torch.randn(40, generator=g, dtype=torch.float64)
    sides, side, coef, keep, mult = s.candidates(a, torch.zeros(40, dtype=torch.long))
    assert sides == 2 and keep.all() and torch.equal(coef, a.abs())
    pick = torch.rand(40, generator=g) < 0.5
    p = (v * coef * pick * (side == 0)).sum().view(1, 1, 1)  # realised side sums
    q = (v * coef * pick * (side == 1)).sum().view(1, 1, 1)
    x = torch.linspace(-2, 2, 41, dtype=torch.float64).view(-1, 1)
    net = (v * pick * psi(a * x)).sum(1, keepdim=True)  # the pruned network's output for input x

    def lin(h, w):
        return h @ w.reshape(1, -1).T

    assert torch.allclose(s.realised(x, p, q, lin), net, atol=1e-12)
    D = torch.randn(3, 2, 2, 1, generator=g, dtype=torch.float64)
    assert torch.allclose(s.effective(s.side_targets(D)[:, :, 0], s.side_targets(D)[:, :, 1]), D, atol=1e-12)
    # both sides aim at w / (1 + slope) and -w / (1 + slope): p - slope q = w when both are met
    w = 0.7
    p_t, q_t = w * mult[0], w * mult[1]
    assert torch.allclose(s.effective(p_t.view(1, 1, 1), q_t.view(1, 1, 1)), torch.tensor(w, dtype=torch.float64))


def test_linear_regime_and_refusals():
    tanh = activations.get("tanh")
    lin = first_layer_for(tanh, "linearize", s1=0.01)
    assert isinstance(lin, LinearRegime) and lin.sides == 1 and lin.scaled
    assert lin.a_scale(2.0) == 0.005 and lin.w_scale(1.0, 0.005) == 1.0 / (0.005 * tanh.dphi0)
    ident = first_layer_for(tanh, "identity")
    assert ident.psi.name == "identity" and not ident.scaled and ident.bias_offset is None
    assert first_layer_for(activations.get("sigmoid"), "linearize").bias_offset == 0.5  # phi(0) to the bias
    with pytest.raises(ConstructionError, match="sign trick needs a ReLU-type"):
        first_layer_for(tanh, "sign_trick")
    with pytest.raises(ConstructionError, match="linearize needs a smooth"):
        first_layer_for(activations.get("relu"), "linearize")


def test_identity_first_layer_is_labelled():
    target = trained_mlp("tanh", widths=(4, 6, 3))
    t = ll.construct(target, mode="L+1", eps=0.01, first_layer="identity", seed=0)
    assert t.report["first_layer"] == "identity"
    assert t.arch["kwargs"]["acts"][0] == "identity"  # not a pure pruning of a tanh network: said so


@pytest.mark.parametrize("act", ["tanh", "sigmoid", "gelu", "silu", "elu", "softplus"])
def test_taylor_coefficients_match_autograd(act):
    """The table's c_k = phi^(k)(0) / k! against derivatives of the module itself (ELU: its left branch)."""
    psi = activations.get(act)
    z = torch.tensor(-1e-9 if act == "elu" else 0.0, dtype=torch.float64, requires_grad=True)
    y, fact = psi(z), 1.0
    for k in range(1, 5):
        (y,) = torch.autograd.grad(y, z, create_graph=True)
        fact *= k
        assert abs(float(y.detach()) / fact - psi.taylor[k - 1]) < 1e-6, k


@pytest.mark.parametrize("act", ["tanh", "sigmoid", "gelu", "silu", "elu", "softplus"])
def test_moment_matching_error_bounds_the_copies_it_keeps(act):
    """Random subsets of copies phi(a x) weighted by v: the scheme's certificate term (weight error, the
    matched moments' components, the remainder) bounds the subset's real error against w x on the
    whole input range, and the remainder is of higher order than the linearisation's."""
    psi = activations.get(act)
    s1, U = 0.3, 2.0
    m = first_layer_for(psi, "moments", s1)
    assert isinstance(m, MomentMatching) and m.dim == 2 and m.orders == psi.matched_moments()[:1]
    a_max = m.a_scale(U)  # |a x| <= s1 on |x| <= U
    g = torch.Generator().manual_seed(1)
    a = (torch.rand(64, generator=g, dtype=torch.float64) * 2 - 1) * a_max
    v = torch.randn(64, generator=g, dtype=torch.float64)
    sides, side, coef, keep, mult = m.candidates(a, torch.zeros(64, dtype=torch.long), a_max)
    assert coef.shape == (64, 2) and (keep == (a > 0)).all() if act == "elu" else keep.all()
    x = torch.linspace(-U, U, 2001, dtype=torch.float64).view(-1, 1)
    for trial in range(20):
        pick = (torch.rand(64, generator=g) < 0.2) & keep
        sums = (v.view(-1, 1) * coef * pick.view(-1, 1)).sum(0)  # the solver's sums: [weight part, moment]
        w = float(sums[0]) + 0.01 * (trial - 10)  # some weight error too
        net = ((v * pick) * (psi(a * x) - psi.phi0)).sum(1)  # the copies' contribution, phi(0) in the bias
        real = float((net - w * x.view(-1)).abs().max())
        mom = torch.zeros(1, 1, 2, 1, dtype=torch.float64)  # the ledger's layout: [rows, units, 2, taps]
        mom[0, 0, 0, 0] = sums[1]

        def cell(val):
            return torch.tensor(float(val), dtype=torch.float64).view(1, 1, 1)

        E, _, _ = m.product_error(cell(sums[0]), None, cell((v.abs() * pick).sum()), cell(w), cell(U), None,
                                  a_max, mom)
        assert real <= float(E) * (1 + 1e-9) + 1e-15
    # what moment matching leaves is far smaller than the linearisation's remainder at the same scale
    assert m.remainder(0.05) < 0.5 * 0.05 * psi.remainder(0.05)


def test_two_stage_subset_sum_reaches_what_one_instance_cannot():
    """Moment matching with phi(0) != 0: bias targets ~1e5 met to 1e-6 from multi-scale constants.
    One exact instance over 32 of them almost never does; coarse then fine halves of 64 meet a third
    (the construction grows constants for the rest), and the kept union sums to what is reported."""
    g = torch.Generator().manual_seed(0)
    B, n = 200, 64
    kappa = torch.nn.functional.softplus(torch.rand(n, generator=g, dtype=torch.float64) * 32 - 16)
    w = (torch.rand(B, n, generator=g, dtype=torch.float64) * 2 - 1) * 2e4
    values, targets = w * kappa, (torch.rand(B, generator=g, dtype=torch.float64) * 2 - 1) * 1e5
    eps = 1e-6

    def run(v, t, e, objective=None):
        return subsetsum.solve(v, t, e, objective or "min_cardinality")

    one = run(values[:, -32:], targets, eps)
    mask, sums, ok = two_stage(run, values, kappa, targets, eps)
    assert ok.float().mean() > 0.25 and one.ok.float().mean() < 0.05
    assert torch.allclose(sums, (values * mask).sum(1), rtol=0, atol=1e-9)
    assert ((sums - targets).abs()[ok] <= eps).all()
