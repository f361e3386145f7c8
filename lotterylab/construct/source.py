"""The random source network under construction: layers drawn from (seed, layer name), growable.

Every weight is addressed on a grid (:func:`lotterylab.rng.uniform_grid`): entry (row, column, tap)
is drawn from the layer's stream at (row, column * taps + tap), so adding rows or columns never
changes a value already drawn, and a ticket file regenerates the same source from its seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .. import rng


@dataclass
class SourceLayer:
    """One layer of the source: weights and masks ``[rows, cols, taps]`` with spare capacity, and
    the roles of its rows (copies of an input unit, copies of a target neuron, constants)."""

    index: int
    w_scale: float
    b_scale: float
    act: str | None
    # weights and mask [rows, cols, taps] (taps = kernel positions; 1 for a Linear on a vector) live in
    # buffers with spare capacity, so growing by a few neurons does not copy a 100M-entry layer each time
    Wbuf: torch.Tensor
    b: torch.Tensor
    mWbuf: torch.Tensor
    mb: torch.Tensor
    R: int = 0
    C: int = 0
    prefix: str = "linears"
    geo: dict | None = None    # convolutional sources: {"op": "conv"|"linear", kernel, stride, padding}
    post: list = field(default_factory=list)  # parameter-free ops after the activation (pooling)
    centre: int = 0            # the tap that carries biases: inside the image at every output position
    input_layer: int | None = None  # source layer whose output it reads (None: the one before; -1: the input)
    add_from: int | None = None     # residual: source layer whose output is added before the activation
    links: set = field(default_factory=set)  # L+1 residual: layers added row by row to / from this one
    # roles of rows
    unit_rows: dict = field(default_factory=dict)   # univariate layer: input unit -> rows copying it
    copy_rows: dict = field(default_factory=dict)   # copy / assembling layer: target neuron -> rows
    const_rows: list = field(default_factory=list)  # constant neurons (own bias kept)
    init: str = "uniform"  # weights U[-w_scale, w_scale], or "normal": N(0, w_scale^2) (structured tickets)

    @property
    def name(self) -> str:
        return f"{self.prefix}.{self.index}"

    @property
    def reads(self) -> int:
        """The source layer whose output this one reads (-1: the network input)."""
        return self.index - 1 if self.input_layer is None else self.input_layer

    def copy_row_index(self) -> torch.Tensor:
        """Every row that realises a target neuron, grouped by neuron in order."""
        return torch.tensor([r for rs in self.copy_rows.values() for r in rs], dtype=torch.long)

    @property
    def T(self) -> int:
        return self.Wbuf.shape[2]

    @property
    def W(self) -> torch.Tensor:
        return self.Wbuf[:self.R, :self.C]

    @property
    def mW(self) -> torch.Tensor:
        return self.mWbuf[:self.R, :self.C]

    def reserve(self, rows: int, cols: int) -> None:
        """Room for ``rows`` x ``cols``; reallocates with 25 % spare when it grows."""
        r_cap, c_cap = self.Wbuf.shape[:2]
        if rows <= r_cap and cols <= c_cap:
            return
        r_new = r_cap if rows <= r_cap else rows + rows // 4
        c_new = c_cap if cols <= c_cap else cols + cols // 4
        # uninitialised: add_rows writes every entry (weight and mask) before it becomes visible
        W = torch.empty(r_new, c_new, self.T, dtype=self.Wbuf.dtype, device=self.Wbuf.device)
        M = torch.empty(r_new, c_new, self.T, dtype=torch.bool, device=self.Wbuf.device)
        W[:self.R, :self.C] = self.W
        M[:self.R, :self.C] = self.mW
        self.Wbuf, self.mWbuf = W, M


class RandomSource:
    """Layers drawn from (seed, layer name) with grid addressing, growable by rows and columns."""

    def __init__(self, seed: int, device, prefix: str = "linears"):
        self.seed, self.device, self.prefix = seed, device, prefix
        self.layers: list[SourceLayer] = []
        self.readers: dict[int, list[int]] = {}  # layer -> layers that read its output (gain columns when it grows)
        self.grown = 0  # neurons added because an instance failed

    def add_layer(self, rows: int, cols: int, w_scale: float, b_scale: float, act: str | None, taps: int = 1,
                  geo: dict | None = None, post: list | None = None, centre: int = 0,
                  reads: int | None = None, init: str = "uniform") -> SourceLayer:
        """A new layer reading layer ``reads`` (default: the last one; -1: the network input)."""
        k = len(self.layers)
        reads = k - 1 if reads is None else reads
        self.readers.setdefault(reads, []).append(k)
        # a third spare in both dimensions, uninitialised: growth then rarely reallocates (the demo's
        # 0.8 GB product layer was copied twice, ~1 s), and on the CPU untouched pages cost no memory
        # (an accelerator's allocator would hold them: no spare there)
        spare = (rows // 3, cols // 3) if torch.device(self.device).type == "cpu" else (0, 0)
        cap = (rows + spare[0], cols + spare[1], taps)
        L = SourceLayer(k, float(w_scale), float(b_scale), act,
                   Wbuf=torch.empty(cap, device=self.device), b=torch.empty(0, device=self.device),
                   mWbuf=torch.empty(cap, dtype=torch.bool, device=self.device),
                   mb=torch.zeros(0, dtype=torch.bool, device=self.device), R=0, C=cols, prefix=self.prefix, geo=geo,
                   post=list(post or []), centre=centre, input_layer=None if reads == k - 1 else reads, init=init)
        self.layers.append(L)
        self.add_rows(L, rows)
        return L

    def add_rows(self, L: SourceLayer, n: int) -> list[int]:
        r0 = L.W.shape[0]
        if n <= 0:
            return []
        # grid addressing: entry (row, col, tap) at (row, col * taps + tap), the layout of a conv weight
        T = L.T
        w = _grid(L, self.seed, (n, L.W.shape[1] * T), self.device, row_offset=r0).view(n, -1, T)
        b = rng.uniform(self.seed, rng.stream_id(L.name + ".bias"), (n,), -L.b_scale, L.b_scale, self.device, offset=r0)
        L.reserve(r0 + n, L.C)
        L.Wbuf[r0:r0 + n, :L.C] = w
        L.mWbuf[r0:r0 + n, :L.C] = False
        L.R = r0 + n
        L.b = torch.cat([L.b, b])
        L.mb = torch.cat([L.mb, torch.zeros(n, dtype=torch.bool, device=self.device)])
        for nxt in (self.layers[i] for i in self.readers.get(L.index, [])):  # its readers gain input columns
            c0, T2 = nxt.W.shape[1], nxt.T
            w2 = _grid(nxt, self.seed, (nxt.W.shape[0], n * T2), self.device, col_offset=c0 * T2).view(-1, n, T2)
            nxt.reserve(nxt.R, c0 + n)
            nxt.Wbuf[:nxt.R, c0:c0 + n] = w2
            nxt.mWbuf[:nxt.R, c0:c0 + n] = False
            nxt.C = c0 + n
        return list(range(r0, r0 + n))

    def widths(self) -> list[int]:
        return [self.layers[0].W.shape[1]] + [L.W.shape[0] for L in self.layers]


def _grid(L: SourceLayer, seed: int, shape, device, row_offset: int = 0, col_offset: int = 0) -> torch.Tensor:
    """A block of L's weights at their grid addresses, from L's distribution."""
    stream = rng.stream_id(L.name + ".weight")
    if L.init == "normal":
        return rng.normal_grid(seed, stream, shape, 0.0, L.w_scale, device, row_offset, col_offset)
    return rng.uniform_grid(seed, stream, shape, -L.w_scale, L.w_scale, device, row_offset, col_offset)


def init_spec(L: SourceLayer) -> dict:
    """The ticket file's record of how L's weights are drawn."""
    if L.init == "normal":
        return {"dist": "normal", "mean": 0.0, "std": L.w_scale, "address": "grid"}
    return {"dist": "uniform", "low": -L.w_scale, "high": L.w_scale, "address": "grid"}


def layer_shape(t, l: int) -> dict:
    """Source layer geometry of target layer l: taps, op description, post ops, the tap that carries biases."""
    if not t.geometry:
        return {"taps": 1, "geo": {"op": "linear"}, "post": [], "centre": 0}
    g = t.geometry[l]
    kh, kw = g["kernel"]
    if g["kind"] == "conv":
        ph, pw = g["padding"]
        op = {"op": "conv", "kernel": [kh, kw], "stride": g["stride"], "padding": [ph, pw]}
        centre = ph * kw + pw  # tap (ph, pw) reads input (y * stride) at every output y: always inside
    else:
        op, centre = {"op": "linear"}, 0
    post = [o for o in g.get("post", []) if o["op"] != "flatten"]  # the source's Linear flattens its input
    return {"taps": kh * kw, "geo": op, "post": post, "centre": centre}


def spatial_input(t, l: int) -> bool:
    """Target layer l reads a feature map (its univariate layer is a 1x1 conv)."""
    return bool(t.geometry) and len(t.geometry[l]["in_shape"]) == 3
