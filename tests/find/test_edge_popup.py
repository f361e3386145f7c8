"""Edge-popup: tickets that learn without training weights, reproducible on conv models."""

import math

import pytest
import torch

from lotterylab import load_ticket, models
from lotterylab.find.edge_popup import EdgePopupConfig, edge_popup
from lotterylab.training import TrainConfig, evaluate


def test_edge_popup_ticket_learns_without_training_weights(tiny_data, tmp_path):
    cfg = EdgePopupConfig(density=0.3, network_seed=1)
    ticket, result = edge_popup("mlp", tiny_data, cfg, TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9,
                                                                   batch_size=30, budget="4ep", schedule="cosine"),
                                out=tmp_path, progress=False, widths=(64, 32))
    for m in ticket.masks.values():  # per-layer top-k: exactly k kept in every layer
        assert int(m.sum()) == max(1, round(0.3 * m.numel()))
    source = ticket.source()
    fresh = models.create("mlp", input_shape=(1, 8, 8), widths=(64, 32), seed=1,
                          init={"weight": {"dist": "signed_constant", "scale": 1 / math.sqrt(0.3)}, "bias": "zeros"})
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), fresh.state_dict().values()))
    loaded = load_ticket(tmp_path / "ticket.safetensors")
    acc = evaluate(loaded.network(), tiny_data.test)["accuracy"]
    assert acc == pytest.approx(result["final"]["test_accuracy"])
    assert acc > 0.5  # chance is 0.1: the scores found a working subnetwork of untrained weights


def test_edge_popup_on_a_conv_model_writes_a_reproducible_ticket(tiny_data, tmp_path):
    ticket, result = edge_popup("conv2", tiny_data, EdgePopupConfig(density=0.5, weight_init="kaiming_normal"),
                                TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, batch_size=30, budget="20it",
                                            eval_every="20it"), out=tmp_path, progress=False)
    assert set(ticket.masks) == {"features.0.weight", "features.2.weight", "classifier.1.weight",
                                 "classifier.3.weight", "classifier.5.weight"}
    loaded = load_ticket(tmp_path / "ticket.safetensors")
    assert evaluate(loaded.network(), tiny_data.test)["accuracy"] == pytest.approx(result["final"]["test_accuracy"])
