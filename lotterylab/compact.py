"""Compact ticket networks: what the mask keeps, built without the source.

A strong ticket keeps a few % of a very wide source (13M of 210M parameters for the demo's L+1
LeNet ticket). :func:`compact` never builds the source: it draws only the kept entries from their
counter-based streams (:func:`lotterylab.rng.uniform_at` at their grid addresses), removes every
neuron that no kept path uses, folds every neuron without a kept input (a constant neuron: its
output is ``phi(bias)``) into the next layer's biases, and returns a plain module that computes
the masked source's function (float64 by default; equal to ``ticket.network()`` up to summation
order). Layers sparser than :data:`CSR_BELOW` are CSR matrices, denser ones dense (measured).
A univariate ReLU first layer (each neuron reads one input, no bias) is folded into the second
layer: ``phi(a x) = |a| phi(sign(a) x)``, so it becomes ``phi(+x_j)``, ``phi(-x_j)`` and ``|a|``
moves into the next weights (exact in arithmetic; the outputs differ by rounding only).

Fully connected tickets (``source_mlp``) and convolutional and residual ones (``source_net``).
In a convolutional ticket whole *channels* are removed: those no kept path uses. A channel without
kept inputs is not folded there (with zero padding its constant output is not constant at the
border); it stays, a channel of its bias alone. Its layers are ordinary dense ``nn.Conv2d`` and
``nn.Linear`` modules over the kept channels, except stride-1 convolutions so sparse that a kernel
paying per kept entry is faster (:class:`lotterylab.sparse_conv.SparseConv2d`: the copy layers of
L+1 tickets, ~5 % of their kernels kept).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from . import rng
from .activations import make_activation
from .init import draw

# Kept density below which a layer is a CSR matrix. Measured (float64, 2 threads, 500 inputs, this
# project's 2-core VM): torch's CSR product costs ~70x a dense multiply-add per kept entry, so dense
# wins above ~1.5 %: 4837 x 29546 at 9 % density 17.6 s CSR vs 2.2 s dense; at 1 % 1.47 vs 2.23 s;
# 29546 x 668 at 0.15 % 0.15 vs 0.47 s. Layers whose dense form would exceed DENSE_BYTES stay CSR.
CSR_BELOW = 0.015
DENSE_BYTES = 2 << 30


class CompactLinear(nn.Module):
    """``x @ W.T + b`` with W dense or CSR; float64 by default."""

    def __init__(self, rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, shape, bias: torch.Tensor):
        super().__init__()
        self.shape = tuple(int(s) for s in shape)
        cells = max(1, self.shape[0] * self.shape[1])
        self.sparse = len(vals) < CSR_BELOW * cells or cells * vals.element_size() > DENSE_BYTES
        if self.sparse:  # built from the entries: the dense matrix never exists
            with warnings.catch_warnings():  # CSR is "beta" in torch; the matmul used here is stable
                warnings.simplefilter("ignore")
                weight = _csr(rows, cols, vals, self.shape)
        else:
            weight = torch.zeros(self.shape, dtype=vals.dtype, device=vals.device)
            weight[rows, cols] = vals
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)

    def forward(self, x):
        if self.sparse:
            return (self.weight @ x.T).T + self.bias
        return x @ self.weight.T + self.bias


def _csr(rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, shape) -> torch.Tensor:
    """A CSR matrix of the entries. Entries from ``nonzero()`` (or a coalesced tensor) are already in
    row-major order without repeats: then CSR is built directly (the same matrix as through COO's
    sort, without it: about 1.4 s of a LeNet L+1 ticket's compact build); otherwise through COO."""
    key = rows.to(torch.int64) * shape[1] + cols.to(torch.int64)
    if len(key) < 2 or bool((key[1:] > key[:-1]).all()):
        crow = torch.zeros(shape[0] + 1, dtype=torch.int64, device=vals.device)
        crow[1:] = torch.cumsum(torch.bincount(rows.to(torch.int64), minlength=shape[0]), 0)
        return torch.sparse_csr_tensor(crow, cols.to(torch.int64), vals, shape)
    return torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, shape).coalesce().to_sparse_csr()


class CompactMLP(nn.Module):
    """Inputs the ticket reads (``inputs``), then compact layers with the source's activations."""

    def __init__(self, inputs: torch.Tensor, layers: list[CompactLinear], acts: list[str]):
        super().__init__()
        self.register_buffer("inputs", inputs)
        self.layers = nn.ModuleList(layers)
        self.acts = nn.ModuleList(make_activation(a) for a in acts)

    def forward(self, x):
        h = x.reshape(x.shape[0], -1).to(self.layers[0].bias.dtype)[:, self.inputs]
        for k, layer in enumerate(self.layers):
            h = layer(h)
            if k < len(self.acts):
                h = self.acts[k](h)
        return h

    def seconds_per_example(self) -> float:
        """Estimated float64 time of one example's forward pass on this project's 2-core VM (a dense
        multiply-add at ~25 G/s, a CSR entry ~70x that: see CSR_BELOW)."""
        return sum(L.weight.values().numel() * 70 if L.sparse else L.weight.numel() for L in self.layers) / 25e9

    def num_parameters(self) -> int:
        """Nonzero weights and biases it holds."""
        return sum(int((L.weight.values() if L.sparse else L.weight).count_nonzero()) + int(L.bias.count_nonzero())
                   for L in self.layers)


