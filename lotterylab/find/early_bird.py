"""Early-bird tickets (You et al. 2020): draw the ticket once the pruning mask stops changing.

:class:`EarlyBird` is a training callback. At every check (each evaluation, or every ``every``
iterations) it computes the mask the current
weights would give at the requested density and the normalised Hamming distance to the masks
of the previous ``window - 1`` checks; when all of them are below ``threshold`` the ticket is
drawn (and training stops if ``stop=True``).

* ``kind="channel"``: network slimming masks from the BatchNorm scaling factors |gamma| (one
  global ranking); the callback adds the L1 subgradient ``l1 * sign(gamma)`` to their gradients,
  as the paper trains with. The mask prunes whole channels: the conv filter, its BN weight and
  bias.
* ``kind="magnitude"``: unstructured global magnitude masks on Linear/Conv weights.
"""

from __future__ import annotations

import torch
from torch import nn

from ..masks import Mask
from ..training import Callback
from .scores import mask_from_scores, prunable


def bn_channels(model: nn.Module) -> list[tuple[str, str]]:
    """(conv name, BN name) pairs: each BatchNorm with the conv whose output it normalises
    (the closest preceding conv in module order with matching channel count)."""
    pairs, last_conv = [], None
    for name, mod in model.named_modules():
        if isinstance(mod, nn.modules.conv._ConvNd):
            last_conv = (name, mod)
        elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
            if last_conv is None or last_conv[1].out_channels != mod.num_features:
                raise ValueError(f"BatchNorm {name!r} follows no conv with {mod.num_features} output channels; "
                                 "channel masks need conv -> BN pairs")
            pairs.append((last_conv[0], name))
            last_conv = None
    if not pairs:
        raise ValueError("the model has no BatchNorm layers: use kind='magnitude' (channel masks read BN scales)")
    return pairs


def channel_keep(model: nn.Module, density: float, pairs, scope: str = "global") -> dict[str, torch.Tensor]:
    """Per-BN bool vector: channels whose |gamma| is among the top ``density`` of all channels
    (``global``, network slimming's rule) or of each layer's channels (``layerwise``)."""
    mods = dict(model.named_modules())
    scores = {bn: mods[bn].weight.detach().abs() for _, bn in pairs}
    return dict(mask_from_scores(scores, density, scope))


def channel_mask(model: nn.Module, keep: dict[str, torch.Tensor], pairs) -> Mask:
    """Parameter mask of a channel selection: filter rows, BN weight and bias (and conv bias)."""
    mods = dict(model.named_modules())
    out = Mask()
    for conv, bn in pairs:
        k = keep[bn]
        w = mods[conv].weight
        out[f"{conv}.weight"] = k.view(-1, *([1] * (w.dim() - 1))).expand_as(w).clone()
        if mods[conv].bias is not None:
            out[f"{conv}.bias"] = k.clone()
        out[f"{bn}.weight"] = k.clone()
        out[f"{bn}.bias"] = k.clone()
    return out


def _flat(m) -> torch.Tensor:
    return torch.cat([v.reshape(-1) for v in m.values()]) if isinstance(m, dict) else m


def hamming(a, b) -> float:
    """Normalised Hamming distance between two masks (fraction of entries that differ)."""
    fa, fb = _flat(a), _flat(b)
    return float((fa != fb).float().mean())


