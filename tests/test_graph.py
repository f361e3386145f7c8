"""The one network representation: a read target's forward equals the module's, its interval bounds
contain every sampled activation, and ``to_module`` rebuilds a real module that reads back the same."""

import copy

import pytest
import torch
from torch import nn

from lotterylab.target import read_mlp, read_net

from targets import SHAPE, small_cnn, small_resnet, trained_mlp


def _graphs():
    bn = small_cnn("relu", batch_norm=True, steps=5)
    with torch.no_grad():  # non-trivial statistics: BN folding must be exact, not the identity
        bn[4].running_mean.uniform_(-0.5, 0.5)
        bn[4].running_var.uniform_(0.5, 2.0)
    return {"mlp": (trained_mlp("tanh", steps=20), None), "cnn-bn": (bn, SHAPE),
            "resnet": (small_resnet("relu", steps=2), SHAPE)}


@pytest.fixture(scope="module")
def graphs():
    out = {}
    for name, (module, shape) in _graphs().items():
        out[name] = (module, shape, read_net(module, shape) if shape else read_mlp(module))
    return out


def _inputs(shape, n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *(shape or (4,)), generator=g, dtype=torch.float64) * (1 if shape else 2) - (0 if shape else 1)


@pytest.mark.parametrize("name", ["mlp", "cnn-bn", "resnet"])
def test_forward_equals_the_module(graphs, name):
    module, shape, g = graphs[name]
    x = _inputs(shape)
    ref = copy.deepcopy(module).double().eval()(x)
    assert torch.allclose(g.forward(x)[-1], ref, atol=1e-10, rtol=0)


@pytest.mark.parametrize("name", ["mlp", "cnn-bn", "resnet"])
def test_bounds_contain_every_sampled_activation(graphs, name):
    module, shape, g = graphs[name]
    lo, hi = (torch.zeros(SHAPE[0]), torch.ones(SHAPE[0])) if shape else (-torch.ones(4), torch.ones(4))
    H = g.bounds(lo.double(), hi.double())
    x = _inputs(shape, n=512, seed=1)
    x[0], x[1] = (0.0, 1.0) if shape else (-1.0, 1.0)  # the box's corners
    outs = g.forward(x)
    for k in range(g.depth):
        src = g.input_of(k)
        h = x if src < 0 else outs[src]
        per_unit = h.abs().reshape(h.shape[0], len(H[k]), -1).amax((0, 2))  # per unit / channel
        assert (per_unit <= H[k] + 1e-9).all(), (name, k)
        if k == 0:  # the input box itself: reached at its corners, so the bound is tight there
            assert torch.allclose(per_unit, H[0])


@pytest.mark.parametrize("name", ["mlp", "cnn-bn", "resnet"])
def test_to_module_round_trips(graphs, name):
    module, shape, g = graphs[name]
    rebuilt = g.to_module()
    assert isinstance(rebuilt, nn.Module)
    x = _inputs(shape, seed=2)
    with torch.no_grad():
        assert torch.allclose(rebuilt(x), g.forward(x)[-1], atol=1e-12, rtol=0)
    again = read_net(rebuilt, shape) if shape else read_mlp(rebuilt)
    assert [w.shape for w in again.weights] == [w.shape for w in g.weights]
    for a, b in zip(again.weights + again.biases, g.weights + g.biases):
        assert torch.equal(a.reshape(b.shape), b)
    assert again.activations == g.activations
