"""What a construction starts from: bad arguments and targets refused with the fix, before any work;
inputs constant over the domain folded into biases."""

import pytest
import torch
from torch import nn

import lotterylab as ll
from lotterylab.construct import ConstructionError
from lotterylab.target import UnsupportedTarget, read_mlp, read_net

from targets import SHAPE, small_cnn, trained_mlp


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
    with pytest.raises(ConstructionError, match="first_layer='moments'"):
        ll.construct(trained_mlp("gelu"), mode="L+1", eps=0.01, seed=1, first_layer="linearize")


def test_clear_errors_for_unsupported_convolutions():
    for bad, what in ((nn.Conv2d(1, 2, 3, groups=1, dilation=2), "dilation"),
                      (nn.Conv2d(2, 2, 3, groups=2), "groups"),
                      (nn.ConvTranspose2d(1, 2, 3), "ConvTranspose2d")):
        cin = bad.in_channels
        net = nn.Sequential(bad, nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
        with pytest.raises(UnsupportedTarget, match=what):
            read_net(net, (cin, 8, 8))

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(1, 1, 3, padding=1), nn.Conv2d(1, 1, 3, padding=1)

        def forward(self, x):
            return self.b(torch.relu(self.a(x)) + x)

    with pytest.raises(UnsupportedTarget, match="node 'add'.*residual"):
        read_net(Residual(), (1, 8, 8))

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.att = nn.MultiheadAttention(4, 1)

        def forward(self, x):
            return self.att(x, x, x)[0]

    with pytest.raises(UnsupportedTarget, match="att"):
        read_net(Attention(), (2, 4))
    # sigmoid copies (phi(0) != 0) cannot feed a zero-padded conv exactly: refused with the way out
    with pytest.raises(ConstructionError, match="first_layer='identity'"):
        ll.construct(small_cnn("sigmoid", steps=1), eps_param=0.01, input_shape=SHAPE)
    with pytest.raises(UnsupportedTarget, match="input_shape"):
        ll.construct(small_cnn("relu", steps=1), eps_param=0.01)


def test_inputs_constant_over_the_domain_are_folded_into_biases():
    target = trained_mlp("relu")
    lo, hi = torch.tensor([-1.0, 0.3, -1.0, -1.0]), torch.tensor([1.0, 0.3, 1.0, 1.0])  # input 1 is fixed at 0.3
    ticket = ll.construct(target, mode="L+1", eps=0.01, seed=0, domain=(lo, hi))
    assert ticket.report["constant_inputs_folded"] == 1
    assert not ticket.masks["linears.1.weight"].view(ticket.masks["linears.1.weight"].shape[0], -1).any(0)[
        ticket.masks["linears.0.weight"][:, 1]].any()  # no copy of input 1 is used
    check = ll.verify(target, ticket, domain=(lo, hi), samples=20_000, attack_steps=50)
    assert check["sup_error"] <= ticket.report["certificate"] <= 0.01
