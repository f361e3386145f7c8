import pytest
import torch

from lotterylab import Mask, data, models
from lotterylab.hparams import parse_steps
from lotterylab.training import Callback, TrainConfig, epoch_order, lr_factor, train

from conftest import needs_mnist


def tiny_model(seed=0):
    return models.create("mlp", "relu", (1, 8, 8), 10, widths=[32, 32], seed=seed)


def half_mask(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Mask({n: torch.rand(p.shape, generator=g) < 0.5 for n, p in model.named_parameters()})


OPTIMIZERS = [
    TrainConfig(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=1e-3),
    TrainConfig(optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    TrainConfig(optimizer="adam", lr=1e-2, weight_decay=1e-3),
    TrainConfig(optimizer="adamw", lr=1e-2, weight_decay=1e-1),
]


@pytest.mark.parametrize("cfg", OPTIMIZERS, ids=lambda c: f"{c.optimizer}{'-nesterov' if c.nesterov else ''}")
def test_pruned_weights_stay_exactly_zero(tiny_data, cfg):
    cfg.budget, cfg.batch_size, cfg.eval_every = "60it", 20, "30it"
    model = tiny_model()
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    mask = half_mask(model)

    class Watch(Callback):
        def on_step_end(self, loop):
            for n, p in loop.model.named_parameters():
                assert torch.all(p[~mask[n]] == 0), f"{n} came back at iteration {loop.iteration}"

    train(model, tiny_data, cfg, mask=mask, callbacks=[Watch()], progress=False)
    for n, p in model.named_parameters():
        assert torch.all(p[~mask[n]] == 0)
        assert not torch.equal(p[mask[n]], start[n][mask[n]])  # the kept weights did train


@pytest.mark.parametrize("cfg", OPTIMIZERS[:1] + OPTIMIZERS[2:], ids=lambda c: c.optimizer)
def test_zeroing_once_is_not_enough(tiny_data, cfg):
    # The control that shows the test above can fail: zero the weights once, then train unmasked.
    cfg.budget, cfg.batch_size = "20it", 20
    model = tiny_model()
    mask = half_mask(model)
    mask.apply(model)
    train(model, tiny_data, cfg, progress=False)
    assert any(torch.any(p[~mask[n]] != 0) for n, p in model.named_parameters())


def test_resume_after_interruption_equals_uninterrupted(tiny_data, tmp_path):
    cfg = TrainConfig(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=32, budget="4ep", eval_every="7it")
    mask = half_mask(tiny_model())
    ref_model = tiny_model()
    ref = train(ref_model, tiny_data, cfg, mask=mask, out=tmp_path / "ref", progress=False)

    class Kill(Callback):
        def on_step_end(self, loop):
            if loop.iteration == 45:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny_model(), tiny_data, cfg, mask=mask, out=tmp_path / "run", callbacks=[Kill()], progress=False)
    assert (tmp_path / "run" / "checkpoint.safetensors").exists()
    steps = []

    class Count(Callback):
        def on_step_end(self, loop):
            steps.append(loop.iteration)

    model = tiny_model()
    res = train(model, tiny_data, cfg, mask=mask, out=tmp_path / "run", callbacks=[Count()], progress=False)
    assert steps[0] == 43  # resumed after the checkpoint at iteration 42, not from scratch
    for a, b in zip(model.parameters(), ref_model.parameters()):
        assert torch.equal(a, b)
    assert res["history"] == ref["history"]
    # a finished run is returned as is, without a single step
    steps.clear()
    again = tiny_model()
    res2 = train(again, tiny_data, cfg, mask=mask, out=tmp_path / "run", callbacks=[Count()], progress=False)
    assert steps == [] and res2["final"] == res["final"]
    assert all(torch.equal(a, b) for a, b in zip(again.parameters(), model.parameters()))
    # other hyperparameters refuse the directory instead of mixing runs
    (tmp_path / "run" / "result.json").unlink()
    with pytest.raises(ValueError, match="other hyperparameters"):
        train(tiny_model(), tiny_data, TrainConfig(lr=0.1, budget="4ep", batch_size=32), mask=mask,
              out=tmp_path / "run", progress=False)


def test_metrics_and_learning_speed(tiny_data):
    res = train(tiny_model(), tiny_data, TrainConfig(batch_size=20, budget="6ep", eval_every="10it"), progress=False)
    hist = res["history"]
    assert len(hist) == 18 and hist[-1]["iteration"] == 180
    best = min(hist, key=lambda r: r["val_loss"])
    assert res["min_val_loss_iteration"] == best["iteration"]
    assert res["final"]["test_accuracy"] > 0.8  # the tiny problem is learnable


def test_steps_and_schedules():
    assert parse_steps("500it", 10) == 500 and parse_steps("3ep", 917) == 2751
    with pytest.raises(ValueError, match="500it"):
        parse_steps("500", 10)
    cfg = TrainConfig(schedule="step", milestones="2ep,3ep", gamma=0.1)
    assert [lr_factor(cfg, it, 100, 10) for it in (0, 19, 20, 30)] == pytest.approx([1, 1, 0.1, 0.01])
    cos = TrainConfig(schedule="cosine", warmup="10it")
    assert lr_factor(cos, 0, 100, 10) == pytest.approx(0.1) and lr_factor(cos, 100, 100, 10) == pytest.approx(0)
    a, b = epoch_order(0, 3, 1000), epoch_order(0, 4, 1000)
    assert sorted(a.tolist()) == list(range(1000)) and not torch.equal(a, b)
    assert torch.equal(a, epoch_order(0, 3, 1000))


@needs_mnist
def test_lenet_learns_real_mnist_in_one_epoch():
    d = data.load("mnist")
    model = models.create("lenet_300_100", seed=0)
    res = train(model, d, TrainConfig(budget="1ep"), progress=False)
    assert res["final"]["test_accuracy"] > 0.95


def test_hard_kill_then_resume(tiny_data, tmp_path):
    """SIGKILL in the middle of a run (no exception handling, no cleanup), then resume."""
    import os
    import signal
    import subprocess
    import sys
    import textwrap

    from lotterylab.io import save_tensors

    save_tensors(tmp_path / "data.safetensors", {"x": tiny_data.train.x, "y": tiny_data.train.y,
                                                 "vx": tiny_data.val.x, "vy": tiny_data.val.y}, {"kind": "data"})
    cfg = TrainConfig(optimizer="adam", lr=1e-2, batch_size=32, budget="4ep", eval_every="5it")
    script = textwrap.dedent(f"""
        import os, signal, sys, torch
        torch.set_num_threads(1)
        from lotterylab import data, models
        from lotterylab.io import load_tensors
        from lotterylab.training import Callback, TrainConfig, train
        t, _ = load_tensors({str(tmp_path / "data.safetensors")!r})
        d = data.DataSplits("tiny", data.Split(t["x"], t["y"]), data.Split(t["vx"], t["vy"]),
                            data.Split(t["vx"], t["vy"]), 10, (1, 8, 8), [0.0], [1.0])

        class Die(Callback):
            def on_step_end(self, loop):
                if loop.iteration == 52:
                    os.kill(os.getpid(), signal.SIGKILL)

        model = models.create("mlp", "relu", (1, 8, 8), 10, widths=[32, 32], seed=0)
        train(model, d, TrainConfig(**{cfg.__dict__!r}), out={str(tmp_path / "run")!r}, callbacks=[Die()],
              progress=False)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not (tmp_path / "run" / "result.json").exists()
    leftovers = [p.name for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []  # atomic writes: no half-written files were left behind

    d = data.DataSplits("tiny", tiny_data.train, tiny_data.val, tiny_data.val, 10, (1, 8, 8), [0.0], [1.0])
    ref = tiny_model()
    train(ref, d, cfg, progress=False)
    resumed = tiny_model()
    res = train(resumed, d, cfg, out=tmp_path / "run", progress=False)
    assert res["finished"]
    for a, b in zip(resumed.parameters(), ref.parameters()):
        assert torch.equal(a, b)
    assert os.path.exists(tmp_path / "run" / "result.json")


def test_run_hash_is_stable_so_old_run_folders_resume(tiny_data):
    """A run's folder is matched by its hash: adding an option must not change the hash of runs
    that do not use it (or every cached run would refuse to resume)."""
    from lotterylab.hparams import run_hash
    from lotterylab.training import TrainConfig, train

    cfg = TrainConfig(budget="2it", batch_size=30)
    model = models.create("mlp", input_shape=(1, 8, 8), widths=(8,), seed=0)
    res = train(model, tiny_data, cfg, progress=False)
    assert res["config_hash"] == run_hash(cfg, {}, {"mask": None})
    res = train(model, tiny_data, cfg, progress=False, start_iteration=1)
    assert res["config_hash"] != run_hash(cfg, {}, {"mask": None})