def _values(ticket, name: str, rows: torch.Tensor, cols: torch.Tensor | None, shape) -> torch.Tensor:
    """Source values of parameter ``name`` at (rows, cols) (a bias: rows), float32, bit for bit."""
    dist = ticket.init[name]
    if dist["dist"] == "uniform":
        if cols is None:
            idx = rows
        elif dist.get("address") == "grid":
            idx = rows * rng.GRID_STRIDE + cols
        else:
            idx = rows * shape[1] + cols
        return rng.uniform_at(ticket.seed, rng.stream_id(name), idx.to(torch.int64), dist["low"], dist["high"])
    if dist["dist"] == "normal" and dist.get("address") == "grid" and cols is not None:
        idx = rows * rng.GRID_STRIDE + cols
        return rng.normal_at(ticket.seed, rng.stream_id(name), idx.to(torch.int64), dist["mean"], dist["std"])
    full = draw(dist, shape, ticket.seed, name)  # other distributions: this one parameter, then gathered
    return full[rows] if cols is None else full[rows, cols]


def compact(ticket, dtype=torch.float64, device=None, fold: bool = True, sparse: bool = True) -> nn.Module:
    """The ticket's network with only what it keeps (see the module docs); ``fold``: fold univariate
    ReLU layers into the layer that reads them (exact up to rounding); ``sparse=False``: no
    sparse-kernel convolutions (a structured ticket's network is the dense one it stands for)."""
    name = ticket.arch.get("name")
    if name == "source_net":
        from .compact_net import compact_net

        net = compact_net(ticket, dtype, fold, sparse)
        return net.to(device) if device is not None else net
    if name != "source_mlp":
        raise NotImplementedError(f"compact() builds the constructions' tickets (source_mlp, source_net), not "
                                  f"{name!r}; use ticket.network()")
    widths, acts = ticket.arch["kwargs"]["widths"], ticket.arch["kwargs"]["acts"]
    L = len(widths) - 1
    M = [ticket.masks[f"linears.{k}.weight"].bool().cpu().contiguous() for k in range(L)]
    B = [ticket.masks[f"linears.{k}.bias"].bool().cpu() for k in range(L)]
    # backwards: a neuron is used if a used neuron of the next layer keeps an edge from it
    used = [None] * L
    used[L - 1] = torch.ones(widths[-1], dtype=torch.bool)
    for k in range(L - 2, -1, -1):
        used[k] = _used_columns(M[k + 1], used[k + 1].nonzero().flatten())
    live = _used_columns(M[0], used[0].nonzero().flatten()).nonzero().flatten()  # the inputs some used neuron reads
    inputs = live.clone()
    const_idx, const_val = torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.float64)
    entries = []  # per layer: rows, columns, float64 values, shape, bias, row pointers
    for k in range(L):
        name = f"linears.{k}"
        shape = (widths[k + 1], widths[k])
        rows = used[k].nonzero().flatten()
        b = torch.zeros(len(rows), dtype=torch.float64)
        kb = B[k][rows]
        if kb.any():
            b[kb] = _values(ticket, f"{name}.bias", rows[kb], None, (widths[k + 1],)).double()
        if len(const_idx):  # constant neurons below: w * phi(their bias) joins the bias
            _, c, r = _row_entries(M[k], rows, _positions(widths[k], const_idx))
            if len(r):
                w = _values(ticket, f"{name}.weight", rows[r], const_idx[c], shape).double()
                b.index_add_(0, r, w * const_val[c])
        # the kept entries; r: the entry's row among the rows with a kept input (the output layer keeps
        # every row, so there among all rows)
        indptr, c, r = _row_entries(M[k], rows, _positions(widths[k], live), compress=k < L - 1)
        vals = _draw_rows(ticket, f"{name}.weight", rows, indptr, live[c])
        fan_in = indptr.diff() > 0 if k < L - 1 else torch.ones(len(rows), dtype=torch.bool)
        indptr = torch.cat([indptr[:1], indptr[1:][fan_in]])  # (row pointers of the kept rows)
        if k < L - 1:  # a used neuron without a kept input is a constant: phi(b)
            act = make_activation(acts[k]).double()
            const_idx, const_val = rows[~fan_in], act(b[~fan_in])
        kept = rows[fan_in]
        if vals is None:
            vals = _values(ticket, f"{name}.weight", kept[r], live[c], shape)
        entries.append([r, c, vals.double(), (len(kept), len(live)), b[fan_in], indptr])
        live = kept
    if fold and L > 1:
        _fold_first(entries, acts[0])
    layers = [CompactLinear(r, c, v.to(dtype), shape, b.to(dtype)) for r, c, v, shape, b, _ in entries]
    net = CompactMLP(inputs, layers, list(acts)).eval()
    return net.to(device) if device is not None else net


