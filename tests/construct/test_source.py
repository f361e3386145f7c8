"""The source's layout: biases carried through the centre tap, so image borders are exact."""

import torch
from torch import nn

import lotterylab as ll


def test_biases_are_exact_at_image_borders():
    """A constant image through a padded conv ticket matches the target at the border. Moving the
    bias taps off the centre (zero-padded 3x3 taps, as in the research code) breaks exactly there."""
    torch.manual_seed(0)
    target = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 8 * 8, 2)).eval()
    with torch.no_grad():
        target[0].bias.copy_(torch.tensor([0.8, -0.6, 0.5]))
    eps = 0.02
    ticket = ll.construct(target, mode="L+1", eps=eps, seed=0, domain=(0.0, 1.0), input_shape=(1, 8, 8))
    consts = torch.linspace(0, 1, 5).view(-1, 1, 1, 1).expand(5, 1, 8, 8)
    net = ticket.network()
    with torch.no_grad():
        assert (net(consts) - target(consts)).abs().max() <= eps
    # the same ticket with every bias tap of the conv moved from the centre (1, 1) to the corner (0, 0)
    src = ticket.source()
    const = ~ticket.masks["layers.0.weight"].flatten(1).any(1) & ticket.masks["layers.0.bias"]  # constant channels
    mask = ticket.masks["layers.1.weight"]  # [rows, cols, 3, 3]
    sel = mask[:, :, 1, 1] & const.view(1, -1)
    assert sel.any() and not (mask[:, :, 0, 0] & const.view(1, -1)).any()
    with torch.no_grad():
        w = src.layers[1].weight * mask
        w[:, :, 0, 0] = torch.where(sel, w[:, :, 1, 1], w[:, :, 0, 0])  # the same values, a corner tap
        w[:, :, 1, 1] = torch.where(sel, torch.zeros(()), w[:, :, 1, 1])
        net.layers[1].weight.copy_(w)
        assert (net(consts) - target(consts)).abs().max() > 10 * eps


def test_growth_within_the_spare_keeps_the_buffer_and_draws_what_a_fresh_layer_draws():
    """Layers start with a third spare, uninitialised: growing rows and a reader's columns into it
    reallocates nothing, and every visible entry is the grid draw a source of the final size holds."""
    from lotterylab.construct.source import RandomSource

    grown = RandomSource(3, torch.device("cpu"))
    a, b = grown.add_layer(30, 12, 0.5, 1.0, "relu"), grown.add_layer(7, 30, 0.25, 1.0, None)
    buffers = (a.Wbuf.data_ptr(), b.Wbuf.data_ptr(), b.mWbuf.data_ptr())
    grown.add_rows(a, 9)  # b gains 9 input columns
    grown.add_rows(b, 2)
    assert (a.Wbuf.data_ptr(), b.Wbuf.data_ptr(), b.mWbuf.data_ptr()) == buffers
    fresh = RandomSource(3, torch.device("cpu"))
    fa, fb = fresh.add_layer(39, 12, 0.5, 1.0, "relu"), fresh.add_layer(9, 39, 0.25, 1.0, None)
    assert torch.equal(a.W, fa.W) and torch.equal(b.W, fb.W) and torch.equal(b.b, fb.b)
    assert not b.mW.any() and b.mW.shape == (9, 39, 1)
