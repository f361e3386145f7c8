"""Compact ticket networks: equal to the masked source, without the unused neurons, never built from it."""

from types import SimpleNamespace

import pytest
import torch

import lotterylab as ll
from lotterylab import models
from lotterylab.sparse_conv import SparseConv2d

from conftest import needs_mnist
from targets import SHAPE, small_cnn, small_resnet, trained_mlp

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
    plain = ticket.compact(fold=False)  # every used neuron kept as it is
    with torch.no_grad():
        assert torch.allclose(plain(x), ref, rtol=1e-9, atol=1e-12 * float(ref.abs().max()))
    assert [layer.shape[0] for layer in plain.layers] == _paths(ticket)
    assert small.num_parameters() <= plain.num_parameters() <= ticket.masks.num_kept()
    assert sum(layer.shape[0] for layer in plain.layers) < sum(ticket.report["widths"]["source"][1:])
    # ReLU: the univariate first layer folds to at most the two sides of each input
    assert small.layers[0].shape[0] <= 2 * small.layers[0].shape[1] < plain.layers[0].shape[0]


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


CONV_CASES = {"cnn 2L": ("cnn", dict(mode="2L", eps_param=0.05)),
              "cnn L+1": ("cnn", dict(mode="L+1", eps_param=0.05)),
              "resnet 2L": ("resnet", dict(mode="2L", eps_param=0.05)),
              "resnet L+1": ("resnet", dict(mode="L+1", eps_param=0.05))}


def _conv_ticket(case):
    kind, kw = CONV_CASES[case]
    target = small_cnn("relu", steps=5) if kind == "cnn" else small_resnet("relu", steps=3)
    return target, ll.construct(target, domain=(0.0, 1.0), input_shape=SHAPE, seed=0, **kw)


@pytest.mark.parametrize("case", list(CONV_CASES))
def test_compact_conv_and_residual_tickets_equal_the_masked_source(case):
    target, ticket = _conv_ticket(case)
    net, small = ticket.network().double(), ticket.compact()
    x = torch.cat([torch.rand(64, *SHAPE, dtype=torch.float64), torch.zeros(1, *SHAPE, dtype=torch.float64),
                   torch.ones(1, *SHAPE, dtype=torch.float64)])
    with torch.no_grad():
        ref, got = net(x), small(x)
    assert torch.allclose(got, ref, rtol=1e-9, atol=1e-12 * float(ref.abs().max()))
    assert all(isinstance(m, torch.nn.Conv2d | torch.nn.Linear | SparseConv2d) for m in small.layers)
    assert small.num_parameters() <= ticket.masks.num_kept()
    kept = sum(m.out_features if isinstance(m, torch.nn.Linear) else m.out_channels for m in small.layers)
    assert kept < sum(ticket.report["widths"]["source"][1:])  # unused channels are gone
    # a plain state dict: saved and loaded into a fresh compact network, the same outputs
    again = ticket.compact()
    again.load_state_dict(small.state_dict())
    with torch.no_grad():
        assert torch.equal(again(x), got)


@pytest.mark.parametrize("case", ["cnn L+1", "resnet L+1"])
def test_removed_channels_are_used_by_no_kept_path(case):
    """Noise added to every removed channel of the masked source leaves its outputs unchanged."""
    from lotterylab.compact_net import needed_channels

    _, ticket = _conv_ticket(case)
    net = ticket.network().double()
    plan = ticket.arch["kwargs"]["plan"]
    need = needed_channels(ticket)
    weight_ops = [i for i, op in enumerate(plan) if op["op"] in ("conv", "linear")]
    g = torch.Generator().manual_seed(0)
    removed = 0
    for k, i in enumerate(weight_ops):
        drop = ~need[i]
        removed += int(drop.sum())

        def noise(mod, inp, out, drop=drop):
            out = out.clone()
            out[:, drop] += torch.randn(out[:, drop].shape, generator=g, dtype=out.dtype) * 10
            return out

        net.layers[k].register_forward_hook(noise)
    assert removed > 0
    x = torch.rand(32, *SHAPE, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(net(x), ticket.compact()(x), rtol=1e-9, atol=1e-12)


def test_compact_conv_ticket_is_what_verify_and_compare_evaluate():
    target, ticket = _conv_ticket("resnet 2L")
    x = torch.rand(40, *SHAPE)
    split = ll.data.Split(x, torch.randint(0, 5, (40,)))
    got = ll.verification.compare(target, ticket, split)
    with torch.no_grad():
        ref = ticket.network().double()(x.double())
        want = float((ref - target.double()(x.double())).abs().max())
    assert got["max_output_error"] == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("act", ["relu", "leaky_relu", "tanh"])
def test_univariate_layers_fold_only_where_exact(act):
    from lotterylab.compact_net import compact_net

    target = small_cnn(act, steps=5)
    ticket = ll.construct(target, mode="2L", eps_param=0.05, domain=(0.0, 1.0), input_shape=SHAPE, seed=0)
    folded, plain = compact_net(ticket), compact_net(ticket, fold=False)
    x = torch.rand(32, *SHAPE, dtype=torch.float64)
    with torch.no_grad():
        ref = ticket.network().double()(x)
        for net in (folded, plain):
            assert torch.allclose(net(x), ref, rtol=1e-9, atol=1e-12 * float(ref.abs().max()))
    widths = [m.out_channels for m in folded.layers if not isinstance(m, torch.nn.Linear)]
    if act == "tanh":  # phi(a x) != |a| phi(+-x): nothing folds
        assert widths == [m.out_channels for m in plain.layers if not isinstance(m, torch.nn.Linear)]
    else:  # univariate layers shrink to the sides of their inputs (+ constant channels)
        assert widths[0] < plain.layers[0].out_channels and widths[2] < plain.layers[2].out_channels


@needs_mnist
def test_compact_conv_ticket_on_real_mnist_images():
    from torch import nn

    torch.manual_seed(0)
    target = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4), nn.Conv2d(3, 4, 3, padding=1),
                           nn.ReLU(), nn.Flatten(), nn.Linear(196, 10)).eval()
    x = ll.data.load("mnist").test.x[:64]
    ticket = ll.construct(target, mode="2L", eps_param=0.05, seed=0, domain=x, input_shape=(1, 28, 28))
    with torch.no_grad():
        ref, got = ticket.network().double()(x.double()), ticket.compact()(x.double())
    assert torch.allclose(got, ref, rtol=1e-9, atol=1e-12 * float(ref.abs().max()))


