"""One test per silently-wrong finding of the CLI review: each now works or stops with a clear error."""

import json
import math

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import lotterylab as ll
from lotterylab import models
from lotterylab.cli import main
from lotterylab.cli.targets import TargetConfig, load_target
from lotterylab.training import TrainConfig, train

from conftest import needs_mnist


def test_thread_count_holds_through_model_creation_and_subset_sum():
    from lotterylab import subsetsum

    torch.set_num_threads(1)
    models.create("lenet_300_100", seed=0)  # the numba kernel that draws the weights
    subsetsum.solve(torch.rand(5000, 12, dtype=torch.float64), torch.rand(5000, dtype=torch.float64), 0.01)
    assert torch.get_num_threads() == 1


def test_convolutional_state_dict_without_arch_is_refused(tmp_path, capsys):
    m = models.create("conv2", input_shape=(1, 28, 28), seed=0)
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(tmp_path / "conv.safetensors"))
    assert main(["construct", "--target", str(tmp_path / "conv.safetensors"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "convolutional weights" in err and "--arch" in err


@needs_mnist
def test_convolutional_state_dict_with_arch_is_read_whole():
    m = models.create("conv2", input_shape=(1, 28, 28), seed=0).eval()
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        save_file({k: v.contiguous() for k, v in m.state_dict().items()}, f"{d}/conv.safetensors")
        target, splits = load_target(TargetConfig(target=f"{d}/conv.safetensors", arch="conv2"))
    x = splits.test.x[:8]
    with torch.no_grad():
        assert torch.equal(target(x), m(x))
    assert sum(isinstance(k, nn.Conv2d) for k in target.modules()) == 2


def test_eleven_layer_chain_is_read_in_order(tmp_path):
    torch.manual_seed(0)
    dims = [5, 7, 6, 8, 5, 9, 6, 7, 5, 8, 6, 3]  # widths differ so a wrong order cannot chain
    layers = []
    for k in range(11):
        layers += [nn.Linear(dims[k], dims[k + 1])] + ([nn.Tanh()] if k < 10 else [])
    net = nn.Sequential(*layers).eval()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "chain.safetensors"))
    target, _ = load_target(TargetConfig(target=str(tmp_path / "chain.safetensors"), activation="tanh"))
    x = torch.randn(16, 5)
    with torch.no_grad():
        assert torch.allclose(target(x), net(x), atol=1e-6)


def test_torchscript_sequential_target_is_rebuilt(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2)).eval()
    torch.jit.save(torch.jit.script(net), str(tmp_path / "net.pt"))
    target, _ = load_target(TargetConfig(target=str(tmp_path / "net.pt")))
    x = torch.randn(4, 6)
    with torch.no_grad():
        assert torch.equal(target(x), net(x))


def test_factory_architecture_for_a_state_dict(tmp_path):
    (tmp_path / "mynet.py").write_text(
        "from torch import nn\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__(); self.a = nn.Linear(4, 6); self.b = nn.Linear(6, 2)\n"
        "    def forward(self, x):\n"
        "        return self.b(self.a(x.view(x.size(0), -1)).relu())\n")
    from lotterylab.cli.targets import load_factory
    torch.manual_seed(1)
    net = load_factory(f"{tmp_path}/mynet.py:Net")()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "w.safetensors"))
    target, _ = load_target(TargetConfig(target=str(tmp_path / "w.safetensors"), arch=f"{tmp_path}/mynet.py:Net"))
    ticket = ll.construct(target, mode="2L", eps=0.05, seed=0)  # x.view(x.size(0), -1) is read
    assert ll.verify(target, ticket, samples=500, attack_steps=5)["sup_error"] <= 0.05


@pytest.mark.parametrize("how", ["view_size", "view_shape", "reshape_len"])
def test_common_flattening_idioms_are_read(how):
    from lotterylab.target import read_mlp

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(12, 5), nn.Linear(5, 3)

        def forward(self, x):
            if how == "view_size":
                x = x.view(x.size(0), -1)
            elif how == "view_shape":
                x = x.view(x.shape[0], -1)
            else:
                x = x.reshape(len(x), -1)
            return self.b(torch.relu(self.a(x)))

    t = read_mlp(Net())
    assert t.widths == [12, 5, 3] and t.activations == ["relu"]


def test_edge_popup_honours_model_seed_and_init(fashion_fixture_dir, tmp_path):
    args = ["--dataset", "fashion-mnist", "--data-root", str(fashion_fixture_dir), "--no-verify", "--val-size", "10",
            "--batch-size", "10", "--quiet", "--model", "mlp", "--widths", "16", "--budget", "2it", "--eval-every",
            "2it"]
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["edge-popup", *args, "--model-seed", "3", "--init", "kaiming_normal", "--out", str(a)]) == 0
    assert main(["edge-popup", *args, "--model-seed", "4", "--out", str(b)]) == 0
    ta, tb = ll.load_ticket(a / "ticket.safetensors"), ll.load_ticket(b / "ticket.safetensors")
    assert ta.seed == 3 and tb.seed == 4
    assert ta.init["layers.1.weight"]["dist"] == "normal" and tb.init["layers.1.weight"]["dist"] != "normal"
    res = json.loads((a / "result.json").read_text())
    assert res["data"]["name"] == "fashion-mnist" and res["arch"]["name"] == "mlp"


