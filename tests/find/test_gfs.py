"""Greedy forward selection and the pre-training study, on small data and trained models."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lotterylab import models
from lotterylab.find.gfs import GFSConfig, LayerSelection, as_sequential, gfs, neuron_baseline, select_layer, shrink
from lotterylab.study import (
    PretrainStudyConfig,
    fit_log,
    lambda_min,
    ntk_gram,
    run_study,
    subset,
    threshold,
    threshold_bound,
)
from lotterylab.target import UnsupportedTarget
from lotterylab.training import TrainConfig, evaluate, train


@pytest.fixture(scope="module")
def trained(request):
    from conftest import tiny_data
    data = tiny_data.__wrapped__()
    model = models.create("mlp", input_shape=(1, 8, 8), widths=(48, 24), seed=0)
    train(model, data, TrainConfig(budget="200it", batch_size=30, eval_every="200it"), progress=False)
    return model.eval(), data


def test_line_search_loss_never_increases(trained):
    model, data = trained
    seq = as_sequential(model)
    for k in (0, 1):
        sel = select_layer(seq, k, data.train.x, data.train.y, budget=12, cfg=GFSConfig(step="line"))
        assert len(sel.losses) >= 12
        assert all(b <= a for a, b in zip(sel.losses, sel.losses[1:]))
        assert len(sel.selected) <= 12 and sum(sel.mixing().values()) == pytest.approx(1.0)


def test_first_pick_is_the_best_single_neuron_by_brute_force(trained):
    model, data = trained
    seq = as_sequential(model)
    x, y = data.train.x[:100], data.train.y[:100]
    sel = select_layer(seq, 0, x, y, budget=1, cfg=GFSConfig(steps_per_neuron=1))
    losses = []
    for r in range(48):  # the network with only neuron r, its outgoing weights scaled by N (mean field)
        one = shrink(seq, LayerSelection(0, 48, [r], [], [], math.nan))
        with torch.no_grad():
            losses.append(float(F.cross_entropy(one(x), y)))
    assert sel.picks == [min(range(48), key=losses.__getitem__)]
    assert sel.losses[0] == pytest.approx(min(losses), rel=1e-5)


def test_all_neurons_once_reproduce_the_dense_layer(trained):
    model, data = trained
    seq = as_sequential(model)
    sel = LayerSelection(0, 48, list(range(48)), [], [], math.nan)  # every neuron once, averaging readout
    x = data.test.x
    assert torch.allclose(shrink(seq, sel)(x), model(x), atol=1e-5)


def test_smaller_network_equals_the_selection_output(trained):
    model, data = trained
    seq = as_sequential(model)
    x, y = data.train.x, data.train.y
    for step in ("1/k", "line"):
        sel = select_layer(seq, 0, x, y, budget=10, cfg=GFSConfig(step=step))
        small = shrink(seq, sel)
        assert small[1].out_features == len(sel.selected) <= 10  # physically smaller
        # the loss the selection recorded is the loss of the smaller network
        with torch.no_grad():
            assert float(F.cross_entropy(small(x), y)) == pytest.approx(sel.losses[-1], rel=1e-4)


def test_gfs_prunes_every_hidden_layer_and_beats_random(trained):
    model, data = trained
    small, rec = gfs(model, data, GFSConfig(fraction=0.25, batch=0, step="line"))
    assert rec["widths"] == [64, 12, 6, 10]
    acc = evaluate(small, data.test)["accuracy"]
    rnd = evaluate(neuron_baseline(model, "random", 0.25), data.test)["accuracy"]
    assert acc > rnd
    mag = neuron_baseline(model, "magnitude", 1.0)  # keeping every neuron changes nothing
    assert torch.allclose(mag(data.test.x), model(data.test.x), atol=1e-5)
    with pytest.raises(UnsupportedTarget, match="residual"):
        gfs(models.create("resnet20", input_shape=(1, 8, 8), num_classes=10, width=4), data)


@pytest.fixture(scope="module")
def trained_cnn():
    """Conv(1->8) + BN + max pool, Conv(8->8), Linear head on 8x8 images, trained (BN in eval mode after)."""
    from conftest import tiny_data
    data = tiny_data.__wrapped__()
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 10))
    train(net, data, TrainConfig(budget="150it", batch_size=30, eval_every="150it"), progress=False)
    return net.eval(), data


def test_filters_of_conv_layers(trained_cnn):
    net, data = trained_cnn
    seq = as_sequential(net, (1, 8, 8))  # BN folded, the head a conv covering the 4x4 map
    x, y = data.train.x[:200], data.train.y[:200]
    with torch.no_grad():
        assert torch.allclose(seq(x), net(x), atol=1e-5)
    for k in (0, 1):  # every filter once, averaging readout: the dense network
        every = LayerSelection(k, 8, list(range(8)), [], [], math.nan)
        assert torch.allclose(shrink(seq, every)(x), net(x), atol=1e-4)
    # the first pick is the best single filter (brute force over the 8 one-filter networks)
    sel = select_layer(seq, 0, x, y, budget=1, cfg=GFSConfig(steps_per_neuron=1))
    with torch.no_grad():
        losses = [float(F.cross_entropy(shrink(seq, LayerSelection(0, 8, [r], [], [], math.nan))(x), y))
                  for r in range(8)]
    assert sel.picks == [min(range(8), key=losses.__getitem__)]
    for k in (0, 1):  # line search: loss never increases; the smaller network has the recorded loss
        sel = select_layer(seq, k, x, y, budget=4, cfg=GFSConfig(step="line"))
        assert all(b <= a for a, b in zip(sel.losses, sel.losses[1:]))
        small = shrink(seq, sel)
        conv = small[_weight_layers(small)[k]]
        assert isinstance(conv, nn.Conv2d) and conv.out_channels == len(sel.selected) <= 4
        with torch.no_grad():
            assert float(F.cross_entropy(small(x), y)) == pytest.approx(sel.losses[-1], rel=1e-4)
    small, rec = gfs(net, data, GFSConfig(fraction=0.5, batch=0, step="line"))
    assert rec["widths"] == [1, 4, 4, 10]
    mag = neuron_baseline(net, "magnitude", 1.0, input_shape=(1, 8, 8))  # keeping every filter changes nothing
    with torch.no_grad():
        assert torch.allclose(mag(x), net(x), atol=1e-4)


def _weight_layers(seq):
    return [i for i, m in enumerate(seq) if isinstance(m, (nn.Linear, nn.Conv2d))]


def test_study_is_resumable_and_finds_thresholds(tmp_path):
    from conftest import tiny_data
    data = tiny_data.__wrapped__()
    cfg = PretrainStudyConfig(sizes="100,300", iterations="0,20,80", width=32, neurons=8, gfs_batch=200, tol=5.0,
                              rule="dense")
    res = run_study(data, cfg, out=tmp_path, plots_dir=tmp_path / "img", log=lambda *_: None)
    assert len(res["cells"]) == 6 and res["T_star"] == {"100": 0, "300": 0}  # tol 5: everything qualifies
    assert (tmp_path / "img" / "pretraining_heatmap.png").exists()
    cell_files = sorted((tmp_path).rglob("m100_t20.json"))
    stamp = cell_files[0].stat().st_mtime_ns
    res2 = run_study(data, cfg, out=tmp_path, plots_dir=tmp_path / "img", log=lambda *_: None)
    assert cell_files[0].stat().st_mtime_ns == stamp  # finished cells are not recomputed
    assert res2["cells"] == res["cells"]
    longer = PretrainStudyConfig(**{**vars(cfg), "iterations": "0,20,80,120", "rule": "plateau"})
    res3 = run_study(data, longer, out=tmp_path, plots_dir=tmp_path / "img", log=lambda *_: None)
    assert cell_files[0].stat().st_mtime_ns == stamp  # a longer grid reuses every finished cell
    assert len(res3["cells"]) == 8 and res3["cells"][:3] == res["cells"][:3]
    small = subset(data, 100, 0)
    big = subset(data, 300, 0)
    assert torch.equal(small.train.x, big.train.x[:100])  # nested subsets


def test_study_on_a_two_layer_cnn_selects_filters(tmp_path):
    from conftest import tiny_data
    data = tiny_data.__wrapped__()
    cfg = PretrainStudyConfig(model="cnn", sizes="100,300", iterations="0,30", width=6, neurons=3, gfs_batch=100,
                              tol=5.0, rule="dense")
    res = run_study(data, cfg, out=tmp_path, plots_dir=tmp_path / "img", log=lambda *_: None)
    assert len(res["cells"]) == 4 and all(c["neurons_kept"] <= 3 for c in res["cells"])
    trained = [c for c in res["cells"] if c["t"] == 30]
    assert all(c["pruned_train_loss"] < c2["pruned_train_loss"] for c, c2 in
               zip(trained, [c for c in res["cells"] if c["t"] == 0]))  # pre-training helps the pruned CNN


def test_threshold_fit_and_bound():
    cells = [{"m": m, "t": t, "dense_train_loss": 0.0, "pruned_train_loss": 1.0 if t < m // 10 else 0.05}
             for m in (100, 1000) for t in (0, 5, 10, 50, 100, 500)]
    assert threshold(cells, 100, 0.1, "dense") == 10 and threshold(cells, 1000, 0.1, "dense") == 100
    assert threshold(cells, 100, 0.01, "plateau") == 10 and threshold(cells, 1000, 0.01, "plateau") == 100
    # level: a fixed pruned loss, the same for every m (0.04 is never reached here)
    assert threshold(cells, 100, 0.5, "level") == 10 and threshold(cells, 1000, 0.5, "level") == 100
    assert threshold(cells, 100, 0.04, "level") is None
    # plateau: the tolerance is a fraction of the total drop (1.0 -> 0.05 here)
    drop = [dict(c, pruned_train_loss=v) for c, v in zip(cells[:6], (1.0, 0.5, 0.2, 0.1, 0.06, 0.05))]
    assert threshold(drop, 100, 0.1, "plateau") == 50  # first loss <= 0.05 + 0.1 * 0.95 = 0.145
    with pytest.raises(ValueError):
        threshold(cells, 100, 0.1, "other")
    fit = fit_log([100, 1000, 10000], [10.0, 20.0, 30.0])
    assert fit["slope"] == pytest.approx(10 / math.log(10)) and fit["r2"] == pytest.approx(1.0)
    b = threshold_bound(1000, 0.1, 0.05)
    assert b["slope_per_log_m"] == pytest.approx(2 / (0.05 * 0.1))
    with pytest.raises(ValueError):
        threshold_bound(1000, -1.0, 0.05)


def test_ntk_gram_is_psd_and_lambda_min_of_a_subsample_bounds_the_full_set():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 10, generator=g)
    h = ntk_gram(x)
    assert torch.allclose(h, h.T) and torch.allclose(h.diagonal(), torch.full((60,), 0.5, dtype=torch.float64))
    full, _ = lambda_min(x, max_points=60)
    part, used = lambda_min(x, max_points=30)
    assert used == 30 and full > 0 and part >= full - 1e-12  # interlacing


def test_add_variant_picks_by_brute_force_and_ends_at_the_dense_network(trained):
    """step="add" (plain mask, no re-weighting): each pick is the best single addition, checked by
    brute force on the second pick; picking every neuron gives back the dense network."""
    model, data = trained
    seq = as_sequential(model)
    x, y = data.train.x[:100], data.train.y[:100]
    sel = select_layer(seq, 1, x, y, budget=2, cfg=GFSConfig(step="add"))
    first = sel.picks[0]
    losses = {}
    for r in range(24):
        if r != first:
            two = shrink(seq, LayerSelection(1, 24, [first, r], [], [], math.nan, weights={first: 1 / 24, r: 1 / 24}))
            with torch.no_grad():
                losses[r] = float(F.cross_entropy(two(x), y))
    assert sel.picks[1] == min(losses, key=losses.__getitem__)
    assert sel.losses[1] == pytest.approx(min(losses.values()), rel=1e-5)
    full = select_layer(seq, 1, x, y, budget=24, cfg=GFSConfig(step="add"))
    assert sorted(full.picks) == list(range(24))
    with torch.no_grad():
        assert torch.allclose(shrink(seq, full)(x), seq(x), atol=1e-5)
