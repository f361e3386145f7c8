"""Convolutions with sparse kernels: cost proportional to the kept entries.

An L+1 convolutional ticket keeps ~5 % of each kernel among hundreds of copy channels (ResNet-20:
8.7M kept weights in layers whose dense form holds 190M). A dense float64 convolution (im2col + GEMM)
pays for every zero; :func:`conv2d_entries` pays per kept entry (:mod:`lotterylab._sparse_conv_kernels`),
after zero-padding only the input channels the entries read. Stride 1 only (a strided layer runs
densely). :func:`sparse_wins` decides between the two from the costs measured by
``benchmarks/sparse_conv.py`` (float64, 2 threads, this project's VM; see docs/benchmarks.md):

* dense: ``rows x cols x taps`` multiply-adds at ~25 G/s, plus unfolding the input (~135
  multiply-adds' worth per unfolded element): the unfold dominates when few rows are computed;
* sparse: one multiply-add per kept entry and output position at ~1.8 G/s.

In float32 torch's dense convolution is ~2.5x faster than in float64 and the sparse kernel is not,
so float32 layers go sparse only below ~3 % density (float64: ~7 %).

The sums run in another order than torch's convolution, so results differ from it by rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# multiply-adds per second (dense, sparse) and the unfold's cost per element, float64 (measured)
# (float32: torch's dense convolution ~2.5x faster, the sparse kernel not)
DENSE_RATE = {torch.float64: 25e9, torch.float32: 62e9}
SPARSE_RATE, UNFOLD_COST = 1.8e9, 135


def pair(v) -> tuple[int, int]:
    """A convolution's size argument (an int or a pair) as a pair."""
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def sparse_wins(entries: int, rows: int, cols: int, taps: int, stride=(1, 1), dtype=torch.float64) -> bool:
    """Whether the sparse kernel computes ``rows`` output maps of a layer reading ``cols`` input
    channels through ``entries`` kept weights faster than a dense convolution (see the module docs)."""
    if tuple(stride) != (1, 1) or dtype not in DENSE_RATE:
        return False
    return entries / SPARSE_RATE < (rows + UNFOLD_COST) * cols * taps / DENSE_RATE[dtype]


def csr_entries(w: torch.Tensor):
    """The nonzero entries of conv weights ``w`` [rows, cols, kh, kw] in row-major order:
    (row pointer [rows + 1], input channel, tap row, tap column, value)."""
    R = w.shape[0]
    r, c, ky, kx = w.nonzero(as_tuple=True)
    ip = torch.zeros(R + 1, dtype=torch.int64)
    ip[1:] = torch.cumsum(torch.bincount(r, minlength=R), 0)
    return ip, c, ky, kx, w[r, c, ky, kx]


def conv2d_entries(x: torch.Tensor, ip: torch.Tensor, ch: torch.Tensor, ky: torch.Tensor, kx: torch.Tensor,
                   val: torch.Tensor, kernel, padding) -> torch.Tensor:
    """``F.conv2d(x, W, None, 1, padding)`` for the conv weights W with the given entries
    (:func:`csr_entries`; ``ch`` indexes x's channels, which need not all be read), on the CPU."""
    from ._sparse_conv_kernels import conv_entries
    from .threads import numba_threads

    if x.device.type != "cpu":
        raise ValueError(f"conv2d_entries runs on the CPU, the input is on {x.device}: move it there, or use "
                         f"F.conv2d with SparseConv2d.weight (what SparseConv2d does on other devices)")
    N, _, H, W = x.shape
    (kh, kw), (ph, pw) = kernel, padding
    R = len(ip) - 1
    used, ch = torch.unique(ch, return_inverse=True)  # (sorted: the gather reads x in order)
    Hp, Wp = H + 2 * ph, W + 2 * pw
    Ho, Wo = Hp - kh + 1, Wp - kw + 1
    xs = x if len(used) == x.shape[1] else x.index_select(1, used)
    xp = F.pad(xs, (pw, pw, ph, ph)).reshape(N, len(used), Hp * Wp).contiguous()
    out = torch.zeros(N, R, Ho * Wp, dtype=x.dtype)
    if Ho > 0 and Wo > 0 and len(val):
        with numba_threads():
            conv_entries(xp.numpy(), ip.numpy(), ch.numpy(), (ky * Wp + kx).numpy(),
                         val.to(x.dtype).contiguous().numpy(), out.numpy(), (Ho - 1) * Wp + Wo)
    return out.view(N, R, Ho, Wp)[..., :Wo]


