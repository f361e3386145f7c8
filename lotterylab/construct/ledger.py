"""What every constructed row realises: the per-row record the certificate and the refinements read."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch

_F64 = torch.float64


@dataclass
class Ledger:
    """Per-row record of one source layer that realises a target layer (a copy or assembling layer).

    Tensors grow with the layer's rows (:meth:`fit`); ``n_in`` target input units, ``T`` taps.
    """

    tl: int                  # the target layer these rows realise
    product: bool            # rows assemble through a univariate layer (candidates are products v * a)
    neuron: torch.Tensor     # [R] target neuron each row realises (-1: a constant or unused row)
    p: torch.Tensor          # [R, n_in, T] realised sum per (row, unit, tap); sign trick: the a > 0 side
    q: torch.Tensor          # [R, n_in, T] sign trick: the a < 0 side's sum
    l1v: torch.Tensor        # [R, n_in, T] l1 mass of the chosen subset (amplifies the error below)
    ok: torch.Tensor         # [R, n_in] every instance of the pair met its tolerance
    bias_err: torch.Tensor   # [R] |realised bias - the target's own bias|
    bias_ok: torch.Tensor    # [R] the bias instance met its tolerance
    bias_real: torch.Tensor  # [R] the realised bias
    shift: torch.Tensor      # [R, n_in, 2, T] compensation: shift of each side's subset-sum target
    mom: torch.Tensor        # [R, n_in, 2, T] moment matching: the realised higher-moment components
    stamp: torch.Tensor      # [R] when the row's selection (weights or bias) last changed (refinement caches)
    wstamp: torch.Tensor     # [R] when the row's weights last changed (stored pre-activations hold until then)
    bufs: dict = field(default_factory=dict, repr=False, compare=False)  # field -> its storage with spare rows

    @classmethod
    def empty(cls, n_in: int, taps: int, tl: int, product: bool) -> Ledger:
        def z(*shape, dtype=_F64):
            return torch.zeros(0, *shape, dtype=dtype)

        return cls(tl, product, torch.full((0,), -1, dtype=torch.long), z(n_in, taps), z(n_in, taps),
                   z(n_in, taps), z(n_in, dtype=torch.bool), z(), z(dtype=torch.bool), z(), z(n_in, 2, taps), z(n_in, 2, taps),
                   z(dtype=torch.long), z(dtype=torch.long))

    @property
    def n_in(self) -> int:
        return self.p.shape[1]

    def fit(self, rows: int) -> None:
        """Room for ``rows`` rows: new rows realise no neuron (-1) and hold zeros.

        Each field is a view of a buffer with 25 % spare rows, so growth rounds that add a few rows
        at a time do not copy the whole record each time (they did: ~1 s of the demo's construction).
        """
        bufs = self.bufs
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, torch.Tensor) or v.shape[0] >= rows:
                continue
            fill = -1 if f.name == "neuron" else 0
            buf = bufs.get(f.name)
            if buf is None or buf.shape[0] < rows:
                buf = torch.full((rows + rows // 4, *v.shape[1:]), fill, dtype=v.dtype)
                buf[:v.shape[0]] = v
                bufs[f.name] = buf
            setattr(self, f.name, buf[:rows])
