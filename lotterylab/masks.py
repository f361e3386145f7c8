"""One mask type for every method: parameter name -> bool tensor (True = kept).

Names are the model's ``state_dict`` / ``named_parameters`` keys, so a mask never renames
anything (``torch.nn.utils.prune``'s ``weight_orig`` keys are produced only on explicit export).
density = fraction kept, sparsity = fraction removed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune

from .io import FileFormatError, load_tensors, need, save_tensors

MASK_FORMAT_VERSION = 1


def pack_bits(m: torch.Tensor) -> torch.Tensor:
    """Flatten a bool tensor into uint8 bytes, 8 entries per byte, big-endian within a byte."""
    # (numpy's packbits: ~10x faster than a weighted sum over [n/8, 8] on the 240M entries of the demo's
    # ticket; the same bytes, the last one zero-padded)
    flat = m.detach().reshape(-1).to(device="cpu", dtype=torch.bool).numpy()
    return torch.from_numpy(np.packbits(flat, bitorder="big"))


def unpack_bits(packed: torch.Tensor, shape) -> torch.Tensor:
    n = 1
    for s in shape:
        n *= int(s)
    if packed.dtype != torch.uint8 or packed.numel() != (n + 7) // 8:
        raise FileFormatError(f"packed mask has {packed.numel()} bytes, expected {(n + 7) // 8} for shape {tuple(shape)}")
    bits = np.unpackbits(packed.numpy(), count=n, bitorder="big").view(np.bool_)
    return torch.from_numpy(bits).reshape(tuple(shape))


def default_prunable(model: nn.Module) -> list[str]:
    """Weights of Linear and Conv layers: what the lottery-ticket literature prunes by default."""
    names = []
    for mod_name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
            names.append(f"{mod_name}.weight" if mod_name else "weight")
    return names


class Mask(dict):
    """``{name: bool tensor}``. Construct from a dict, or with :meth:`ones_like`."""

    def __init__(self, masks: Mapping[str, torch.Tensor] | None = None):
        super().__init__()
        for k, v in (masks or {}).items():
            self[k] = v

    def __setitem__(self, name: str, value: torch.Tensor) -> None:
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"mask entry {name!r} must be a tensor, got {type(value).__name__}")
        if value.dtype != torch.bool:
            if not torch.all((value == 0) | (value == 1)):
                raise ValueError(f"mask entry {name!r} has values other than 0/1")
            value = value.bool()
        super().__setitem__(name, value)

    @classmethod
    def ones_like(cls, model: nn.Module, names: Iterable[str] | None = None) -> Mask:
        params = dict(model.named_parameters())
        names = list(names) if names is not None else default_prunable(model)
        missing = [n for n in names if n not in params]
        if missing:
            raise KeyError(f"model has no parameters {missing}; it has {list(params)}")
        return cls({n: torch.ones_like(params[n], dtype=torch.bool) for n in names})

    # --- counts -----------------------------------------------------------------------------
    def num_kept(self) -> int:
        return int(sum(int(m.count_nonzero()) for m in self.values()))

    def num_total(self) -> int:
        return int(sum(m.numel() for m in self.values()))

    @property
    def density(self) -> float:
        total = self.num_total()
        return self.num_kept() / total if total else 1.0

    @property
    def sparsity(self) -> float:
        return 1.0 - self.density

    def layer_density(self) -> dict[str, float]:
        return {n: float(m.float().mean()) if m.numel() else 1.0 for n, m in self.items()}

    def report(self) -> str:
        w = max([len(n) for n in self] + [5])
        lines = [f"{'layer':<{w}}  {'kept':>10}  {'total':>10}  {'density':>8}"]
        for n, m in self.items():
            k = int(m.sum())
            lines.append(f"{n:<{w}}  {k:>10}  {m.numel():>10}  {k / max(m.numel(), 1):>8.4f}")
        lines.append(f"{'all':<{w}}  {self.num_kept():>10}  {self.num_total():>10}  {self.density:>8.4f}")
        return "\n".join(lines)

    # --- algebra ----------------------------------------------------------------------------
    def to(self, device) -> Mask:
        return Mask({n: m.to(device) for n, m in self.items()})

    def __and__(self, other: Mask) -> Mask:
        if set(self) != set(other):
            raise KeyError(f"masks cover different parameters: {sorted(set(self) ^ set(other))}")
        return Mask({n: self[n] & other[n].to(self[n].device) for n in self})

    def invert(self) -> Mask:
        return Mask({n: ~m for n, m in self.items()})

    def equal(self, other: Mask) -> bool:
        return set(self) == set(other) and all(torch.equal(self[n].cpu(), other[n].cpu()) for n in self)

    def fingerprint(self, packed: Mapping[str, torch.Tensor] | None = None) -> str:
        """SHA-256 over the names and bit-packed masks (``packed``: those bytes, when already made)."""
        h = hashlib.sha256()
        for n in sorted(self):
            h.update(n.encode())
            h.update((packed[n] if packed is not None else pack_bits(self[n])).numpy())
        return h.hexdigest()

    # --- models -----------------------------------------------------------------------------
    def check_fits(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The model's parameters by name; KeyError / ValueError if a mask names none or has another shape."""
        params = dict(model.named_parameters())
        for n, m in self.items():
            if n not in params:
                raise KeyError(f"mask names {n!r}, which the model does not have (has: {list(params)[:8]}...)")
            if params[n].shape != m.shape:
                raise ValueError(f"mask {n!r} has shape {tuple(m.shape)}, parameter has {tuple(params[n].shape)}")
        return params

    @torch.no_grad()
    def apply(self, model: nn.Module) -> nn.Module:
        """Zero the pruned entries of ``model`` in place; returns the model."""
        params = self.check_fits(model)
        for n, m in self.items():
            params[n].mul_(m.to(params[n].device))
        return model

    def to_prune(self, model: nn.Module) -> nn.Module:
        """Attach as ``torch.nn.utils.prune`` masks (``weight_orig`` + ``weight_mask``)."""
        self.check_fits(model)
        modules = dict(model.named_modules())
        for n, m in self.items():
            mod_name, _, leaf = n.rpartition(".")
            prune.custom_from_mask(modules[mod_name], leaf, m.to(torch.float32))
        return model

    @classmethod
    def from_prune(cls, model: nn.Module, remove: bool = False) -> Mask:
        """Read masks attached by ``torch.nn.utils.prune``; with ``remove=True`` also make them permanent."""
        out = cls()
        for mod_name, module in model.named_modules():
            for hook in list(module._forward_pre_hooks.values()):
                if isinstance(hook, prune.BasePruningMethod):
                    leaf = hook._tensor_name
                    name = f"{mod_name}.{leaf}" if mod_name else leaf
                    out[name] = getattr(module, f"{leaf}_mask").detach().clone().bool()
                    if remove:
                        prune.remove(module, leaf)
        if not out:
            raise ValueError("model carries no torch.nn.utils.prune masks")
        return out

    # --- files ------------------------------------------------------------------------------
    def save(self, path, extra_meta: dict | None = None) -> None:
        tensors = {n: pack_bits(m) for n, m in self.items()}
        meta = {"kind": "mask", "format_version": MASK_FORMAT_VERSION,
                "shapes": {n: list(m.shape) for n, m in self.items()},
                "sha256": self.fingerprint(tensors), **(extra_meta or {})}
        save_tensors(path, tensors, meta)

    @classmethod
    def load(cls, path) -> Mask:
        tensors, meta = load_tensors(path, kind="mask")
        return cls.from_packed(tensors, meta, path)

    @classmethod
    def from_packed(cls, tensors: dict, meta: dict, path="<memory>") -> Mask:
        if not isinstance(meta, dict):
            raise FileFormatError(f"{path}: mask metadata is not an object; the file is corrupt")
        version = meta.get("format_version")
        if version != MASK_FORMAT_VERSION:
            raise FileFormatError(f"{path}: mask format version {version!r}, this lotterylab reads {MASK_FORMAT_VERSION}")
        shapes = need(meta, "shapes", dict, path, what="an object of shapes")
        for n, shape in shapes.items():
            if not (isinstance(shape, list) and len(shape) <= 8
                    and all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**40 for d in shape)):
                raise FileFormatError(f"{path}: mask shape of {n!r} is {shape!r}; expected a list of sizes")
        need(meta, "sha256", str, path, what="a hex digest")
        if set(shapes) != set(tensors):
            raise FileFormatError(f"{path}: mask entries and recorded shapes disagree; the file is corrupt")
        out = cls({n: unpack_bits(tensors[n], shapes[n]) for n in shapes})
        if out.fingerprint() != meta.get("sha256"):
            raise FileFormatError(f"{path}: mask checksum mismatch; the file is corrupt, re-create it")
        return out
