"""Greedy forward selection (Ye et al. 2020) of the neurons of trained fully connected layers.

A hidden layer with N neurons is read in mean-field form: its contribution to the next layer's
pre-activation is ``(1/N) * sum_r N * W_next[:, r] * h_r(x)``. A subnetwork is a multiset S of
neurons, ``z_S = (1/|S|) * sum_{r in S} N * W_next[:, r] * h_r``. Starting from S = {} the
neuron whose addition gives the lowest loss of the whole network is added, again and again,
with replacement (Frank-Wolfe with step 1/k, or with a line search over the step, which
makes the loss non-increasing); every candidate is scored in one batched pass
through the rest of the network. Selection stops at a budget of distinct neurons (then keeps
re-weighting the chosen ones up to ``steps_per_neuron * budget`` picks) or once the loss is
within ``tol`` of the dense loss.

The result is **physically smaller**: the selected rows of the layer, and the next layer's
columns scaled by ``N * count_r / |S|`` (repeated picks merged into weights). Deep chains are
pruned layer by layer from the input, with optional fine-tuning in between.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .. import rng
from ..data import DataSplits, Split
from ..target import UnsupportedTarget, read_mlp, read_net
from ..training import TrainConfig, train


@dataclass
class GFSConfig:
    fraction: float = field(default=0.5, metadata={
        "help": "fraction of each hidden layer's neurons kept", "flag": "density", "aliases": ["--fraction"],
        "check": "density"})
    neurons: int = field(default=0, metadata={"help": "neurons kept per hidden layer (overrides --density)",
                                                 "check": "nonneg"})
    tol: float = field(default=0.0, metadata={
        "help": "stop a layer early once its loss <= dense loss + tol (0: off)", "check": "nonneg"})
    steps_per_neuron: float = field(default=2.0, metadata={
        "help": "picks allowed per budgeted neuron (re-weighting)", "check": "positive"})
    pool: int = field(default=0, metadata={"help": "random candidate pool per step (0: all neurons)",
                                           "check": "nonneg"})
    batch: int = field(default=4096, metadata={
        "help": "examples the selection is made on (0: the whole training set)", "flag": "selection-examples",
        "aliases": ["--batch"], "check": "nonneg"})
    finetune: str = field(default="0it", metadata={"help": "fine-tuning between layers, e.g. 500it",
                                                          "check": "steps"})
    step: str = field(default="1/k", metadata={"help": "1/k (Ye et al.: uniform average of the picks), line "
                                                       "(Frank-Wolfe line search on a grid; loss never increases) or "
                                                       "add (Ye et al.'s deep-net variant: grow a plain mask, no "
                                                       "replacement, no re-weighting)",
                                               "choices": ["1/k", "line", "add"]})
    seed: int = field(default=0, metadata={"help": "seed of the selection batch and candidate pools"})


def as_sequential(model: nn.Module, input_shape=None) -> nn.Sequential:
    """The model's chain as ``Flatten, Linear, act, ..., Linear`` (read with torch.fx), or, for a
    convolutional chain (``input_shape=(C, H, W)``, or a zoo model that carries it), as
    ``Conv2d, act, [pooling], ..., Conv2d (the head: a kernel covering the map), Flatten, Linear...``
    with BatchNorm folded into the convs: :meth:`lotterylab.graph.LayerGraph.to_sequential`."""
    shape = input_shape or (getattr(model, "lotterylab_arch", None) or {}).get("input_shape")
    device = next(model.parameters()).device
    if any(isinstance(m, nn.Conv2d) for m in model.modules()):
        if shape is None:
            raise UnsupportedTarget("a convolutional model needs input_shape=(C, H, W) for GFS over its filters")
        t = read_net(model, tuple(shape))
    else:
        t = read_mlp(model)
    return t.to_sequential().to(device)


def _linears(seq: nn.Sequential) -> list[int]:
    """Positions of the weight layers (Linear or Conv2d) of a chain."""
    return [i for i, m in enumerate(seq) if isinstance(m, (nn.Linear, nn.Conv2d))]


def _width(m: nn.Module) -> int:
    return m.out_channels if isinstance(m, nn.Conv2d) else m.out_features


@dataclass
class LayerSelection:
    layer: int                  # index of the hidden Linear among the chain's Linears
    width: int                  # N, neurons before
    picks: list[int]            # the greedy sequence (with repeats)
    losses: list[float]         # loss on the selection batch after each pick
    distinct: list[int]         # distinct neurons after each pick
    dense_loss: float
    seconds: float = 0.0
    weights: dict[int, float] | None = None  # mixing weight of each neuron (sums to 1); None: count / |S|

    @property
    def selected(self) -> list[int]:
        return sorted(set(self.picks))

    def mixing(self) -> dict[int, float]:
        """Weight of each selected neuron in the average (count / |S| for step 1/k)."""
        if self.weights is not None:
            return self.weights
        out: dict[int, float] = {}
        for r in self.picks:
            out[r] = out.get(r, 0.0) + 1.0 / len(self.picks)
        return out


def _rest(seq: nn.Sequential, start: int):
    """Function from the pre-activation (without bias) of Linear ``seq[start]`` to the logits."""
    bias = seq[start].bias

    def f(z):
        h = z + (bias.view(-1, 1, 1) if z.dim() == 4 else bias)
        for m in list(seq)[start + 1:]:
            h = m(h)
        return h
    return f


@torch.no_grad()
def select_layer(seq: nn.Sequential, k: int, x: torch.Tensor, y: torch.Tensor, budget: int, cfg: GFSConfig,
                 chunk_elems: int = 2 ** 25) -> LayerSelection:
    """Greedy selection among the neurons of the k-th Linear (a hidden layer) of ``seq``."""
    lin_idx = _linears(seq)
    if k >= len(lin_idx) - 1:
        raise ValueError(f"layer {k} is the output layer; GFS selects neurons of hidden layers 0..{len(lin_idx) - 2}")
    t0 = time.perf_counter()
    i_next = lin_idx[k + 1]
    h = x
    for m in list(seq)[:i_next]:
        h = m(h)
    H = h  # [B, N] (or [B, N, h, w]: filters) output of the layer and anything before the next weight layer
    nxt = seq[i_next]
    W = nxt.weight  # [M, N] or [M, N, kh, kw]
    n_neurons = H.shape[1]
    rest = _rest(seq, i_next)
    dense_loss = float(F.cross_entropy(seq(x), y))
    conv = isinstance(nxt, nn.Conv2d)

    def contrib_of(c: torch.Tensor) -> torch.Tensor:
        """Each candidate's own term of the next pre-activation: [B, P, M] or [B, P, M, h', w']."""
        if not conv:
            return H[:, c].unsqueeze(2) * W[:, c].T.unsqueeze(0)
        P = len(c)  # one group per candidate: filter r feeds the next layer's in-channel r only
        w = W[:, c].transpose(0, 1).reshape(P * W.shape[0], 1, *W.shape[2:])
        out = F.conv2d(H[:, c], w, None, nxt.stride, nxt.padding, groups=P)
        return out.view(out.shape[0], P, W.shape[0], *out.shape[2:])

    B = H.shape[0]
    z = torch.zeros_like(contrib_of(torch.zeros(1, dtype=torch.long, device=H.device))[:, 0])
    M = z[0].numel()  # elements of one example's next pre-activation
    picks, losses, distinct = [], [], []
    chosen: set[int] = set()
    mix: dict[int, float] = {}
    current = math.inf
    add = cfg.step == "add"
    max_steps = budget if add else max(budget, math.ceil(cfg.steps_per_neuron * budget))
    for step in range(1, max_steps + 1):
        # candidates: every neuron, or (budget reached) the chosen ones; ``pool`` samples from those.
        # "add" never re-picks: the unchosen neurons only
        if add:
            free = torch.ones(n_neurons, dtype=torch.bool, device=H.device)
            free[list(chosen)] = False
            cand = free.nonzero().flatten()
        else:
            cand = (torch.arange(n_neurons, device=H.device) if len(chosen) < budget else
                    torch.tensor(sorted(chosen), dtype=torch.long, device=H.device))
        if cfg.pool and cfg.pool < len(cand):
            keys = rng.uniform(cfg.seed, rng.stream_id(f"gfs.pool.{k}"), (len(cand),), 0.0, 1.0, H.device,
                               offset=step * n_neurons)
            cand = cand[torch.sort(keys, stable=True).indices[:cfg.pool]]
        # step sizes tried: 1/k, or (line search) a grid in (0, 1]; the first pick always takes 1
        # ("add": the plain sum z + W h_r, written as g = 1 on contrib / N below)
        gammas = [1.0 / step] if cfg.step in ("1/k", "add") or step == 1 else sorted({1.0 / step, *(2.0 ** -j for j in range(8))})
        best_loss, best_r, best_g = math.inf, -1, 0.0
        per = max(1, chunk_elems // max(B * M * len(gammas), 1))
        for s in range(0, len(cand), per):
            c = cand[s:s + per]
            contrib = n_neurons * contrib_of(c)  # [B, P, M, ...]
            for g in gammas:
                zc = (z.unsqueeze(1) + contrib / n_neurons if add else
                      (1.0 - g) * z.unsqueeze(1) + g * contrib)
                logits = rest(zc.reshape(B * len(c), *z.shape[1:])).reshape(B, len(c), -1)
                loss = F.cross_entropy(logits.permute(0, 2, 1), y.unsqueeze(1).expand(B, len(c)),
                                       reduction="none").mean(0)
                j = int(torch.argmin(loss))
                if float(loss[j]) < best_loss:
                    best_loss, best_r, best_g = float(loss[j]), int(c[j]), g
        if cfg.step == "line" and best_loss >= current:
            break  # no neuron and step lowers the loss: Frank-Wolfe with line search has converged
        own = contrib_of(torch.tensor([best_r], device=H.device))[:, 0]
        if add:
            z = z + own
            mix[best_r] = 1.0 / n_neurons  # the next layer's column kept as it is
        else:
            z = (1.0 - best_g) * z + best_g * n_neurons * own
            mix = {r: (1.0 - best_g) * a for r, a in mix.items()}
            mix[best_r] = mix.get(best_r, 0.0) + best_g
        current = best_loss
        picks.append(best_r)
        chosen.add(best_r)
        losses.append(best_loss)
        distinct.append(len(chosen))
        if cfg.tol > 0 and best_loss <= dense_loss + cfg.tol:
            break
    return LayerSelection(k, n_neurons, picks, losses, distinct, dense_loss, time.perf_counter() - t0,
                          weights=mix if cfg.step in ("line", "add") else None)


def shrink(seq: nn.Sequential, sel: LayerSelection) -> nn.Sequential:
    """The physically smaller chain: selected rows of the layer, merged columns of the next."""
    lin_idx = _linears(seq)
    i_layer, i_next = lin_idx[sel.layer], lin_idx[sel.layer + 1]
    out = copy.deepcopy(seq)
    idx = torch.tensor(sel.selected, dtype=torch.long, device=seq[i_layer].weight.device)
    mix = sel.mixing()
    scale = torch.tensor([sel.width * mix[r] for r in sel.selected],
                         dtype=seq[i_next].weight.dtype, device=idx.device)
    old, nxt = seq[i_layer], seq[i_next]
    if isinstance(old, nn.Conv2d):  # filters: the kept output channels, and those input channels of the next conv
        new = nn.Conv2d(old.in_channels, len(idx), old.kernel_size, old.stride, old.padding,
                        bias=old.bias is not None).to(idx.device)
        new_next = nn.Conv2d(len(idx), nxt.out_channels, nxt.kernel_size, nxt.stride, nxt.padding,
                             bias=nxt.bias is not None).to(idx.device)
        scale = scale.view(1, -1, 1, 1)
    else:
        new = nn.Linear(old.in_features, len(idx), bias=old.bias is not None).to(idx.device)
        new_next = nn.Linear(len(idx), nxt.out_features, bias=nxt.bias is not None).to(idx.device)
    with torch.no_grad():
        new.weight.copy_(old.weight[idx])
        if old.bias is not None:
            new.bias.copy_(old.bias[idx])
        new_next.weight.copy_(nxt.weight[:, idx] * scale)
        if nxt.bias is not None:
            new_next.bias.copy_(nxt.bias)
    out[i_layer], out[i_next] = new, new_next
    return out


def selection_batch(split: Split, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    if n <= 0 or n >= len(split):
        return split.x, split.y
    batch = split.take(n, seed, "gfs.batch")
    return batch.x, batch.y


def gfs(model: nn.Module, data: DataSplits, cfg: GFSConfig | None = None, layers=None,
        finetune_cfg: TrainConfig | None = None, progress: bool = False,
        input_shape=None) -> tuple[nn.Sequential, dict]:
    """Prune the hidden layers of a trained chain by greedy forward selection: neurons of Linear
    layers, filters (output channels) of Conv2d layers (``input_shape`` or a zoo model's own).

    Returns the physically smaller ``nn.Sequential`` and the selection record (per layer: picks,
    loss after each pick, distinct neurons, timings). ``layers``: hidden-layer indices (default all).
    """
    cfg = cfg or GFSConfig()
    try:
        seq = as_sequential(model, input_shape or data.input_shape).eval()
    except UnsupportedTarget as e:
        raise UnsupportedTarget(f"GFS prunes chains of nn.Linear / nn.Conv2d layers: {e}") from None
    n_hidden = len(_linears(seq)) - 1
    layers = list(range(n_hidden)) if layers is None else list(layers)
    x, y = selection_batch(data.train, cfg.batch, cfg.seed)
    record = {"config": vars(cfg), "layers": []}
    for k in layers:
        width = _width(seq[_linears(seq)[k]])
        budget = cfg.neurons if cfg.neurons else max(1, round(cfg.fraction * width))
        if not 0 < budget <= width:
            raise ValueError(f"neuron budget {budget} for a layer of {width} neurons; use 1..{width}")
        sel = select_layer(seq, k, x, y, budget, cfg)
        seq = shrink(seq, sel)
        record["layers"].append({"layer": k, "width_before": width, "kept": len(sel.selected), "picks": sel.picks,
                                 "losses": sel.losses, "distinct": sel.distinct, "dense_loss": sel.dense_loss,
                                 "seconds": sel.seconds})
        ft = finetune_cfg or TrainConfig(budget=cfg.finetune)
        if finetune_cfg is not None or cfg.finetune not in ("0it", "0ep"):
            seq.train()
            train(seq, data, ft, progress=progress)
            seq.eval()
    first = seq[_linears(seq)[0]]
    record["widths"] = [first.in_channels if isinstance(first, nn.Conv2d) else first.in_features] + \
        [_width(seq[i]) for i in _linears(seq)]
    return seq, record


def neuron_baseline(model: nn.Module, kind: str, fraction: float, seed: int = 0, input_shape=None) -> nn.Sequential:
    """Prune the same number of neurons (filters) per hidden layer by ``magnitude`` (|incoming| *
    |outgoing| norms) or at ``random``, without re-weighting: the comparison rows for GFS."""
    seq = as_sequential(model, input_shape).eval()
    lin_idx = _linears(seq)
    for k in range(len(lin_idx) - 1):
        lin, nxt = seq[lin_idx[k]], seq[lin_idx[k + 1]]
        n = _width(lin)
        budget = max(1, round(fraction * n))
        if kind == "magnitude":
            score = lin.weight.detach().flatten(1).norm(dim=1) * nxt.weight.detach().transpose(0, 1).flatten(1).norm(dim=1)
        elif kind == "random":
            score = rng.uniform(seed, rng.stream_id(f"neuron.random.{k}"), (n,), 0.0, 1.0, lin.weight.device)
        else:
            raise ValueError(f"unknown neuron pruning {kind!r}; use magnitude or random")
        keep = torch.sort(torch.sort(score, descending=True, stable=True).indices[:budget]).values.tolist()
        # mixing weight 1/N each: the next layer's columns are kept as they are (plain removal)
        seq = shrink(seq, LayerSelection(k, n, keep, [], [], math.nan, weights={r: 1.0 / n for r in keep}))
    return seq


@torch.no_grad()
def forward_time(model: nn.Module, x: torch.Tensor, repeats: int = 20) -> float:
    """Median seconds of one forward pass of ``x`` (the caller sets the thread count)."""
    import statistics

    model.eval()
    model(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
