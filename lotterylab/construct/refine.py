"""Refinements on a data sample (the papers' mode only): bias correction and error compensation.

Both change only which candidates are kept, never a drawn value; the certificate still measures
every weight and bias against the target's own.

* **Bias correction.** Every pruned weight misses its target by up to eps_param, and in L+1 every
  copy carries its own error into the next layer; over real inputs these errors have a mean, which
  shifts each unit like a wrong bias. Solving the bias for "target bias - mean error over the
  sample" removes that shift (the bias correction of post-training quantisation, Nagel et al. 2019,
  arXiv:1906.04721).
* **Compensation.** The errors' spread remains: each row's pre-activation error is
  ``sum_f d_f z_f`` over its input features. Solving the inputs in order and shifting the targets of
  the inputs not yet solved by the least-squares best response to the errors already made (optimal
  brain surgeon / GPTQ, Frantar et al. 2022, arXiv:2210.17323: with ``H = E[z z^T]`` and ``U`` the
  upper Cholesky factor of ``H^-1``, errors ``d_B`` of a block move the later targets by
  ``d_B U_BB^-1 U_BR``) cancels the part of the error that correlated inputs can absorb.
"""

from __future__ import annotations

from collections import Counter

import torch
import torch.nn.functional as F

from .. import activations as acts_mod
from ..models import apply_op
from ..sparse_conv import conv2d_entries, csr_entries, pair, sparse_wins
from .source import SourceLayer, layer_shape


def linear_part(h: torch.Tensor, w3: torch.Tensor, geo: dict | None) -> torch.Tensor:
    """A layer's pre-activation (no bias) for inputs h [N, cols, ...] and weights [rows, cols, taps]."""
    if geo is not None and geo.get("op") == "conv":
        kh, kw = geo["kernel"]
        return F.conv2d(h, w3.reshape(w3.shape[0], w3.shape[1], kh, kw), None, geo["stride"], geo["padding"])
    return h.reshape(h.shape[0], -1) @ w3.reshape(w3.shape[0], -1).T


