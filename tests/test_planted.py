"""Planted tickets: the teacher is the ticket's function, scoring finds the planted mask (recall 1)
and a random mask (recall ~ its density), and every finder runs on a planted source."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lotterylab as ll
from lotterylab.find.edge_popup import EdgePopupConfig, edge_popup_mask
from lotterylab.find.imp import IMP, IMPConfig
from lotterylab.find.pai import PaIConfig, prune_at_init
from lotterylab.masks import Mask
from lotterylab.planted import plant, score  # (also lotterylab.plant)
from lotterylab.training import TrainConfig, evaluate, task_loss, train


@pytest.fixture(scope="module")
def problem():
    torch.manual_seed(0)
    target = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 4))
    ticket = ll.construct(target, mode="2L", eps_param=0.02, seed=1)
    return target, plant(ticket, n_train=600, n_val=100, n_test=300, seed=3)


def test_the_teacher_is_the_ticket_network_and_labels_the_task(problem):
    target, p = problem
    x = p.data.test.x
    with torch.no_grad():
        assert torch.equal(p.teacher()(x), p.ticket.network()(x))
        assert torch.equal(p.data.test.y, p.teacher()(x).argmax(1))
        # the planted subnetwork is the construction: within its tolerance of the target
        assert (p.teacher()(x) - target(x.flatten(1))).abs().max() < 0.2
    assert p.data.num_classes == 4 and p.data.input_shape == tuple(p.ticket.arch["input_shape"])
    assert evaluate(p.teacher(), p.data.test)["accuracy"] == 1.0
    assert ll.plant is plant
    r = p.reaches(p.teacher())
    assert r["reaches"] and r["accuracy"] == r["teacher_accuracy"] == 1.0 and r["loss"] == r["teacher_loss"]
    assert not p.reaches(Mask({k: torch.zeros_like(v) for k, v in p.ticket.masks.items()}).apply(p.source()))["reaches"]
    lo, hi = p.ticket.report["domain"]["low"], p.ticket.report["domain"]["high"]
    assert float(x.min()) >= min(lo) and float(x.max()) <= max(hi)
    # the same seed draws the same problem; another seed other inputs
    again = plant(p.ticket, n_train=600, n_val=100, n_test=300, seed=3)
    assert torch.equal(again.data.train.x, p.data.train.x)
    assert not torch.equal(plant(p.ticket, n_train=600, n_val=100, n_test=300, seed=4).data.train.x, p.data.train.x)


def test_scoring_recovers_the_plant_and_a_random_mask_scores_its_density(problem):
    _, p = problem
    planted = p.planted
    assert set(planted) == {n for n, w in p.source().named_parameters() if w.dim() > 1}
    s = p.score(planted)
    assert s["precision"] == s["recall"] == 1.0
    g = torch.Generator().manual_seed(0)
    for d in (0.2, 0.5):
        rand = Mask({k: torch.rand(v.shape, generator=g) < d for k, v in planted.items()})
        r = score(rand, planted)
        assert r["recall"] == pytest.approx(d, abs=0.05)
        assert r["precision"] == pytest.approx(planted.density, rel=0.3)
    with pytest.raises(ValueError, match="share no parameter"):
        score(Mask({"x.weight": torch.ones(2, 2, dtype=torch.bool)}), planted)


def test_every_finder_runs_on_a_planted_source(problem, tmp_path):
    _, p = problem
    d = p.info["planted_density"]
    tc = TrainConfig(budget="20it", eval_every="20it", batch_size=50, lr=0.05)
    found = {}
    for method in ("snip", "grasp", "synflow", "magnitude", "random"):
        found[method] = prune_at_init(p.source(), p.data, PaIConfig(method=method, density=d, batches=1))
    imp = IMP(p.source(), p.data, tc, IMPConfig(rounds=1, target_density=0.5), out=tmp_path / "imp",
              progress=False)
    state = imp.run()
    found["imp"] = Mask.load(tmp_path / "imp" / f"round_{state['rounds'][-1]['round']:02d}" / "mask.safetensors")
    src = p.source()
    before = {k: v.clone() for k, v in src.state_dict().items()}
    found["edge-popup"], res = edge_popup_mask(src, p.data, EdgePopupConfig(density=d), tc, progress=False)
    assert all(torch.equal(before[k], v) for k, v in src.state_dict().items())  # the source is untouched
    assert res["final"]["test_accuracy"] is not None
    for name, m in found.items():
        s = p.score(m)
        assert 0 <= s["recall"] <= 1 and 0 <= s["precision"] <= 1, name
        if name == "imp":  # one round prunes its per-round rate (20 %; the output layer half of it)
            assert 0.7 < s["found_density"] < 0.9
        else:
            assert s["found_density"] == pytest.approx(d, rel=0.2, abs=2e-3), name


def test_the_regression_variant_targets_the_teachers_outputs(problem, tmp_path):
    _, p = problem
    r = plant(p.ticket, task="regression", n_train=600, n_val=100, n_test=300, seed=3)
    assert torch.equal(r.data.train.x, p.data.train.x)  # the same inputs as the classification variant
    with torch.no_grad():
        assert torch.equal(r.data.test.y, r.teacher()(r.data.test.x))
    assert r.data.test.y.dtype == torch.float32 and r.data.num_classes == 4 and "train_target_std" in r.info
    ok = r.reaches(r.teacher())
    assert ok["loss"] == 0.0 and ok["relative_loss"] == 0.0 and ok["reaches"] and math.isnan(ok["accuracy"])
    # a constant at the targets' mean has relative error 1; the untrained masked-off source is far off
    class Mean(nn.Module):
        def forward(self, x):
            return r.data.test.y.mean(0).expand(len(x), -1)
    assert r.reaches(Mean())["relative_loss"] == pytest.approx(1.0, rel=1e-4)
    # training and every finder use squared error: a few steps on the planted mask lower it
    net = p.planted.apply(r.source())
    before = evaluate(net, r.data.test)["loss"]
    res = train(net, r.data, TrainConfig(budget="30it", eval_every="30it", batch_size=50, lr=1e-3), mask=p.planted,
                progress=False)
    assert res["final"]["test_loss"] < before and math.isnan(res["final"]["test_accuracy"])
    for method in ("snip", "grasp"):
        m = prune_at_init(r.source(), r.data, PaIConfig(method=method, density=0.3, batches=1))
        assert m.density == pytest.approx(0.3, abs=0.01)


def test_task_loss_follows_the_targets():
    out = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    assert torch.equal(task_loss(out, torch.tensor([0, 1])), F.cross_entropy(out, torch.tensor([0, 1])))
    y = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    assert float(task_loss(out, y)) == pytest.approx((1.0 + 4.0) / 2)  # summed over outputs, mean over examples
    assert float(task_loss(out, y, reduction="sum")) == pytest.approx(5.0)
    with pytest.raises(ValueError, match="one real target per output"):
        task_loss(out, torch.zeros(2, 3))


def test_bad_plants_are_refused(problem):
    _, p = problem
    with pytest.raises(ValueError, match="unknown task"):
        plant(p.ticket, task="ranking")
    with pytest.raises(ValueError, match="n_train"):
        plant(p.ticket, n_train=0)