def _used_columns(m: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Columns of the bool matrix m that any of ``rows`` keeps (``m[rows].any(0)`` without the copy)."""
    from ._compact_kernels import used_columns
    from .threads import numba_threads

    a = m.numpy()
    pad = -a.shape[1] % 8  # (whole uint64 words per row)
    if pad:
        a = np.concatenate([a, np.zeros((a.shape[0], pad), np.bool_)], axis=1)
    with numba_threads():  # (torch's thread count holds)
        words = used_columns(a.view(np.uint64), rows.numpy())
    return torch.from_numpy(words.view(np.uint8)[:m.shape[1]] != 0)


def _draw_rows(ticket, name: str, rows: torch.Tensor, indptr: torch.Tensor, cols: torch.Tensor) -> torch.Tensor | None:
    """Source values of a grid-addressed uniform parameter at its entries given row by row (row
    ``rows[i]`` holds columns ``cols[indptr[i]:indptr[i + 1]]``), float32, bit for bit as
    :func:`lotterylab.rng.uniform_at` draws them, without gathering their addresses; None for any
    other distribution (the caller then takes :func:`_values`)."""
    dist = ticket.init[name]
    if dist["dist"] != "uniform" or dist.get("address") != "grid":
        return None
    from ._rng_kernels import uniform_rows
    from .threads import numba_threads

    k0, k1 = rng._keys(ticket.seed, rng.stream_id(name))
    out = np.empty(len(cols), np.float32)
    with numba_threads():  # (torch's thread count holds)
        uniform_rows(np.int64(k0), np.int64(k1), np.int64(rng.GRID_STRIDE), np.float32(dist["high"] - dist["low"]),
                     np.float32(dist["low"]), rows.numpy(), indptr.numpy(), cols.numpy(), out)
    return torch.from_numpy(out)


def _row_entries(m: torch.Tensor, rows: torch.Tensor, colpos: torch.Tensor,
                 compress: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Entries of the bool matrix m in ``rows`` whose column has ``colpos >= 0``, row-major, as
    (row pointers, colpos of each entry's column, its row: position in ``rows``, or with ``compress``
    among the rows with entries)."""
    from ._compact_kernels import row_entries
    from .threads import numba_threads

    with numba_threads():  # (torch's thread count holds)
        indptr, pos, row_of = row_entries(m.numpy(), rows.numpy(), colpos.numpy(), compress)
    return torch.from_numpy(indptr), torch.from_numpy(pos), torch.from_numpy(row_of)


def _positions(n: int, idx: torch.Tensor) -> torch.Tensor:
    """For each of range(n) its position in the sorted ``idx``, -1 where absent."""
    out = torch.full((n,), -1, dtype=torch.long)
    out[idx] = torch.arange(len(idx))
    return out


def _fold_first(entries: list, act: str) -> None:
    """Fold a univariate first layer into the second (in place), where that is exact in arithmetic:
    each row reads one input with weight ``a`` and has no bias, and the activation is positively
    homogeneous, so ``phi(a x) = |a| phi(sign(a) x)``: the layer becomes ``phi(+x_j)``, ``phi(-x_j)``
    (weights +-1, at most two rows per input) and ``|a|`` joins the second layer's weights, summed
    over the copies of each side (:mod:`lotterylab.compact_net` does the same for convolutions)."""
    from .activations import get

    r0, c0, a, (n0, _), b0, _ = entries[0]
    if get(act).kind != "relu_like" or bool(b0.ne(0).any()) or len(r0) != n0 or \
            not torch.equal(torch.bincount(r0, minlength=n0), torch.ones(n0, dtype=torch.long)):
        return
    a_row, c_row = torch.empty(n0, dtype=torch.float64), torch.empty(n0, dtype=torch.long)
    a_row[r0], c_row[r0] = a, c0
    key = c_row * 2 + (a_row < 0).long()  # (input, side)
    pairs, channel = torch.unique(key, return_inverse=True)
    sign = 1.0 - 2.0 * (pairs % 2).double()
    entries[0] = [torch.arange(len(pairs)), pairs // 2, sign, (len(pairs), entries[0][3][1]),
                  torch.zeros(len(pairs), dtype=torch.float64), torch.arange(len(pairs) + 1)]
    _, c1, w, (n1, _), b1, indptr = entries[1]
    # the copies of one (input, side) merge: sum their weights times |a| per (row, channel), in
    # row-major order (one compiled pass over the rows, which come sorted; unique + index_add_ was
    # 1.4 s of the demo's, the gathers for it 0.5 s more)
    from ._compact_kernels import merge_rows
    from .threads import numba_threads

    with numba_threads():
        ptr, rows, ch, v = merge_rows(indptr.numpy(), c1.numpy(), channel.numpy(), w.numpy(), a_row.abs().numpy(),
                                      len(pairs))
    entries[1] = [torch.from_numpy(rows), torch.from_numpy(ch), torch.from_numpy(v), (n1, len(pairs)), b1,
                  torch.from_numpy(ptr)]