def test_from_model_refuses_trained_weights_and_wrong_seeds(tiny_data):
    model = models.create("mlp", input_shape=(1, 8, 8), widths=[16], init="glorot_normal", seed=0)
    mask = ll.Mask.ones_like(model)
    ll.Ticket.from_model(model, "glorot_normal", 0, mask)  # as created: fine
    with pytest.raises(ValueError, match="not its initialisation"):
        ll.Ticket.from_model(model, "glorot_normal", 1, mask)
    train(model, tiny_data, TrainConfig(budget="5it", batch_size=50), progress=False)
    with pytest.raises(ValueError, match="cannot hold trained weights"):
        ll.Ticket.from_model(model, "glorot_normal", 0, mask)


@pytest.mark.parametrize("schedule", [dict(schedule="cosine"), dict(schedule="step", milestones="20it", gamma=0.5),
                                      dict(schedule="cosine", warmup="10it")])
def test_resume_is_bit_identical_under_every_schedule(tiny_data, tmp_path, schedule):
    cfg = TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, budget="40it", batch_size=50, eval_every="10it",
                      **schedule)

    from lotterylab.training import Callback

    class Kill(Callback):
        def on_step_end(self, loop):
            if loop.iteration == 25:
                raise KeyboardInterrupt

    ref = models.create("mlp", input_shape=(1, 8, 8), widths=[16], seed=0)
    train(ref, tiny_data, cfg, out=tmp_path / "ref", progress=False)
    m = models.create("mlp", input_shape=(1, 8, 8), widths=[16], seed=0)
    with pytest.raises(KeyboardInterrupt):
        train(m, tiny_data, cfg, out=tmp_path / "run", callbacks=[Kill()], progress=False)
    m = models.create("mlp", input_shape=(1, 8, 8), widths=[16], seed=0)
    train(m, tiny_data, cfg, out=tmp_path / "run", progress=False)  # resumes from iteration 20
    for (k, a), b in zip(ref.state_dict().items(), m.state_dict().values()):
        assert torch.equal(a, b), k


def test_readme_example_does_what_its_comments_say(tmp_path, monkeypatch):
    """The README's Python example, as printed, with the budget shrunk and MNIST replaced by small data."""
    import re
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    code = code.replace('"50000it"', '"200it"')
    code = code.replace('data.load("mnist", val_size=5000, seed=0)', "TINY")
    monkeypatch.chdir(tmp_path)
    from lotterylab import data as data_mod
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(10, 1, 28, 28, generator=g)

    def split(n):
        y = torch.randint(0, 10, (n,), generator=g)
        return data_mod.Split(centres[y] + 0.8 * torch.randn(n, 1, 28, 28, generator=g), y)

    env = {"TINY": data_mod.DataSplits("tiny", split(600), split(100), split(200), 10, (1, 28, 28), [0.0], [1.0])}
    exec(compile(code, "README.md", "exec"), env)
    assert env["result"]["final"]["test_accuracy"] > 0.5               # it trained
    fresh = models.create("lenet_300_100", init="glorot_normal", seed=0)
    net = env["net"]                                                    # the ticket: initial weights * mask
    for (k, p), q in zip(fresh.named_parameters(), net.parameters()):
        want = p * env["mask"][k] if k in env["mask"] else p
        assert torch.equal(want, q), k
    trained = env["trained"]                                           # the trained weights, reloaded
    for a, b in zip(env["model"].state_dict().values(), trained.state_dict().values()):
        assert torch.equal(a, b)
    assert not math.isclose(env["mask"].density, 1.0)


def test_channel_ticket_becomes_a_physically_smaller_network(tmp_path):
    from lotterylab.find.early_bird import bn_channels, channel_keep, channel_mask, compact_channels
    from lotterylab.io import save_tensors
    from lotterylab.runs import load_weights

    torch.manual_seed(0)
    m = models.create("conv2", input_shape=(1, 12, 12), batch_norm=True, seed=0)
    for bn in (x for x in m.modules() if isinstance(x, nn.BatchNorm2d)):  # trained-looking statistics
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(-1, 1)
    m.eval()
    pairs = bn_channels(m)
    mask = channel_mask(m, channel_keep(m, 0.3, pairs), pairs)
    masked = mask.apply(m)
    small = compact_channels(masked, mask).eval()
    x = torch.randn(6, 1, 12, 12)
    with torch.no_grad():
        assert torch.allclose(small(x), masked(x), atol=1e-5)
    assert sum(p.numel() for p in small.parameters()) < 0.6 * sum(p.numel() for p in m.parameters())
    save_tensors(tmp_path / "c.safetensors", small.state_dict(), {"kind": "weights", "arch": small.lotterylab_arch})
    back = load_weights(tmp_path / "c.safetensors")
    with torch.no_grad():
        assert torch.equal(back(x), small(x))
    sig = models.create("conv2", "sigmoid", input_shape=(1, 12, 12), batch_norm=True, seed=0)
    with pytest.raises(ValueError, match="phi\\(0\\) != 0"):
        compact_channels(sig, channel_mask(sig, channel_keep(sig, 0.3, bn_channels(sig)), bn_channels(sig)))


