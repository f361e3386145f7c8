"""Pruning at initialisation: SNIP, GraSP, SynFlow, magnitude, random, ER/ERK; ablations."""

import pytest
import torch

from lotterylab import models
from lotterylab.find.pai import PaIConfig, ablate, prune_at_init
from lotterylab.find.scores import collapsed_layers, connected_paths, layer_densities

from targets import finder_mlp as mlp


@pytest.mark.parametrize("method", ["snip", "grasp", "synflow", "magnitude", "random"])
@pytest.mark.parametrize("scope", ["global", "layerwise"])
def test_pai_density(tiny_data, method, scope):
    model = models.create("conv2", input_shape=(1, 8, 8), seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for d in (0.2, 0.01):
        mask = prune_at_init(model, tiny_data, PaIConfig(method=method, density=d, scope=scope, batches=2,
                                                         synflow_iterations=10))
        assert abs(mask.density - d) <= 0.005
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # model untouched


@pytest.mark.parametrize("scheme", ["er", "erk"])
def test_random_er_erk_per_layer(tiny_data, scheme):
    model = models.create("conv2", input_shape=(1, 8, 8), seed=0)
    mask = prune_at_init(model, tiny_data, PaIConfig(method="random", density=0.05, layer_density=scheme))
    shapes = {n: m.shape for n, m in mask.items()}
    want = layer_densities(shapes, 0.05, scheme)
    for n, m in mask.items():
        assert abs(float(m.float().mean()) - want[n]) <= 1.0 / m.numel() + 1e-9
    assert abs(mask.density - 0.05) <= 0.005


def test_synflow_avoids_layer_collapse_where_magnitude_and_random_do_not():
    model = models.create("conv2", input_shape=(1, 16, 16), seed=0)  # 1.1M weights, 0.1 %: ~1100 kept
    shape = (1, 16, 16)
    syn = prune_at_init(model, None, PaIConfig(method="synflow", density=0.001), input_shape=shape)
    assert collapsed_layers(syn) == []
    assert all(int(m.sum()) > 0 for m in syn.values())
    assert connected_paths(model, syn, shape) > 0
    rnd = prune_at_init(model, None, PaIConfig(method="random", density=0.001))
    mag = prune_at_init(model, None, PaIConfig(method="magnitude", density=0.001))
    assert connected_paths(model, rnd, shape) == 0 and connected_paths(model, mag, shape) == 0


def test_pai_ablations(tiny_data):
    model = mlp()
    base = prune_at_init(model, tiny_data, PaIConfig(method="snip", density=0.1, batches=2))
    shuf = prune_at_init(model, tiny_data, PaIConfig(method="snip", density=0.1, batches=2, ablation="shuffle"))
    inv = prune_at_init(model, tiny_data, PaIConfig(method="snip", density=0.1, batches=2, ablation="invert"))
    assert base.layer_density() == shuf.layer_density() == inv.layer_density()
    assert not base.equal(shuf) and not base.equal(inv)
    for n in base:  # inverted keeps the lowest scores: no overlap at 10 % density
        assert not (base[n] & inv[n]).any()
    fresh, same = ablate(model, base, "reinit", seed=5)
    assert same is base
    assert not torch.equal(fresh.layers[1].weight, model.layers[1].weight)
    with pytest.raises(ValueError, match="pass data"):
        prune_at_init(model, None, PaIConfig(method="snip"))