class BiasCorrection:
    """Realised and target outputs of every layer on the sample; the mean error of each row."""

    def __init__(self, e, sample: torch.Tensor):
        self.e, self.x = e, sample
        self.target_outputs = e.t.forward(sample)
        self._out_cache: dict[int, tuple] = {}  # layer -> (rows, their stamps, inputs' generations, output)
        self._gen: Counter = Counter()  # layer -> how often rows of its cached output changed
        self._store: dict[int, list] = {}  # source layer -> [(input generation, rows, their wstamps, pre-activation)]
        self._target_pre: dict[int, torch.Tensor] = {}
        self.max_shift: dict[int, float] = {}  # target layer -> largest |correction| of its rows

    def pre(self, C: SourceLayer, rows: torch.Tensor) -> torch.Tensor:
        """Realised pre-activation (without bias) of ``rows`` of C on the sample.

        Computed rows are stored until C's output is next computed (which takes them from here): a
        bias solve's shift and then the layer's output are one float64 pass, not two, and so are the
        rows growth appends one call at a time (the demo's two wide layers were computed twice:
        ~1.7 s). A stored row holds while its weights (``Ledger.wstamp``) and the output it reads
        (its generation) are unchanged.
        """
        e = self.e
        inf = e.ledgers[C.index]
        P = e.src.layers[C.reads]
        dep = P.reads if inf.product else P.index  # (a product layer reads through P's input)
        if dep >= 0:
            self.out(dep)  # up to date first: its generation says whether stored rows still hold
        gen = self._gen[dep]
        if len(rows) == 0:
            return self._pre(C, P, rows)
        chunks = [ch for ch in self._store.get(C.index, []) if ch[0] == gen]
        where = torch.full((C.R,), -1, dtype=torch.long)  # row -> chunk holding it, newest wins
        slot = torch.full((C.R,), -1, dtype=torch.long)  # ... and its place in that chunk
        for i, (_, r, w, _) in enumerate(chunks):
            fresh = (inf.wstamp[r] == w).nonzero().flatten()
            where[r[fresh]], slot[r[fresh]] = i, fresh
        src = where[rows]
        if len(chunks) and bool((src == src[0]).all()) and int(src[0]) >= 0:
            r = chunks[int(src[0])][1]
            if torch.equal(r, rows):  # (a bias retry, or the output of rows just shifted: no copy)
                return chunks[int(src[0])][3]
        need = (src < 0).nonzero().flatten()
        z_new = self._pre(C, P, rows[need]) if len(need) else None
        if z_new is not None:
            chunks.append((gen, rows[need].clone(), inf.wstamp[rows[need]].clone(), z_new))
        self._store[C.index] = chunks
        if len(need) == len(rows):
            return z_new
        ref = chunks[0][3]  # (some row was stored: chunks is not empty)
        z = torch.empty(ref.shape[0], len(rows), *ref.shape[2:], dtype=ref.dtype)
        if z_new is not None:
            z[:, need] = z_new
        for i, (_, _, _, zc) in enumerate(chunks[:-1] if z_new is not None else chunks):
            at = (src == i).nonzero().flatten()
            if len(at):
                z[:, at] = zc[:, slot[rows[at]]]
        return z

    def _pre(self, C: SourceLayer, P: SourceLayer, rows: torch.Tensor) -> torch.Tensor:
        e = self.e
        inf = e.ledgers[C.index]
        if inf.product:  # through the univariate layer: its effective weights (the first-layer scheme's)
            h = self.out(P.reads)
            return e.first.realised(h, inf.p[rows], inf.q[rows], lambda hh, w: linear_part(hh, w, C.geo))
        cols = P.copy_row_index()
        w = (C.W[rows][:, cols] * C.mW[rows][:, cols]).double().cpu()
        used = w.reshape(len(rows), len(cols), -1).ne(0).any(2).any(0)
        used[0] = True  # (rows that read nothing, e.g. constants: one zero column keeps the output's shape)
        geo = C.geo or {}
        if geo.get("op") == "conv" and sparse_wins(int(w.count_nonzero()), len(rows), int(used.sum()), w.shape[2],
                                                   pair(geo["stride"])):
            # wide L+1 layers keep ~5 % of their kernels, and growth re-solves a few rows at a time: the
            # kept entries alone (bias correction of the L+1 ResNet-20: most of its time was unfolding)
            kernel = pair(geo["kernel"])
            ip, c, ky, kx, val = csr_entries(w.view(len(rows), len(cols), *kernel))
            return conv2d_entries(self.out(P.index), ip, cols[c], ky, kx, val, kernel, pair(geo["padding"]))
        if 4 * int(used.sum()) < len(cols):
            # a few rows (growth) read a few of P's copies: a convolution over all of them would unfold the
            # whole input for each round (~1 GB at 32 MNIST maps of a wide L+1 layer); the others add 0
            cols, w = cols[used], w[:, used]
        return linear_part(self.out(P.index)[:, cols], w, C.geo)

    def out(self, k: int) -> torch.Tensor:
        """Realised output of source layer k's rows on the sample (-1: the sample).

        Cached per layer and kept up to date row by row: growth appends rows, and a re-solve stamps the
        rows it changes (``Ledger.stamp``), so only those rows are computed again; a full float64 pass
        per growth round made bias correction of the L+1 ResNet-20 take ~20 min. When rows that existed
        change, the layer's generation moves and every layer reading it is computed afresh."""
        if k < 0:
            return self.x
        e = self.e
        L, inf = e.src.layers[k], e.ledgers[k]
        deps = self._deps(k)
        for d in deps:  # bring the inputs up to date first: their generations say whether they changed
            self.out(d)
        gens = tuple(self._gen[d] for d in deps)
        hit = self._out_cache.get(k)
        if hit is not None and hit[2] == gens:
            r0 = hit[0]
            changed = (inf.stamp[:r0] != hit[1]).nonzero().flatten()
            if r0 == L.R and len(changed) == 0:
                return hit[3]
            rows = torch.cat([changed, torch.arange(r0, L.R)])
        else:
            changed, rows = None, torch.arange(L.R)
        z = self.pre(L, rows)
        z = z + inf.bias_real[rows].view(1, -1, *[1] * (z.dim() - 2))
        if L.add_from is not None:
            z = z + self.out(L.add_from)[:, rows]
        if L.act is not None:
            z = acts_mod.get(L.act).module()(z)
        for op in L.post:  # (channel-wise: pooling; a Linear reading a map flattens it itself)
            z = apply_op(op, z)
        if changed is not None:
            full = torch.empty(z.shape[0], L.R, *z.shape[2:], dtype=z.dtype)
            full[:, :hit[0]] = hit[3]
            full[:, rows] = z
            z = full
        if hit is not None and (changed is None or len(changed)):
            self._gen[k] += 1  # rows that readers may have used changed
        self._out_cache[k] = (L.R, inf.stamp[:L.R].clone(), gens, z)
        self._store.pop(k, None)  # (its rows are in the output now)
        return z

    def _deps(self, k: int) -> tuple[int, ...]:
        """The layers whose outputs layer k's output is computed from (its input, its skip)."""
        L = self.e.src.layers[k]
        src = self.e.src.layers[L.reads].reads if self.e.ledgers[k].product else L.reads
        return (src,) + ((L.add_from,) if L.add_from is not None else ())

    def shift(self, C: SourceLayer, rows: torch.Tensor) -> torch.Tensor:
        """Mean over the sample (and positions) of realised minus target pre-activation, per row; recorded."""
        e = self.e
        inf = e.ledgers[C.index]
        tl = inf.tl
        if tl not in self._target_pre:  # the target's pre-activation (no bias) of layer tl, once per layer
            src = e.t.input_of(tl)
            self._target_pre[tl] = linear_part(self.x if src < 0 else self.target_outputs[src], e.t.w3(tl),
                                               layer_shape(e.t, tl)["geo"])
        z_t = self._target_pre[tl]
        z = self.pre(C, rows)
        d = z - z_t[:, inf.neuron[rows]]
        shift = d.transpose(0, 1).reshape(len(rows), -1).mean(1)
        self.max_shift[tl] = max(self.max_shift.get(tl, 0.0), float(shift.abs().max()))
        return shift


