"""Early-bird tickets: drawn during training, channel masks, mask distances."""

import pytest
import torch

from lotterylab import models
from lotterylab.find.early_bird import EarlyBird, channel_mask, hamming
from lotterylab.training import TrainConfig

from targets import finder_mlp as mlp


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
