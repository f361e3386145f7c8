"""What a construction starts from: the target read into layers, the domain box, the data sample.

Checked before any source is drawn; every refusal names the fix.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import nn

from .. import activations as acts_mod
from ..graph import LayerGraph
from ..target import read
from .config import ConstructionError


def domain_box(domain, n0: int, channels: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-input bounds (per channel for ``channels``: convolutional targets) of a box or data sample."""
    if isinstance(domain, torch.Tensor) and domain.dim() >= 2 and domain.shape[0] > 2:
        if channels and domain.dim() == 4:  # images [N, C, H, W]: bounds per channel
            flat = domain.transpose(0, 1).reshape(domain.shape[1], -1).T.double()
        else:
            flat = domain.reshape(domain.shape[0], -1).double()  # a data sample: bounds per input
        lo, hi = flat.min(0).values, flat.max(0).values
    else:
        try:
            lo_, hi_ = domain
        except (TypeError, ValueError):
            raise ConstructionError("domain must be (low, high) with scalars or per-input tensors, or a data sample "
                                    "tensor [N, ...]") from None
        lo = torch.as_tensor(lo_, dtype=torch.float64).reshape(-1).expand(n0).clone()
        hi = torch.as_tensor(hi_, dtype=torch.float64).reshape(-1).expand(n0).clone()
    if lo.numel() != n0 or hi.numel() != n0:
        raise ConstructionError(f"domain bounds have {lo.numel()} entries, the target has {n0} inputs")
    if not (torch.isfinite(lo).all() and torch.isfinite(hi).all()):
        raise ConstructionError("domain bounds must be finite")
    if (lo > hi).any():
        j = int((lo > hi).nonzero()[0])
        raise ConstructionError(f"domain has lower > upper at input {j} ({float(lo[j])} > {float(hi[j])})")
    return lo, hi


def calibration_sample(calibration, t: LayerGraph, eps_param) -> torch.Tensor | None:
    if calibration is None:
        return None
    if eps_param is None:
        raise ConstructionError("calibration= corrects biases in paper mode only (pass eps_param=); guarantee mode "
                                "certifies the worst case, which a mean correction does not improve")
    x = torch.as_tensor(calibration)
    n0 = t.widths[0] if not t.geometry else math.prod(t.input_shape)
    if x.dim() < 2 or x.shape[0] < 1 or x[0].numel() != n0:
        raise ConstructionError(f"calibration must be a sample [N, ...] of inputs with {n0} values each, got shape "
                                f"{tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ConstructionError("calibration sample has non-finite values")
    shape = tuple(t.input_shape) if t.geometry else (n0,)
    return x.reshape(x.shape[0], *shape).to("cpu", torch.float64)


def fold_constant_inputs(t: LayerGraph, lo: torch.Tensor, hi: torch.Tensor) -> tuple[LayerGraph, torch.Tensor]:
    """Inputs that take one value over the whole domain (e.g. MNIST's border pixels over the data's box)
    contribute a constant: fold ``w_ij * c_j`` into the first layer's bias and drop their weights, so no
    subset sum is spent on them. Exact on the domain. Fully connected targets only (a padded conv
    would see zeros, not the constant, at image borders)."""
    const = lo == hi
    if t.geometry or not bool(const.any()):
        return t, const.nonzero().flatten()[:0]
    W0 = t.weights[0].clone()
    b0 = t.biases[0] + W0[:, const] @ lo[const]
    W0[:, const] = 0.0
    return replace(t, weights=[W0] + list(t.weights[1:]), biases=[b0] + list(t.biases[1:])), const.nonzero().flatten()


def read_target(target: nn.Module, input_shape, domain) -> LayerGraph:
    """The target's graph; an image sample as the domain also gives the input shape."""
    own = (getattr(target, "lotterylab_arch", None) or {}).get("input_shape")
    if input_shape is None and own is None and isinstance(domain, torch.Tensor) and domain.dim() == 4:
        input_shape = tuple(domain.shape[1:])
    return read(target, input_shape)


def check_convolutions(t: LayerGraph, psi: acts_mod.Activation, first_layer: str) -> None:
    """Convolutional layouts the construction cannot make exact at image borders are refused."""
    for name, g in zip(t.names, t.geometry):
        if g["kind"] == "conv":
            (kh, kw), (ph, pw) = g["kernel"], g["padding"]
            if 2 * ph > kh - 1 or 2 * pw > kw - 1:
                raise ConstructionError(f"layer {name!r}: padding {g['padding']} > (kernel - 1) / 2 leaves no kernel "
                                        f"tap inside the image at every output, so biases cannot be carried exactly")
            if max(ph, pw) > 0 and first_layer in ("linearize", "moments") and psi.phi0 != 0:
                raise ConstructionError(f"layer {name!r}: a zero-padded conv after linearised {psi.name} copies "
                                        f"(phi(0) = {psi.phi0:.3g} != 0) would be wrong at image borders; use "
                                        f"first_layer='identity' or an activation with phi(0) = 0")
        for op in g.get("post", []):
            if op["op"] == "avgpool2d" and max(op["padding"]) > 0 and op.get("count_include_pad", True):
                raise ConstructionError(f"after layer {name!r}: AvgPool2d with padding and count_include_pad=True "
                                        f"makes constant channels non-constant at borders; use count_include_pad=False")