def test_export_gives_plain_and_prune_form_state_dicts(fashion_fixture_dir, tmp_path):
    from safetensors.torch import load_file
    from torch.nn.utils import prune

    from lotterylab.runs import load_weights

    run, out = tmp_path / "pai", tmp_path / "export"
    args = ["--dataset", "fashion-mnist", "--data-root", str(fashion_fixture_dir), "--no-verify", "--val-size", "10",
            "--batch-size", "10", "--quiet", "--budget", "4it", "--eval-every", "2it"]
    assert main(["pai", *args, "--method", "magnitude", "--density", "0.3", "--out", str(run)]) == 0
    assert main(["export", str(run), "--out", str(out)]) == 0
    trained, _ = ll.load_run(run)
    mask = ll.Mask.load(out / "mask.safetensors")
    assert abs(mask.density - 0.3) < 0.01
    plain = load_weights(out / "model.safetensors")
    fresh = models.create("lenet_300_100", input_shape=(1, 28, 28), seed=9)
    for name in mask:
        mod_name, _, leaf = name.rpartition(".")
        prune.identity(fresh.get_submodule(mod_name), leaf)
    fresh.load_state_dict(load_file(str(out / "prune_state_dict.safetensors")))
    x = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(plain(x), trained(x)) and torch.allclose(fresh(x), trained(x), atol=1e-6)
    for name, m in mask.items():
        assert not dict(plain.named_parameters())[name][~m].any()


def test_identical_constructions_write_byte_identical_tickets(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    a = ll.construct(net, mode="2L", eps=0.05, seed=1).save(tmp_path / "a.ticket")
    b = ll.construct(net, mode="2L", eps=0.05, seed=1).save(tmp_path / "b.ticket")
    assert a.read_bytes() == b.read_bytes()


def test_kill_between_final_checkpoint_and_result_then_rerun(fashion_fixture_dir, tmp_path):
    import os
    import subprocess
    import sys

    args = ["train", "--dataset", "fashion-mnist", "--data-root", str(fashion_fixture_dir), "--no-verify",
            "--val-size", "10", "--batch-size", "10", "--quiet", "--budget", "6it", "--eval-every", "3it",
            "--out", str(tmp_path / "r")]
    env = {**os.environ, "LOTTERYLAB_FAULT": "result.json:1:mid"}  # after the last checkpoint, inside result.json
    p = subprocess.run([sys.executable, "-m", "lotterylab", *args], env=env, capture_output=True, text=True)
    assert p.returncode == -9 and not (tmp_path / "r" / "result.json").exists()
    env.pop("LOTTERYLAB_FAULT")
    p = subprocess.run([sys.executable, "-m", "lotterylab", *args], env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    res = json.loads((tmp_path / "r" / "result.json").read_text())
    assert res["iterations"] == 6 and "test accuracy" in p.stdout


def test_early_bird_detector_state_survives_a_resume(tiny_data, tmp_path):
    from lotterylab.find.early_bird import EarlyBird
    from lotterylab.training import Callback

    cfg = TrainConfig(budget="40it", batch_size=50, eval_every="2it", lr=0.01)

    class Kill(Callback):
        def on_step_end(self, loop):
            if loop.iteration == 13:
                raise KeyboardInterrupt

    def search(out, callbacks=()):
        m = models.create("mlp", input_shape=(1, 8, 8), widths=[16], seed=0)
        eb = EarlyBird(m, density=0.4, kind="magnitude", window=4, threshold=0.02)
        train(m, tiny_data, cfg, out=out, callbacks=[eb, *callbacks], progress=False)
        return eb

    ref = search(tmp_path / "ref")
    with pytest.raises(KeyboardInterrupt):
        search(tmp_path / "run", [Kill()])
    again = search(tmp_path / "run")
    assert [c["iteration"] for c in again.checks] == [c["iteration"] for c in ref.checks]
    assert (ref.drawn is None) == (again.drawn is None)
    if ref.drawn is not None:
        assert ref.drawn["iteration"] == again.drawn["iteration"] and ref.drawn["mask"].equal(again.drawn["mask"])
    assert all(torch.equal(a, b) for a, b in zip(ref.masks, again.masks))



@needs_mnist
def test_file_target_with_zoo_arch_is_checked_on_its_data(tmp_path):
    m = models.create("lenet_300_100", input_shape=(1, 28, 28), seed=0).eval()
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(tmp_path / "w.safetensors"))
    out = tmp_path / "c"
    assert main(["construct", "--target", str(tmp_path / "w.safetensors"), "--arch", "lenet_300_100", "--mode", "2L",
                 "--eps-param", "0.05", "--verify-samples", "100", "--attack-steps", "1", "--no-test", "--quiet",
                 "--out", str(out)]) == 0
    res = json.loads((out / "result.json").read_text())
    assert "mnist test images" in res["domain"]  # not the [-1, 1] box of a target without data
