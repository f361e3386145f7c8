"""Reading targets into the layer graph: functional forwards, BatchNorm folded exactly."""

import torch
from torch import nn

import lotterylab as ll
from lotterylab.target import read_mlp, read_net

from targets import SHAPE, small_cnn


def test_functional_forward_is_read():
    class F(nn.Module):
        def __init__(self):
            super().__init__()
            self.l1, self.l2 = nn.Linear(5, 7), nn.Linear(7, 2)

        def forward(self, x):
            return self.l2(torch.nn.functional.leaky_relu(self.l1(x.flatten(1)), 0.2))

    t = read_mlp(F())
    assert t.activations == ["leaky_relu:0.2"] and t.widths == [5, 7, 2]


def test_batch_norm_is_folded_exactly():
    target = small_cnn("relu", batch_norm=True)
    with torch.no_grad():  # non-trivial statistics
        bn = target[4]
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    t = read_net(target, SHAPE)
    assert len(t.weights) == 3 and t.widths == [1, 4, 4, 5]
    x = torch.rand(8, *SHAPE, dtype=torch.float64)
    ref = target.double()(x)
    assert torch.allclose(t.forward(x)[-1], ref, atol=1e-9, rtol=0)
    target.float()
    ticket = ll.construct(target, mode="2L", eps_param=0.01, seed=0, domain=(0.0, 1.0), input_shape=SHAPE)
    with torch.no_grad():
        err = (ticket.network()(x.float()) - target(x.float())).abs().max()
    assert err < 0.5  # paper mode: no certificate asked, but the BN-folded ticket tracks the target
