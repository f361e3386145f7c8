import json

import pytest
import torch

import lotterylab as ll
from lotterylab import Mask, Ticket, models
from lotterylab.cli import build_parser, main

from conftest import needs_mnist


def test_boolean_flags_parse_false_as_false():
    ns = build_parser().parse_args(["train", "--no-nesterov"])
    assert ns.nesterov is False
    assert build_parser().parse_args(["train", "--nesterov"]).nesterov is True
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--nesterov", "False"])


def test_missing_data_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LOTTERYLAB_DATA", str(tmp_path))
    assert main(["train", "--budget", "1it", "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert "lotterylab data fetch mnist" in capsys.readouterr().err


@needs_mnist
def test_train_writes_result_and_info_reads_everything(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--budget", "40it", "--eval-every", "20it", "--out", str(out), "--quiet"]) == 0
    res = json.loads((out / "result.json").read_text())
    assert res["iterations"] == 40 and res["config"]["lr"] == 1.2e-3
    assert res["model_data"]["model"] == "lenet_300_100" and res["versions"]["torch"] == torch.__version__
    assert "test accuracy" in capsys.readouterr().out
    # rerun: nothing recomputed
    assert main(["train", "--budget", "40it", "--eval-every", "20it", "--out", str(out), "--quiet"]) == 0
    assert "finished run loaded" in capsys.readouterr().out

    model = models.create("lenet_300_100", seed=1)
    mask = Mask.ones_like(model)
    mask.save(tmp_path / "m.safetensors")
    Ticket.from_model(model, "glorot_normal", 1, mask).save(tmp_path / "t.ticket")
    for path, needle in ((out / "checkpoint.safetensors", "iteration 40"), (tmp_path / "m.safetensors", "density 1.0000"),
                         (tmp_path / "t.ticket", "bits_per_source_parameter"), (out, "train run")):
        assert main(["info", str(path)]) == 0
        assert needle in capsys.readouterr().out
    (tmp_path / "bad").write_bytes(b"garbage")
    assert main(["info", str(tmp_path / "bad")]) == 2


def test_construct_from_a_state_dict(tmp_path, capsys):
    from safetensors.torch import save_file
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "t.safetensors"))
    out = tmp_path / "c"
    assert main(["construct", "--target", str(tmp_path / "t.safetensors"), "--mode", "2L", "--eps", "0.02",
                 "--verify-samples", "2000", "--attack-steps", "10", "--out", str(out)]) == 0
    res = json.loads((out / "result.json").read_text())
    assert res["report"]["certificate"] <= 0.02 and res["report"]["verify"]["sup_error"] <= 0.02
    assert "certificate" in capsys.readouterr().out
    assert (out / "construction.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["info", str(out / "ticket.safetensors")]) == 0
    assert main(["construct", "--target", str(tmp_path / "t.safetensors"), "--eps-param", "0.01",
                 "--calibration", "10", "--out", str(tmp_path / "c2")]) == 2  # no training data behind a state dict
    assert "does not take" in capsys.readouterr().err
    assert main(["construct", "--target", str(tmp_path / "t.safetensors"), "--eps-param", "0.01",
                 "--compensate", "--out", str(tmp_path / "c3")]) == 2
    assert "--compensate needs --calibration" in capsys.readouterr().err
    assert main(["construct", "--target", str(tmp_path / "t.safetensors"), "--mode", "L+1", "--eps-param", "0.02",
                 "--copy-objective", "min_l1", "--copy-scale", "0.5", "--verify-samples", "0",
                 "--out", str(tmp_path / "c4")]) == 0
    rep = json.loads((tmp_path / "c4" / "result.json").read_text())["report"]
    assert rep["copy_objective"] == "min_l1" and rep["copy_scale"] == 0.5
    assert main(["construct", "--target", str(tmp_path / "t.safetensors"), "--mode", "2L", "--eps-param", "0.02",
                 "--copy-scale", "0.5", "--out", str(tmp_path / "c6")]) == 2
    assert "copy_scale sizes the copy layers" in capsys.readouterr().err
    (tmp_path / "bad.safetensors").write_bytes(b"nope")
    assert main(["construct", "--target", str(tmp_path / "bad.safetensors"), "--out", str(tmp_path / "c5")]) == 2


def _fashion_args(d, out):
    return ["--dataset", "fashion-mnist", "--data-root", str(d), "--no-verify", "--val-size", "10", "--batch-size", "10",
            "--quiet", "--out", str(out)]


def test_find_subcommands_write_results_and_plots(fashion_fixture_dir, tmp_path, capsys):
    d = fashion_fixture_dir
    imp_out, pai_out, ep_out, eb_out = (tmp_path / n for n in ("imp", "pai", "ep", "eb"))
    assert main(["imp", *_fashion_args(d, imp_out), "--budget", "10it", "--eval-every", "5it", "--rounds", "2",
                 "--control", "reinit"]) == 0
    res = json.loads((imp_out / "result.json").read_text())
    assert [r["round"] for r in res["rounds"]] == [0, 1, 2] and len(res["control"]["rounds"]) == 2
    assert (imp_out / "accuracy_vs_density.png").exists() and (imp_out / "learning_speed.png").exists()

    assert main(["pai", *_fashion_args(d, pai_out), "--budget", "5it", "--method", "synflow", "--density", "0.05",
                 "--synflow-iterations", "5"]) == 0
    res = json.loads((pai_out / "result.json").read_text())
    assert abs(res["density"] - 0.05) < 0.005 and res["method"] == "synflow"
    assert (pai_out / "training.png").exists() and (pai_out / "mask.safetensors").exists()

    assert main(["edge-popup", *_fashion_args(d, ep_out), "--model", "mlp", "--widths", "32,16", "--budget", "5it",
                 "--density", "0.3"]) == 0
    assert (ep_out / "ticket.safetensors").exists()
    assert main(["info", str(ep_out / "ticket.safetensors")]) == 0

    rc = main(["early-bird", *_fashion_args(d, eb_out), "--kind", "magnitude", "--budget", "30it", "--eval-every",
               "2it", "--window", "2", "--threshold", "0.5"])
    assert rc == 0
    res = json.loads((eb_out / "result.json").read_text())
    assert res["drawn"]["iteration"] < 30 and (eb_out / "mask_distance.png").exists()

    assert main(["plot", str(imp_out), str(pai_out), "--out", str(tmp_path / "all")]) == 0
    assert (tmp_path / "all" / "accuracy_vs_density.png").read_bytes()[:4] == b"\x89PNG"


def test_construct_structured_writes_the_compact_network(tmp_path, capsys):
    from safetensors.torch import save_file

    from lotterylab.compact_net import load_compact

    from targets import small_cnn

    (tmp_path / "arch.py").write_text(
        "from torch import nn\n"
        "def small():\n"
        "    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),\n"
        "                        nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),\n"
        "                        nn.Flatten(), nn.Linear(16, 5))\n"
        "    net.lotterylab_arch = {'input_shape': [1, 12, 12]}\n"
        "    return net\n")
    target = small_cnn("relu")
    save_file({k: v.contiguous() for k, v in target.state_dict().items()}, str(tmp_path / "w.safetensors"))
    out = tmp_path / "s"
    argv = ["construct", "--target", str(tmp_path / "w.safetensors"), "--arch", f"{tmp_path / 'arch.py'}:small",
            "--mode", "structured", "--granularity", "kernel", "--eps-param", "0.05", "--low", "0", "--high", "1",
            "--verify-samples", "200", "--attack-steps", "2", "--quiet", "--threads", "1", "--out", str(out)]
    assert main(argv) == 0
    res = json.loads((out / "result.json").read_text())
    st = res["report"]["structured"]
    assert st["structure"]["structured"] and res["construct"]["granularity"] == "kernel"
    assert st["cost"]["compact"]["macs"] < st["cost"]["masked_source"]["macs"]
    assert (out / "construction.png").read_bytes()[:4] == b"\x89PNG"
    small = load_compact(out / "compact.safetensors")
    assert sum(p.numel() for p in small.parameters()) == st["cost"]["compact"]["parameters"]
    ticket = ll.load_ticket(out / "ticket.safetensors")
    x = torch.rand(8, 1, 12, 12)
    with torch.no_grad():
        assert torch.allclose(small(x), ticket.network()(x), atol=1e-5)
    assert "structured: whole kernels and filters only" in capsys.readouterr().out
    # the flags that shape structured tickets are refused elsewhere, before any work
    bad = argv[:5] + ["--mode", "2L", "--granularity", "filter", "--out", str(tmp_path / "t")]
    assert main(bad) == 2
    assert "--granularity and --rho-kernel shape structured tickets" in capsys.readouterr().err
