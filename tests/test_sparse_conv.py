"""The sparse-kernel convolution: torch's convolution up to rounding, independent of the thread count."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from lotterylab.sparse_conv import SparseConv2d, conv2d_entries, csr_entries, sparse_wins
from lotterylab.threads import set_threads


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 6), r=st.integers(1, 5), h=st.integers(1, 9), w=st.integers(1, 9),
       kh=st.integers(1, 3), kw=st.integers(1, 3), ph=st.integers(0, 2), pw=st.integers(0, 2),
       density=st.floats(0.0, 1.0), seed=st.integers(0, 2**31 - 1))
def test_conv2d_entries_equals_torch_convolution(n, c, r, h, w, kh, kw, ph, pw, density, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    weight = torch.randn(r, c, kh, kw, generator=g, dtype=torch.float64)
    weight *= torch.rand(r, c, kh, kw, generator=g) < density
    if h + 2 * ph < kh or w + 2 * pw < kw:
        return  # no output position: torch refuses such a layer too
    want = F.conv2d(x, weight, None, 1, (ph, pw))
    got = conv2d_entries(x, *csr_entries(weight), (kh, kw), (ph, pw))
    assert got.shape == want.shape
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-12)


def test_entries_reading_a_few_channels_of_a_wide_input():
    """Only the channels the entries name are read (bias correction computes a few rows at a time)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 50, 8, 8, generator=g, dtype=torch.float64)
    weight = torch.zeros(3, 50, 3, 3, dtype=torch.float64)
    weight[:, [2, 17, 40]] = torch.randn(3, 3, 3, 3, generator=g, dtype=torch.float64)
    got = conv2d_entries(x, *csr_entries(weight), (3, 3), (1, 1))
    assert torch.allclose(got, F.conv2d(x, weight, None, 1, 1), rtol=1e-12, atol=1e-12)


def test_the_result_does_not_depend_on_the_thread_count():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(6, 40, 12, 12, generator=g, dtype=torch.float64)
    weight = torch.randn(30, 40, 3, 3, generator=g, dtype=torch.float64) * (torch.rand(30, 40, 3, 3, generator=g) < 0.1)
    n0 = torch.get_num_threads()
    try:
        set_threads(1)
        one = conv2d_entries(x, *csr_entries(weight), (3, 3), (1, 1))
        set_threads(2)
        two = conv2d_entries(x, *csr_entries(weight), (3, 3), (1, 1))
    finally:
        set_threads(n0)
    assert torch.equal(one, two)


def test_the_module_float32_and_its_dense_weight():
    g = torch.Generator().manual_seed(3)
    weight = torch.randn(5, 4, 3, 3, generator=g, dtype=torch.float64) * (torch.rand(5, 4, 3, 3, generator=g) < 0.3)
    bias = torch.randn(5, generator=g, dtype=torch.float64)
    m = SparseConv2d(weight, bias, (1, 1))
    assert torch.equal(m.weight, weight) and m.entries() == int(weight.count_nonzero())
    x = torch.randn(2, 4, 7, 7, generator=g)
    m32 = m.to(torch.float32)
    with torch.no_grad():
        got = m32(x)
    assert got.dtype == torch.float32
    with pytest.raises(TypeError, match="convert"):
        m32(x.double())
    assert torch.allclose(got, F.conv2d(x, weight.float(), bias.float(), 1, 1), rtol=1e-5, atol=1e-5)


def test_the_cost_model_picks_sparse_only_where_it_is_cheaper():
    # a wide L+1 layer at 4.5 % density: sparse in float64, dense in float32; a dense layer: dense
    entries = int(0.045 * 1200 * 1200 * 9)
    assert sparse_wins(entries, 1200, 1200, 9)
    assert not sparse_wins(entries, 1200, 1200, 9, dtype=torch.float32)
    assert not sparse_wins(1200 * 1200 * 9, 1200, 1200, 9)
    assert not sparse_wins(entries, 1200, 1200, 9, stride=(2, 2))
    # a few rows: the unfold dominates the dense route, so even a dense-ish row goes sparse
    assert sparse_wins(40 * 9, 1, 40, 9)


@pytest.mark.parametrize("kernel,padding", [((3, 3), (1, 1)), ((2, 3), (0, 2)), ((1, 1), (0, 0)), ((3, 3), (3, 0))])
def test_the_input_gradient_is_the_dense_convolutions(kernel, padding):
    """verify's attack differentiates through sparse layers: the same gradient as torch's convolution."""
    g = torch.Generator().manual_seed(4)
    weight = torch.randn(6, 5, *kernel, generator=g, dtype=torch.float64)
    weight *= torch.rand(weight.shape, generator=g) < 0.4
    bias = torch.randn(6, generator=g, dtype=torch.float64)
    m = SparseConv2d(weight, bias, padding)
    x = torch.randn(3, 5, 7, 6, generator=g, dtype=torch.float64, requires_grad=True)
    xd = x.detach().clone().requires_grad_(True)
    up = torch.randn(m(x).shape, generator=g, dtype=torch.float64)
    (m(x) * up).sum().backward()
    (F.conv2d(xd, weight, bias, 1, padding) * up).sum().backward()
    assert torch.allclose(x.grad, xd.grad, rtol=1e-12, atol=1e-12)
