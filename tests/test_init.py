import math

import pytest
import torch
from torch import nn

from lotterylab import init as init_mod
from lotterylab import models


def test_fans_and_scales():
    assert init_mod.fans((300, 784)) == (784, 300)
    assert init_mod.fans((64, 3, 3, 3)) == (27, 576)
    d = init_mod.resolve("glorot_normal", (300, 784))
    assert d == {"dist": "normal", "mean": 0.0, "std": math.sqrt(2 / 1084)}
    assert init_mod.resolve("kaiming_uniform", (10, 6))["high"] == pytest.approx(1.0)
    assert init_mod.resolve({"dist": "uniform", "scale": 2}, (3, 3)) == {"dist": "uniform", "low": -2.0, "high": 2.0}
    assert init_mod.resolve({"dist": "signed_constant", "value": 0.5}, (3, 3))["value"] == 0.5


def test_unknown_scheme_and_override():
    with pytest.raises(ValueError, match="unknown init scheme"):
        init_mod.resolve("xavier", (3, 3))
    model = nn.Sequential(nn.Linear(3, 2))
    with pytest.raises(ValueError, match="lacks"):
        init_mod.initialize(model, {"overrides": {"nope.weight": "zeros"}}, 0)


def test_initialize_matches_distribution_and_is_deterministic():
    m1 = models.create("lenet_300_100", seed=3)
    m2 = models.create("lenet_300_100", seed=3)
    m3 = models.create("lenet_300_100", seed=4)
    for (n, a), b, c in zip(m1.named_parameters(), m2.parameters(), m3.parameters()):
        assert torch.equal(a, b), n
        if a.dim() > 1:
            assert not torch.equal(a, c)
    w = m1.layers[1].weight
    assert float(w.detach().std()) == pytest.approx(math.sqrt(2 / (784 + 300)), rel=0.02)
    assert torch.all(m1.layers[1].bias == 0)


def test_norm_layers_get_ones_and_zeros():
    m = models.create("resnet20", seed=0)
    assert torch.all(m.bn.weight == 1) and torch.all(m.bn.bias == 0)
    spec = init_mod.InitSpec(weight={"dist": "uniform"}, overrides={"fc.bias": {"dist": "constant", "value": 0.5}})
    init_mod.initialize(m, spec, 0)
    assert torch.all(m.fc.bias == 0.5) and m.conv.weight.abs().max() <= 1.0