class EarlyBird(Callback):
    def __init__(self, model: nn.Module, density: float = 0.5, kind: str = "channel", window: int = 5,
                 threshold: float = 0.1, l1: float = 1e-4, stop: bool = True, names=None, every: int = 0,
                 scope: str = "global"):
        if kind not in ("channel", "magnitude"):
            raise ValueError(f"unknown early-bird mask kind {kind!r}; use channel or magnitude")
        if not 0.0 < density < 1.0:
            raise ValueError(f"density must be in (0, 1), got {density}")
        if window < 2:
            raise ValueError("window must be >= 2 (the current mask and at least one earlier one)")
        self.model, self.density, self.kind = model, density, kind
        self.window, self.threshold, self.l1, self.stop = window, threshold, l1, stop
        self.every = every  # check every this many iterations; 0: at every evaluation of the loop
        if scope not in ("global", "layerwise"):
            raise ValueError(f"unknown scope {scope!r}; use global or layerwise")
        self.scope = scope  # global ranking can empty a layer (seen on Conv-2): layerwise keeps each
        self.pairs = bn_channels(model) if kind == "channel" else None
        self.names = prunable(model, names) if kind == "magnitude" else None
        mods = dict(model.named_modules())
        self.gammas = [mods[bn].weight for _, bn in self.pairs] if self.pairs else []
        self.checks: list[dict] = []   # iteration, epoch, distance to previous checks
        self.masks: list[torch.Tensor] = []  # flat bool masks, one per check
        self.drawn: dict | None = None

    def on_backward_end(self, loop) -> None:
        if self.kind == "channel" and self.l1 > 0:  # network slimming's sparsity penalty on BN scales
            for g in self.gammas:
                if g.grad is not None:
                    g.grad.add_(torch.sign(g.detach()), alpha=self.l1)

    def selection(self):
        if self.kind == "channel":
            return channel_keep(self.model, self.density, self.pairs, self.scope)
        params = dict(self.model.named_parameters())
        return dict(mask_from_scores({n: params[n].detach().abs() for n in self.names}, self.density, self.scope))

    def mask(self) -> Mask:
        """The parameter mask of the current weights (channel masks expanded to filters)."""
        sel = self.selection()
        return channel_mask(self.model, sel, self.pairs) if self.kind == "channel" else Mask(sel)

    def on_step_end(self, loop) -> None:
        if self.every and loop.iteration % self.every == 0:
            self.check(loop, {"epoch": loop.iteration / loop.per_epoch})

    def on_eval(self, loop, record: dict) -> None:
        if not self.every:
            self.check(loop, record)

    def check(self, loop, record: dict) -> None:
        flat = _flat(self.selection()).cpu()
        recent = self.masks[-(self.window - 1):]
        dists = [hamming(flat, m) for m in recent]
        self.masks.append(flat)
        self.checks.append({"iteration": loop.iteration, "epoch": record.get("epoch"), "distances": dists})
        if self.drawn is None and len(dists) == self.window - 1 and max(dists) < self.threshold:
            self.drawn = {"iteration": loop.iteration, "epoch": record.get("epoch"), "fraction_of_budget":
                          loop.iteration / loop.total, "max_distance": max(dists), "mask": self.mask()}
            if self.stop:
                loop.stop = True

    # --- resume: the detector's history is checkpointed with the run --------------------------
    def state(self):
        from ..masks import pack_bits

        tensors = {f"check.{j}": pack_bits(m) for j, m in enumerate(self.masks)}
        drawn = None
        if self.drawn is not None:
            drawn = {k: v for k, v in self.drawn.items() if k != "mask"}
            drawn["shapes"] = {n: list(m.shape) for n, m in self.drawn["mask"].items()}
            tensors.update({f"drawn.{n}": pack_bits(m) for n, m in self.drawn["mask"].items()})
        lengths = [int(m.numel()) for m in self.masks]
        return {"checks": self.checks, "lengths": lengths, "drawn": drawn}, tensors

    def load_state(self, meta: dict, tensors: dict, path) -> None:
        from ..io import FileFormatError
        from ..masks import unpack_bits

        try:
            self.checks = list(meta["checks"])
            self.masks = [unpack_bits(tensors[f"check.{j}"], [n]) for j, n in enumerate(meta["lengths"])]
            d = meta["drawn"]
            self.drawn = None
            if d is not None:
                mask = Mask({n: unpack_bits(tensors[f"drawn.{n}"], s) for n, s in d["shapes"].items()})
                self.drawn = {**{k: v for k, v in d.items() if k != "shapes"}, "mask": mask}
        except (KeyError, TypeError, ValueError) as e:
            raise FileFormatError(f"{path}: early-bird detector state is incomplete ({type(e).__name__}: {e}); "
                                  f"the file is corrupt") from None

    def distance_matrix(self) -> torch.Tensor:
        n = len(self.masks)
        d = torch.zeros(n, n)
        for i in range(n):
            for j in range(i):
                d[i, j] = d[j, i] = hamming(self.masks[i], self.masks[j])
        return d


def compact_channels(model: nn.Module, mask: Mask) -> nn.Module:
    """The physically smaller network of a channel mask: a ConvNet (conv2/4/6, vgg11/16, ``convnet``)
    with only the kept filters, their BatchNorm entries and the head's matching inputs.

    Exact for activations with phi(0) = 0 (a removed channel is then exactly zero after BN and its
    activation, so removing it changes nothing); the result is a zoo ``convnet`` model whose
    ``lotterylab_arch`` rebuilds it. Residual networks are refused (a skip must keep matching channels).
    """
    from .. import models

    arch = getattr(model, "lotterylab_arch", None)
    if not isinstance(model, models.ConvNet) or arch is None:
        raise ValueError("compact_channels builds ConvNet chains (conv2/4/6, vgg11/16, convnet); residual or other "
                         "models keep their channels (use the mask)")
    act = models.make_activation(arch["activation"])
    if float(act(torch.zeros(1))) != 0.0:
        raise ValueError(f"activation {arch['activation']} has phi(0) != 0: a removed channel still sends a "
                         f"constant, so dropping it would change the network")
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    bns = [m for m in model.features if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    names = {m: n for n, m in model.named_modules()}
    keeps = []
    for conv in convs:
        w = mask.get(f"{names[conv]}.weight")
        keeps.append(torch.ones(conv.out_channels, dtype=torch.bool) if w is None else w.reshape(w.shape[0], -1).any(1).cpu())
    plan, it = [], iter(keeps)
    for item in model.plan:
        plan.append(item if item == "M" else int(next(it).sum()))
    if min(p for p in plan if p != "M") < 1:
        raise ValueError("the mask removes every channel of a layer; the network would be cut")
    kwargs = {"plan": plan, "head": model.head, **model.conv_args}
    small = models.create("convnet", arch["activation"], arch["input_shape"], arch["num_classes"], seed=0, **kwargs)
    s_convs = [m for m in small.features if isinstance(m, nn.Conv2d)]
    s_bns = [m for m in small.features if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    keep_in = torch.ones(convs[0].in_channels, dtype=torch.bool)
    with torch.no_grad():
        for k, (conv, new, keep) in enumerate(zip(convs, s_convs, keeps)):
            new.weight.copy_(conv.weight[keep][:, keep_in])
            if conv.bias is not None:
                new.bias.copy_(conv.bias[keep])
            if bns:
                for t in ("weight", "bias", "running_mean", "running_var"):
                    getattr(s_bns[k], t).copy_(getattr(bns[k], t)[keep])
                s_bns[k].num_batches_tracked.copy_(bns[k].num_batches_tracked)
            keep_in = keep
        lin = [m for m in model.classifier if isinstance(m, nn.Linear)]
        s_lin = [m for m in small.classifier if isinstance(m, nn.Linear)]
        spatial = lin[0].in_features // convs[-1].out_channels  # flattened C x H x W, channel-major
        cols = keep_in.repeat_interleave(spatial)
        for k, (a, b) in enumerate(zip(lin, s_lin)):
            b.weight.copy_(a.weight[:, cols] if k == 0 else a.weight)
            b.bias.copy_(a.bias)
    return small.to(next(model.parameters()).device).train(model.training)
