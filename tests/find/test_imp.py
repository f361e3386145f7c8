"""Iterative magnitude pruning: rounds, rewinding, resume, controls."""

import pytest
import torch

from lotterylab.find.imp import IMP, IMPConfig, rounds_needed
from lotterylab.io import load_tensors
from lotterylab.training import Callback, TrainConfig

from targets import FAST, StartWeights
from targets import finder_mlp as mlp


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
