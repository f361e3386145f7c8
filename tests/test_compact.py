"""Compact ticket networks: equal to the masked source, without the unused neurons, never built from it."""

import pytest
import torch

import lotterylab as ll
from lotterylab import models

from targets import SHAPE, small_cnn, trained_mlp

CASES = {"L+1 guarantee": dict(mode="L+1", eps=0.02, seed=1),
         "2L paper": dict(mode="2L", eps_param=0.01, seed=0),
         "L+1 grown": dict(mode="L+1", eps_param=0.005, rho_first=8, seed=0)}


def _paths(ticket) -> list[int]:
    """Neurons per layer on a kept input -> output path whose own input is kept (constants fold away)."""
    widths = ticket.arch["kwargs"]["widths"]
    L = len(widths) - 1
    M = [ticket.masks[f"linears.{k}.weight"] for k in range(L)]
    back = [None] * L
    back[-1] = torch.ones(widths[-1], dtype=torch.bool)
    for k in range(L - 2, -1, -1):
        back[k] = M[k + 1][back[k + 1]].any(0)
    fwd, out = torch.ones(widths[0], dtype=torch.bool), []
    for k in range(L):
        fwd = M[k][:, fwd].any(1) if k < L - 1 else torch.ones(widths[-1], dtype=torch.bool)
        out.append(int((fwd & back[k]).sum()))
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_compact_equals_the_masked_source_and_keeps_every_used_neuron(case):
    target = trained_mlp("relu")
    ticket = ll.construct(target, **CASES[case])
    net, small = ticket.network().double(), ticket.compact()
    x = torch.cat([torch.rand(512, 4, dtype=torch.float64) * 2 - 1, torch.tensor([[-1.0] * 4, [1.0] * 4])])
    with torch.no_grad():
        ref, got = net(x), small(x)
    assert torch.allclose(got, ref, rtol=1e-9, atol=1e-12 * float(ref.abs().max()))
    assert [layer.shape[0] for layer in small.layers] == _paths(ticket)
    assert small.num_parameters() <= ticket.masks.num_kept()
    assert sum(layer.shape[0] for layer in small.layers) < sum(ticket.report["widths"]["source"][1:])


def test_compact_on_real_data(tiny_data):
    """A small MLP on the 8x8 images, its 2L ticket over the data's box: the same outputs on the test set."""
    torch.manual_seed(0)
    target = models.create("mlp", input_shape=(1, 8, 8), widths=(12,), seed=0).eval()
    ticket = ll.construct(target, mode="2L", eps_param=0.05, seed=0, domain=tiny_data.train.x)
    x = tiny_data.test.x.double()
    with torch.no_grad():
        ref, got = ticket.network().double()(x), ticket.compact()(x)
    assert torch.allclose(got, ref, rtol=1e-9, atol=1e-12 * float(ref.abs().max()))
    cmp = ll.verification.compare(target, ticket, tiny_data.test)  # evaluates the compact network
    with torch.no_grad():
        want = float((ref - target.double()(x)).abs().max())
    assert cmp["max_output_error"] == pytest.approx(want, rel=1e-9)


def test_a_float32_compact_network_is_refused_not_converted_in_place():
    ticket = ll.construct(trained_mlp("relu", steps=5), mode="2L", eps_param=0.05)
    small = ticket.compact(dtype=torch.float32)
    with pytest.raises(ValueError, match="pass the Ticket itself"):
        ll.verify(trained_mlp("relu", steps=5), small, samples=10, attack_steps=0)
    assert small.layers[0].bias.dtype == torch.float32


def test_convolutional_tickets_say_what_to_use_instead():
    ticket = ll.construct(small_cnn("relu", steps=1), mode="2L", eps_param=0.05, domain=(0.0, 1.0),
                          input_shape=SHAPE)
    with pytest.raises(NotImplementedError, match="ticket.network"):
        ticket.compact()
