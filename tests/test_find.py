"""Finders: densities, rewinding, pruned weights staying zero, resume, layer collapse, edge-popup
tickets, early-bird detection. Small data and models; the real training loop throughout."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lotterylab import load_ticket, models, plots
from lotterylab.find.early_bird import EarlyBird, channel_mask, hamming
from lotterylab.find.edge_popup import EdgePopupConfig, edge_popup
from lotterylab.find.imp import IMP, IMPConfig, rounds_needed
from lotterylab.find.pai import PaIConfig, ablate, prune_at_init
from lotterylab.find.scores import collapsed_layers, connected_paths, layer_densities, mask_from_scores
from lotterylab.io import load_tensors
from lotterylab.training import Callback, TrainConfig, evaluate

FAST = dict(batch_size=30, eval_every="10it")


def mlp(seed=0):
    return models.create("mlp", input_shape=(1, 8, 8), widths=(32, 16), seed=seed)


class StartWeights(Callback):
    """Records the weights at the first backward of every training run (before any step)."""

    def __init__(self, model):
        self.model, self.seen = model, []
        self._armed = True

    def on_backward_end(self, loop):
        if self._armed:
            self.seen.append({k: v.detach().clone() for k, v in self.model.state_dict().items()})
            self._armed = False

    def on_eval(self, loop, record):
        if loop.iteration >= loop.total:
            self._armed = True


# --- scores -> masks ---------------------------------------------------------------------------
def test_layer_densities_match_overall_density():
    shapes = {"a": torch.Size([64, 3, 3, 3]), "b": torch.Size([128, 64, 3, 3]), "c": torch.Size([10, 128])}
    total = sum(math.prod(s) for s in shapes.values())
    for scheme in ("uniform", "er", "erk"):
        for d in (0.5, 0.1, 0.01):
            dens = layer_densities(shapes, d, scheme)
            kept = sum(dens[n] * math.prod(s) for n, s in shapes.items())
            assert kept / total == pytest.approx(d, rel=1e-9)
            assert all(0 < v <= 1 for v in dens.values())
    erk = layer_densities(shapes, 0.1, "erk")
    assert erk["a"] > erk["b"]  # small layers keep more, the point of ER/ERK


def test_mask_from_scores_keeps_top_and_respects_current():
    s = {"w": torch.arange(10.0)}
    m = mask_from_scores(s, 0.3, "global")
    assert m["w"].tolist() == [False] * 7 + [True] * 3
    cur = {"w": torch.tensor([True] * 8 + [False] * 2)}
    m2 = mask_from_scores(s, 0.3, "global", cur)
    assert m2["w"].nonzero().flatten().tolist() == [5, 6, 7]  # pruned entries never come back


# --- pruning at initialisation ------------------------------------------------------------------
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


# --- iterative magnitude pruning ----------------------------------------------------------------
def test_imp_rounds_density_rewind_and_zeros(tiny_data, tmp_path):
    model = mlp()
    init = {k: v.clone() for k, v in model.state_dict().items()}
    rec = StartWeights(model)
    run = IMP(model, tiny_data, TrainConfig(budget="60it", **FAST), IMPConfig(target_density=0.5), out=tmp_path,
              progress=False, callbacks=[rec])
    state = run.run()
    sizes = {n: p.numel() for n, p in model.named_parameters() if n in run.names}
    assert len(state["rounds"]) == rounds_needed(run.cfg, sizes, run.output) + 1
    for r in range(1, len(state["rounds"])):
        mask = run.mask(r)
        for n, m in mask.items():  # 20 % of hidden, 10 % of output survivors removed per round
            prev = run.mask(r - 1)[n]
            rate = 0.1 if n == run.output else 0.2
            assert int(m.sum()) == round(int(prev.sum()) * (1 - rate))
            assert not (m & ~prev).any()
        final, _ = load_tensors(tmp_path / f"round_{r:02d}" / "final.safetensors", kind="weights")
        for n, m in mask.items():
            assert (final[n][~m] == 0).all()  # pruned entries stayed exactly zero through training
        # rewinding restores exactly the initial weights (pruned entries zeroed by the mask)
        for k, v in init.items():
            expect = v * mask[k] if k in mask else v
            assert torch.equal(rec.seen[r][k] * (mask[k] if k in mask else 1), expect)
            if k not in mask:
                assert torch.equal(rec.seen[r][k], v)
    assert state["rounds"][-1]["density"] <= 0.5 + 0.005


def test_imp_iteration_rewinding_restores_the_saved_weights(tiny_data, tmp_path):
    from lotterylab.training import train

    ref = mlp()
    train(ref, tiny_data, TrainConfig(budget="20it", **FAST), progress=False)  # the weights at iteration 20
    model = mlp()
    rec = StartWeights(model)
    run = IMP(model, tiny_data, TrainConfig(budget="60it", **FAST), IMPConfig(rounds=1, rewind="20it"),
              out=tmp_path, progress=False, callbacks=[rec])
    run.run()
    saved, meta = load_tensors(tmp_path / "rewind.safetensors", kind="weights")
    assert meta["iteration"] == 20
    for k, v in ref.state_dict().items():
        assert torch.equal(saved[k], v)
    mask = run.mask(1)
    for k, v in saved.items():
        assert torch.equal(rec.seen[1][k], v * mask[k] if k in mask else v)


class Interrupt(Callback):
    def __init__(self, at):
        self.at, self.count = at, 0

    def on_step_end(self, loop):
        self.count += 1
        if self.count == self.at:
            raise KeyboardInterrupt


@pytest.mark.parametrize("rewind", ["init", "lr"])
def test_resumed_imp_equals_uninterrupted(tiny_data, tmp_path, rewind):
    cfg, icfg = TrainConfig(budget="40it", **FAST), IMPConfig(rounds=3, rewind=rewind)
    a = IMP(mlp(), tiny_data, cfg, icfg, out=tmp_path / "a", progress=False).run()
    with pytest.raises(KeyboardInterrupt):  # dies in the middle of round 2
        IMP(mlp(), tiny_data, cfg, icfg, out=tmp_path / "b", progress=False, callbacks=[Interrupt(95)]).run()
    partial = (tmp_path / "b" / "imp.json").exists()
    b = IMP(mlp(), tiny_data, cfg, icfg, out=tmp_path / "b", progress=False).run()
    assert partial
    assert [r["test_accuracy"] for r in a["rounds"]] == [r["test_accuracy"] for r in b["rounds"]]
    for r in range(4):
        fa, _ = load_tensors(tmp_path / "a" / f"round_{r:02d}" / "final.safetensors", kind="weights")
        fb, _ = load_tensors(tmp_path / "b" / f"round_{r:02d}" / "final.safetensors", kind="weights")
        assert all(torch.equal(fa[k], fb[k]) for k in fa)
    again = IMP(mlp(), tiny_data, cfg, icfg, out=tmp_path / "b", progress=False).run()
    assert again["rounds"] == b["rounds"]  # nothing recomputed or appended


def test_imp_controls(tiny_data, tmp_path):
    run = IMP(mlp(), tiny_data, TrainConfig(budget="30it", **FAST), IMPConfig(rounds=2), out=tmp_path, progress=False)
    run.run()
    for kind in ("reinit", "random_mask"):
        c = run.control(kind, seed=3)
        assert [r["round"] for r in c["rounds"]] == [1, 2]
        for row, r in zip(c["rounds"], (1, 2)):
            assert row["layer_density"] == pytest.approx(run.mask(r).layer_density())
    with pytest.raises(ValueError, match="use init, lr, finetune"):
        IMP(mlp(), tiny_data, TrainConfig(budget="30it", **FAST), IMPConfig(rewind="halfway"), out=tmp_path / "x")
    with pytest.raises(ValueError, match="other settings"):
        IMP(mlp(), tiny_data, TrainConfig(budget="31it", **FAST), IMPConfig(rounds=2), out=tmp_path).run()


# --- edge-popup ---------------------------------------------------------------------------------
def test_edge_popup_ticket_learns_without_training_weights(tiny_data, tmp_path):
    cfg = EdgePopupConfig(density=0.3, network_seed=1)
    ticket, result = edge_popup("mlp", tiny_data, cfg, TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9,
                                                                   batch_size=30, budget="4ep", schedule="cosine"),
                                out=tmp_path, progress=False, widths=(64, 32))
    for n, m in ticket.masks.items():  # per-layer top-k: exactly k kept in every layer
        assert int(m.sum()) == max(1, round(0.3 * m.numel()))
    source = ticket.source()
    fresh = models.create("mlp", input_shape=(1, 8, 8), widths=(64, 32), seed=1,
                          init={"weight": {"dist": "signed_constant", "scale": 1 / math.sqrt(0.3)}, "bias": "zeros"})
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), fresh.state_dict().values()))
    loaded = load_ticket(tmp_path / "ticket.safetensors")
    acc = evaluate(loaded.network(), tiny_data.test)["accuracy"]
    assert acc == pytest.approx(result["final"]["test_accuracy"])
    assert acc > 0.5  # chance is 0.1: the scores found a working subnetwork of untrained weights


# --- early-bird ---------------------------------------------------------------------------------
def test_early_bird_draws_a_ticket_and_masks_channels(tiny_data):
    from lotterylab.training import train

    model = models.create("conv2", input_shape=(1, 8, 8), seed=0, batch_norm=True)
    eb = EarlyBird(model, density=0.5, kind="channel", window=3, threshold=0.2)
    res = train(model, tiny_data, TrainConfig(optimizer="sgd", lr=0.05, momentum=0.9, budget="20ep",
                                              eval_every="1ep", batch_size=30), callbacks=[eb], progress=False)
    assert eb.drawn is not None and res["stopped_early"]
    assert res["iterations"] == eb.drawn["iteration"] < 20 * 20
    mask = eb.drawn["mask"]
    keep = eb.selection()
    assert sum(int(k.sum()) for k in keep.values()) == 64  # half of the 2 x 64 channels
    w = mask["features.0.weight"]
    assert torch.equal(w.flatten(1).all(1), w.flatten(1).any(1))  # whole filters, nothing partial
    d = eb.distance_matrix()
    assert torch.equal(d, d.T) and (d.diagonal() == 0).all()
    per_layer = EarlyBird(model, density=0.25, kind="channel", scope="layerwise").selection()
    assert [int(k.sum()) for k in per_layer.values()] == [16, 16]  # a quarter of each layer
    with pytest.raises(ValueError, match="no BatchNorm"):
        EarlyBird(mlp(), kind="channel")


def test_hamming_and_channel_mask_shapes():
    a = {"x": torch.tensor([True, False, True, True])}
    b = {"x": torch.tensor([True, True, True, False])}
    assert hamming(a, b) == 0.5
    model = models.create("conv2", input_shape=(1, 8, 8), seed=0, batch_norm=True)
    from lotterylab.find.early_bird import bn_channels
    pairs = bn_channels(model)
    keep = {bn: torch.arange(64) % 2 == 0 for _, bn in pairs}
    m = channel_mask(model, keep, pairs)
    assert m["features.0.weight"].shape == model.features[0].weight.shape
    assert int(m["features.1.weight"].sum()) == 32


def test_plots_write_png(tmp_path):
    p = plots.accuracy_vs_density({"a": [(1.0, [0.9, 0.91]), (0.1, 0.85)]}, tmp_path / "acc.png")
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    p = plots.mask_distance_matrix(torch.rand(4, 4), tmp_path / "eb.png", labels=list("abcd"))
    assert p.stat().st_size > 1000


def test_edge_popup_on_a_conv_model_writes_a_reproducible_ticket(tiny_data, tmp_path):
    ticket, result = edge_popup("conv2", tiny_data, EdgePopupConfig(density=0.5, weight_init="kaiming_normal"),
                                TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, batch_size=30, budget="20it",
                                            eval_every="20it"), out=tmp_path, progress=False)
    assert set(ticket.masks) == {"features.0.weight", "features.2.weight", "classifier.1.weight",
                                 "classifier.3.weight", "classifier.5.weight"}
    loaded = load_ticket(tmp_path / "ticket.safetensors")
    assert evaluate(loaded.network(), tiny_data.test)["accuracy"] == pytest.approx(result["final"]["test_accuracy"])


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(1, 40), min_size=1, max_size=4), density=st.floats(0.0, 1.0),
       seed=st.integers(0, 2**16), scope=st.sampled_from(["global", "layerwise"]))
def test_mask_from_scores_against_sorting(sizes, density, seed, scope):
    g = torch.Generator().manual_seed(seed)
    scores = {f"l{i}": torch.randint(0, 5, (n,), generator=g).float() for i, n in enumerate(sizes)}  # many ties
    mask = mask_from_scores(scores, density, scope)
    groups = [list(scores)] if scope == "global" else [[n] for n in scores]
    for names in groups:
        s = torch.cat([scores[n] for n in names])
        m = torch.cat([mask[n] for n in names])
        assert int(m.sum()) == round(density * s.numel())
        if m.any() and (~m).any():
            assert s[m].min() >= s[~m].max()  # nothing kept scores below anything pruned