def test_the_compact_network_is_built_once_and_rebuilt_for_new_masks():
    import copy
    import pickle

    t = ll.construct(trained_mlp("relu"), mode="L+1", eps_param=0.02, seed=1)
    net = t.compact()
    assert t.compact() is net  # the construction's own check, verify and compare share it
    assert t.compact(dtype=torch.float32) is not net
    for other in (copy.deepcopy(t), pickle.loads(pickle.dumps(t))):  # copies leave it behind
        assert other._compact == {}
        x = torch.rand(32, 4, dtype=torch.float64) * 2 - 1
        with torch.no_grad():
            assert torch.equal(other.compact()(x), net(x))
    t.masks = ll.Mask({k: torch.zeros_like(v) for k, v in t.masks.items()})
    rebuilt = t.compact()
    assert rebuilt is not net
    with torch.no_grad():
        assert not rebuilt(torch.rand(4, 4, dtype=torch.float64)).any()  # nothing kept: zero outputs


def test_csr_built_directly_is_the_coo_route_matrix():
    """Row-major unique entries go straight to CSR; anything else through COO; the same matrix."""
    from lotterylab.compact import _csr

    g = torch.Generator().manual_seed(0)
    mask = torch.rand(40, 30, generator=g) < 0.1
    r, c = mask.nonzero(as_tuple=True)
    v = torch.randn(len(r), generator=g, dtype=torch.float64)
    ref = torch.sparse_coo_tensor(torch.stack([r, c]), v, (40, 30)).coalesce().to_sparse_csr()
    for rows, cols, vals in ((r, c, v), (r.flip(0), c.flip(0), v.flip(0))):  # sorted, and reversed
        got = _csr(rows, cols, vals, (40, 30))
        assert torch.equal(got.crow_indices(), ref.crow_indices()) and torch.equal(got.col_indices(), ref.col_indices())
        assert torch.equal(got.values(), ref.values())
    dup = _csr(torch.tensor([0, 0]), torch.tensor([1, 1]), torch.tensor([1.0, 2.0], dtype=torch.float64), (2, 2))
    assert torch.equal(dup.to_dense(), torch.tensor([[0.0, 3.0], [0.0, 0.0]], dtype=torch.float64))