def transposed_entries(ip, ch, ky, kx, val, in_channels: int, kernel):
    """The entries of the convolution that is this one's gradient with respect to its input: for
    stride 1, ``conv_transpose2d(g, W, padding=p)`` is ``conv2d(g, W', padding=k - 1 - p)`` with
    ``W'[c, r] = W[r, c]`` flipped in both taps."""
    r = torch.repeat_interleave(torch.arange(len(ip) - 1), ip.diff())
    order = torch.argsort(ch * (len(ip) - 1) + r, stable=True)  # row-major by the new rows (input channels)
    tip = torch.zeros(in_channels + 1, dtype=torch.int64)
    tip[1:] = torch.cumsum(torch.bincount(ch, minlength=in_channels), 0)
    return tip, r[order], kernel[0] - 1 - ky[order], kernel[1] - 1 - kx[order], val[order]


class _EntriesConv(torch.autograd.Function):
    """The sparse convolution with its input gradient (verify's attack) computed sparsely as well."""

    @staticmethod
    def forward(ctx, x, layer):
        ctx.layer = layer
        return conv2d_entries(x, layer.ip, layer.ch, layer.ky, layer.kx, layer.values, layer.kernel_size,
                              layer.padding)

    @staticmethod
    def backward(ctx, g):
        m = ctx.layer
        pad = (m.kernel_size[0] - 1 - m.padding[0], m.kernel_size[1] - 1 - m.padding[1])
        if min(pad) < 0:  # padding wider than the kernel: no transposed convolution of this form
            shape = (g.shape[0], m.in_channels, g.shape[2] - 2 * m.padding[0] + m.kernel_size[0] - 1,
                     g.shape[3] - 2 * m.padding[1] + m.kernel_size[1] - 1)
            return torch.nn.grad.conv2d_input(shape, m.weight, g, padding=m.padding), None
        return conv2d_entries(g.contiguous(), *m.transposed(), m.kernel_size, pad), None


class SparseConv2d(nn.Module):
    """A stride-1 convolution holding only its kept entries (a compact ticket network's sparse layer).
    On the CPU it runs the sparse kernel (the input gradient too); on another device, densely from the
    same entries."""

    ENTRIES = ("ip", "ch", "ky", "kx", "values", "bias")

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, padding):
        super().__init__()
        self._setup(dict(zip(self.ENTRIES, (*csr_entries(weight), bias.clone()))), int(weight.shape[1]),
                    tuple(weight.shape[2:]), padding)

    def _setup(self, entries: dict, in_channels: int, kernel, padding) -> None:
        self.in_channels, self.out_channels = in_channels, len(entries["ip"]) - 1
        self.kernel_size, self.padding, self.stride = tuple(kernel), tuple(padding), (1, 1)
        for name in self.ENTRIES:
            self.register_buffer(name, entries[name])

    @classmethod
    def from_entries(cls, entries: dict, in_channels: int, kernel, padding) -> SparseConv2d:
        """The layer whose state dict is ``entries`` (a saved compact network)."""
        m = cls.__new__(cls)
        nn.Module.__init__(m)
        m._setup(entries, in_channels, kernel, padding)
        return m

    @property
    def weight(self) -> torch.Tensor:
        """The dense kernel [out, in, kh, kw] (built from the entries)."""
        w = torch.zeros(self.out_channels, self.in_channels, *self.kernel_size, dtype=self.values.dtype,
                        device=self.values.device)
        r = torch.repeat_interleave(torch.arange(self.out_channels, device=self.ip.device), self.ip.diff())
        w[r, self.ch, self.ky, self.kx] = self.values
        return w

    def entries(self) -> int:
        return len(self.values)

    def transposed(self):
        """:func:`transposed_entries` of this layer, built once."""
        if getattr(self, "_transposed", None) is None or self._transposed[-1].dtype != self.values.dtype:
            self._transposed = transposed_entries(self.ip, self.ch, self.ky, self.kx, self.values, self.in_channels,
                                                  self.kernel_size)
        return self._transposed

    def forward(self, x):
        if x.device.type != "cpu":
            return F.conv2d(x, self.weight, self.bias, 1, self.padding)
        if x.dtype != self.values.dtype:
            raise TypeError(f"SparseConv2d holds {self.values.dtype} entries, the input is {x.dtype}: convert "
                            f"one of them (the compact network converts its inputs itself)")
        return _EntriesConv.apply(x, self) + self.bias.view(1, -1, 1, 1)