def patches(x: torch.Tensor, geo: dict, limit: int, seed: int) -> torch.Tensor:
    """The rows of ``unfold(x)`` (one per (example, output position), as ``[N * L, C * kh * kw]``),
    or a seeded sample of ``limit`` of them, gathered without unfolding the rest (the full unfold
    of 500 MNIST maps at 16 channels x 2 sides is 0.9 GB of float64)."""
    (kh, kw), (sh, sw), (ph, pw) = geo["kernel"], geo["stride"], geo["padding"]
    N, Cin, H, W = x.shape
    Ho, Wo = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    total = N * Ho * Wo
    if total <= limit:
        Z = F.unfold(x, (kh, kw), padding=(ph, pw), stride=(sh, sw))
        return Z.transpose(1, 2).reshape(-1, Z.shape[1])
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(total, generator=g)[:limit]  # the same draw as over the unfolded rows
    n, pos = pick // (Ho * Wo), pick % (Ho * Wo)
    i0, j0 = (pos // Wo) * sh, (pos % Wo) * sw  # top-left corner in the padded map
    Hp, Wp = H + 2 * ph, W + 2 * pw
    pixels = F.pad(x, (pw, pw, ph, ph)).permute(0, 2, 3, 1).reshape(N * Hp * Wp, Cin)  # one row per pixel
    ki, kj = torch.arange(kh).view(1, -1, 1), torch.arange(kw).view(1, 1, -1)
    at = (n.view(-1, 1, 1) * Hp + i0.view(-1, 1, 1) + ki) * Wp + j0.view(-1, 1, 1) + kj  # [limit, kh, kw]
    Z = pixels.index_select(0, at.reshape(-1)).view(limit, kh, kw, Cin)
    return Z.permute(0, 3, 1, 2).reshape(limit, -1)  # columns (c, ki, kj) as unfold's


class Compensation:
    """GPTQ-style compensation: blocks of inputs in order, later targets shifted by the best response."""

    # at most this many (example, position) rows estimate a conv layer's H (seeded subsample); layers with
    # more effective weights per row than FEATURES (e.g. a Linear head over a whole feature map: an
    # H of 25k x 25k) are solved without compensation
    ROWS = 20_000
    FEATURES = 4096

    def __init__(self, e):
        self.e = e
        self._factor: dict[int, torch.Tensor | None] = {}  # source layer -> Cholesky factor of its inverse moment
        self.max_shift: dict[int, float] = {}  # target layer -> largest target shift
        self.block: dict[int, int] = {}

    def features(self, C: SourceLayer, P: SourceLayer) -> torch.Tensor | None:
        """[rows, n_in * S * T]: what each effective weight of C multiplies on the sample (conv layers:
        every (example, output position) is a row; its patch is the features), or None where the layer
        is left uncompensated (too many weights per row; conv layers where the family declines)."""
        e = self.e
        inf = e.ledgers[C.index]
        corr = e.correction
        if inf.product:
            parts = e.first.input_parts(corr.out(P.reads).double())
        else:  # copy layers: every copy of unit j carries about the target's h_j
            parts = [corr.target_outputs[e.t.input_of(inf.tl)].double()]
        S, N, n_in = len(parts), parts[0].shape[0], inf.n_in
        if n_in * S * C.T > self.FEATURES:
            return None
        if C.geo is not None and C.geo.get("op") == "conv":
            if not e.family.compensates_convolutions:
                return None
            x = torch.stack(parts, 2)  # [N, C, S, H, W]: unfold's channel index is (c * S + s), taps row-major
            Z = patches(x.reshape(N, -1, *x.shape[3:]), C.geo, self.ROWS, e.seed)
        elif parts[0].dim() > 2:  # a Linear layer reading a feature map: unit = channel, tap = position
            Z = torch.stack(parts, 2).reshape(N, -1)
        else:
            Z = torch.stack(parts, 2)  # [N, n_in, S]
            if inf.tl == 0 and len(e.const_inputs):
                Z[:, e.const_inputs] = 0.0
            Z = Z.reshape(N, -1)
        return Z if Z.shape[1] == n_in * S * C.T else None

    def factor(self, C: SourceLayer, P: SourceLayer) -> torch.Tensor | None:
        if C.index not in self._factor:
            Z = self.features(C, P)
            if Z is None:
                self._factor[C.index] = None
                return None
            H = Z.T @ Z / Z.shape[0]
            d = H.diagonal().clone()
            dead = d <= 1e-12 * float(d.max().clamp(min=1e-300))
            H[dead] = 0.0
            H[:, dead] = 0.0
            idx = torch.arange(len(d))
            H[idx, idx] = torch.where(dead, torch.ones_like(d), d + 0.01 * float(d[~dead].mean()))  # 1% damping
            Hi = torch.cholesky_inverse(torch.linalg.cholesky(H))
            self._factor[C.index] = torch.linalg.cholesky(Hi, upper=True)
        return self._factor[C.index]

    def solve(self, C: SourceLayer, P: SourceLayer, rows: torch.Tensor, units: torch.Tensor, U) -> None:
        e = self.e
        inf = e.ledgers[C.index]
        S = e.first.sides if inf.product else 1
        n_in, R, T = inf.n_in, len(rows), C.T
        # blocks of units between updates: about 48 solver calls per large layer (one unit per call costs
        # 16x the calls for a few % less error on LeNet), single units in small layers
        bs = max(1, min(16, n_in // 48))
        self.block[inf.tl] = bs
        w = e.t.w3(inf.tl)[inf.neuron[rows]]  # [R, n_in, T]
        # weights that are exactly 0 in the target (pruned, e.g. by IMP) stay 0 and absorb nothing (as in
        # SparseGPT): the ticket keeps the target's sparsity and those pairs need no solving
        live = w.ne(0)
        delta = torch.zeros(R, n_in, S, T, dtype=torch.float64)  # shift of each effective weight's target
        for b0 in range(0, len(units), bs):
            ub = units[b0:b0 + bs]
            D = delta[:, ub]  # [R, b, S, T]
            inf.shift[rows.view(-1, 1), ub.view(1, -1), :S] = e.first.side_targets(D) if S == 2 else D
            r, u = rows.repeat_interleave(len(ub)), ub.repeat(R)
            nz = live[:, ub].any(-1).reshape(-1)
            e.stats["zero_weights"] += int((~nz).sum())
            e.settle_pairs(C, P, r[nz], u[nz])
            p, q = inf.p[rows][:, ub], inf.q[rows][:, ub]  # [R, b, T]
            real = e.first.effective(p, q) if S == 2 else p.unsqueeze(2)
            d = (real - w[:, ub].unsqueeze(2) - D).reshape(R, -1)
            fB = (ub.view(-1, 1) * (S * T) + torch.arange(S * T)).reshape(-1)
            f0 = int(fB.max()) + 1
            if f0 < n_in * S * T:
                K = torch.linalg.solve_triangular(U[fB][:, fB], U[fB][:, f0:], upper=True)
                keep = live[:, f0 // (S * T):].unsqueeze(2).expand(-1, -1, S, -1).reshape(R, -1)
                delta.view(R, -1)[:, f0:] += (d @ K) * keep
        tl = inf.tl
        self.max_shift[tl] = max(self.max_shift.get(tl, 0.0), float(delta.abs().max()))