@pytest.mark.parametrize("case", ["cnn L+1", "resnet L+1"])
def test_sparse_compact_layers_equal_the_masked_source_and_save_and_load(case, tmp_path, monkeypatch):
    """Every stride-1 convolution as a SparseConv2d (the cost model told the sparse kernel always
    wins): the outputs stay the masked source's, and a saved network loads back with the same outputs."""
    from lotterylab import sparse_conv
    from lotterylab.compact_net import load_compact, save_compact

    _, ticket = _conv_ticket(case)
    monkeypatch.setattr(sparse_conv, "SPARSE_RATE", 1e30)
    small = ticket.compact()
    assert sum(isinstance(m, SparseConv2d) for m in small.layers) >= 2
    x = torch.rand(16, *SHAPE, dtype=torch.float64)
    with torch.no_grad():
        ref, got = ticket.network().double()(x), small(x)
    assert torch.allclose(got, ref, rtol=1e-9, atol=1e-12 * float(ref.abs().max()))
    assert small.num_parameters() <= ticket.masks.num_kept()
    from lotterylab.compact_net import compact_net
    from lotterylab.structured import cost  # counts what the sparse layers hold

    monkeypatch.setattr(sparse_conv, "SPARSE_RATE", 1e-30)  # and now never
    dense = compact_net(ticket)
    assert not any(isinstance(m, SparseConv2d) for m in dense.layers)
    assert cost(small, SHAPE)["nonzero_parameters"] == small.num_parameters() == dense.num_parameters()
    assert cost(small, SHAPE)["macs"] < cost(dense, SHAPE)["macs"]
    save_compact(small, tmp_path / "c.safetensors")
    again = load_compact(tmp_path / "c.safetensors")
    assert [type(m) for m in again.layers] == [type(m) for m in small.layers]
    with torch.no_grad():
        assert torch.equal(again(x), got)
    # gradients (verify's attack) run densely from the same entries
    xg = x[:2].clone().requires_grad_(True)
    small(xg).sum().backward()
    assert xg.grad is not None and torch.allclose(small(xg).detach(), got[:2], rtol=1e-9, atol=1e-12)


def test_compiled_mask_scan_and_merge_are_the_tensor_routes_bit_for_bit():
    """The compiled passes of the MLP build (``_compact_kernels``) give exactly what tensor indexing,
    the generator and unique + index_add_ give: the same entries in the same order, the same drawn
    values, the same float64 sums."""
    from lotterylab import rng
    from lotterylab._compact_kernels import merge_rows
    from lotterylab.compact import _draw_rows, _row_entries, _used_columns

    g = torch.Generator().manual_seed(3)
    seed, low, high = 5, -0.3, 0.37  # (0.67: not a float32)
    for density, C in ((0.02, 90), (0.3, 96), (0.9, 61)):  # (column counts off and on whole words)
        m = torch.rand(60, C, generator=g) < density
        rows = torch.tensor(sorted(set(torch.randint(0, 60, (40,), generator=g).tolist())))
        assert torch.equal(_used_columns(m, rows), m[rows].any(0))
        cols = torch.tensor(sorted(set(torch.randint(0, C, (50,), generator=g).tolist())))
        colpos = torch.full((C,), -1, dtype=torch.long)
        colpos[cols] = torch.arange(len(cols))
        indptr, c, r = _row_entries(m, rows, colpos)
        r0, c0 = m[rows][:, cols].nonzero(as_tuple=True)
        assert torch.equal(r, r0) and torch.equal(c, c0)
        assert torch.equal(indptr.diff(), torch.bincount(r0, minlength=len(rows)))
        ticket = SimpleNamespace(seed=seed, init={"w": {"dist": "uniform", "low": low, "high": high, "address": "grid"}})
        vals = _draw_rows(ticket, "w", rows, indptr, cols[c])
        assert torch.equal(vals, rng.uniform_at(seed, rng.stream_id("w"), rows[r0] * rng.GRID_STRIDE + cols[c0], low, high))
        _, _, rank = _row_entries(m, rows, colpos, compress=True)  # rows without entries skipped
        nonempty = torch.bincount(r0, minlength=len(rows)) > 0
        assert torch.equal(rank, (torch.cumsum(nonempty.long(), 0) - 1)[r0])
        P = 7  # merge: per row, w * scale[col] summed per channel[col] in entry order
        channel = torch.randint(0, P, (len(cols),), generator=g)
        scale = torch.rand(len(cols), generator=g, dtype=torch.float64)
        w = torch.randn(len(r0), generator=g, dtype=torch.float64)
        key, inverse = torch.unique(r0 * P + channel[c0], sorted=True, return_inverse=True)
        want = torch.zeros(len(key), dtype=torch.float64).index_add_(0, inverse, w * scale[c0])
        ptr, got_r, got_ch, got = merge_rows(indptr.numpy(), c0.numpy(), channel.numpy(), w.numpy(), scale.numpy(), P)
        assert torch.equal(torch.from_numpy(got), want) and torch.equal(torch.from_numpy(got_ch), key % P)
        assert torch.equal(torch.from_numpy(got_r), key // P)
        assert torch.equal(torch.repeat_interleave(torch.arange(len(rows)), torch.from_numpy(ptr).diff()), key // P)


def test_building_a_compact_mlp_keeps_the_thread_count(tmp_path):
    """The compiled passes run on torch's thread count and leave it as set: in a fresh process whose
    first numba launch is theirs, an unguarded launch raises torch's count to the number of cores."""
    import subprocess
    import sys

    ll.construct(trained_mlp("relu"), **CASES["2L paper"]).save(tmp_path / "t.safetensors")
    code = ("import torch, lotterylab as ll; torch.set_num_threads(1); "
            f"ll.load_ticket({str(tmp_path / 't.safetensors')!r}, verify_source=False).compact(); "
            "print(torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[-1] == "1"
