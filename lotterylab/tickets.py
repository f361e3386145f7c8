"""Ticket files: "random network + mask", stored as seed + init spec + bit-packed mask.

The source weights are never stored: they are regenerated from ``(architecture, resolved init
spec, seed)`` by :mod:`lotterylab.rng`, which gives the same bits on every machine, device and
torch version. A ticket file therefore costs about one bit per masked source parameter.

File layout (safetensors, nothing pickled):

* tensors ``mask.<param name>``: uint8, the mask's bits packed 8 per byte;
* JSON metadata: ``kind="ticket"``, ``format_version``, ``lotterylab`` version, ``generator``,
  ``arch`` (model registry name and arguments), ``init`` (one concrete distribution per
  parameter), ``seed``, mask shapes and SHA-256, ``source_sha256`` (a hash of the regenerated
  source, checked on load so a changed generator cannot pass unnoticed) and a free ``report``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import __version__, models
from .init import InitSpec
from .io import FileFormatError, load_tensors, need, save_tensors
from .masks import MASK_FORMAT_VERSION, Mask, pack_bits

TICKET_FORMAT_VERSION = 1
GENERATOR = "lotterylab-counter-v1"


def state_sha256(model: nn.Module) -> str:
    """Hash of every parameter's name, shape and float32 bytes (little-endian)."""
    h = hashlib.sha256()
    for name, p in model.named_parameters():
        h.update(name.encode())
        h.update(str(tuple(p.shape)).encode())
        # (the array itself, not a copy: hashing the demo's 240M-entry source took 3.9 s with two copies)
        h.update(np.ascontiguousarray(p.detach().to("cpu", torch.float32).numpy(), dtype="<f4"))
    return h.hexdigest()


class Ticket:
    """A fixed random source network (by seed) and a mask on it.

    ``masks`` maps parameter names to bool tensors; parameters without an entry are kept whole.
    """

    def __init__(self, arch: dict, init: dict[str, dict], seed: int, masks: Mask | dict, report: dict | None = None):
        self.arch = dict(arch)
        self.init = {k: dict(v) for k, v in init.items()}
        self.seed = int(seed)
        self.masks = masks if isinstance(masks, Mask) else Mask(masks)
        self.report = dict(report or {})
        self._compact: dict = {}  # built compact networks (immutable), by dtype, device, fold and sparse

    def __getstate__(self) -> dict:  # copies and pickles leave the built networks behind (CSR buffers)
        return {**self.__dict__, "_compact": {}}

    @classmethod
    def from_model(cls, model: nn.Module, init: InitSpec | dict | str, seed: int, masks: Mask,
                   report: dict | None = None) -> Ticket:
        """Ticket on a zoo model (``models.create`` output) drawn with ``init`` and ``seed``."""
        arch = getattr(model, "lotterylab_arch", None)
        if arch is None:
            raise ValueError("model has no lotterylab_arch: build it with lotterylab.models.create so it can be regenerated")
        spec = InitSpec(weight=init) if isinstance(init, str) else (InitSpec.from_dict(init) if isinstance(init, dict) else init)
        ticket = cls(arch, spec.resolve(model), seed, masks, report)
        if state_sha256(ticket.source()) != state_sha256(model):
            raise ValueError(
                f"the model's weights are not its initialisation under init={init!r}, seed={seed}: a ticket stores "
                f"(architecture, init, seed) + mask and regenerates the *initial* weights, so it cannot hold trained "
                f"weights (and a wrong init/seed would regenerate another network). Build the ticket from the model "
                f"as created (models.create with this init and seed) before training; keep trained weights in the "
                f"run folder (lotterylab.load_run) or with Mask.save")
        return ticket

    def source(self, device=None) -> nn.Module:
        """The full random source network, regenerated from the seed."""
        return models.from_arch(self.arch, init=InitSpec(overrides=self.init), seed=self.seed, device=device)

    def network(self, device=None) -> nn.Module:
        """The pruned network: source values where the mask keeps, exact zeros elsewhere."""
        return self.masks.apply(self.source(device))

    def compact(self, dtype=torch.float64, device=None, fold: bool = True, sparse: bool = True) -> nn.Module:
        """The pruned network built from the kept entries alone: unused neurons and channels removed,
        constant neurons folded into biases, univariate ReLU layers folded into their readers
        (``fold``), sparse layers as CSR or sparse-kernel convolutions where that is faster (``sparse``;
        False: every convolution dense) (:mod:`lotterylab.compact`, :mod:`lotterylab.compact_net`).
        Built once per dtype, device, fold and sparse, then shared (a construction's own check, ``verify`` and
        ``compare`` use the same one); replacing ``ticket.masks`` builds it anew."""
        from .compact import compact

        key = (dtype, str(torch.device(device) if device is not None else torch.device("cpu")), fold, sparse,
               id(self.masks))
        if key not in self._compact:
            self._compact = {k: v for k, v in self._compact.items() if k[-1] == id(self.masks)}
            self._compact[key] = compact(self, dtype, device, fold, sparse)
        return self._compact[key]

    # --- sizes ------------------------------------------------------------------------------
    def counts(self) -> dict:
        total = models.count_parameters(self.arch)  # without building the (possibly huge) source
        masked_total = self.masks.num_total()
        kept = self.masks.num_kept() + (total - masked_total)
        return {"source_parameters": total, "ticket_parameters": kept, "density": kept / total if total else 1.0,
                "masked_parameters": masked_total}

    # --- files ------------------------------------------------------------------------------
    def save(self, path) -> Path:
        path = Path(path)
        source = self.source()
        self.masks.check_fits(source)
        packed = {n: pack_bits(m) for n, m in self.masks.items()}
        meta = {
            "kind": "ticket", "format_version": TICKET_FORMAT_VERSION, "lotterylab": __version__,
            "generator": GENERATOR, "arch": self.arch, "init": self.init, "seed": self.seed,
            "mask": {"format_version": MASK_FORMAT_VERSION, "shapes": {n: list(m.shape) for n, m in self.masks.items()},
                     "sha256": self.masks.fingerprint(packed)},
            # wall-clock timings stay in result.json: identical runs must write byte-identical tickets
            "source_sha256": state_sha256(source), "report": {k: v for k, v in self.report.items() if k != "timings_s"},
        }
        save_tensors(path, {f"mask.{n}": p for n, p in packed.items()}, meta)
        return path

    @classmethod
    def load(cls, path, verify_source: bool = True) -> Ticket:
        tensors, meta = load_tensors(path, kind="ticket")
        version = meta.get("format_version")
        if version != TICKET_FORMAT_VERSION:
            raise FileFormatError(f"{path}: ticket format version {version!r}; this lotterylab ({__version__}) reads "
                                  f"version {TICKET_FORMAT_VERSION}. Upgrade lotterylab to read it.")
        if meta.get("generator") != GENERATOR:
            raise FileFormatError(f"{path}: made with generator {meta.get('generator')!r}, this lotterylab has {GENERATOR!r}")
        _check_meta(meta, path)
        masks = Mask.from_packed({k[5:]: v for k, v in tensors.items() if k.startswith("mask.")}, meta["mask"], path)
        ticket = cls(meta["arch"], meta["init"], meta["seed"], masks, meta.get("report"))
        if verify_source:
            try:
                got = state_sha256(ticket.source())
            except (ValueError, KeyError, TypeError, RuntimeError) as e:
                raise FileFormatError(f"{path}: its source network cannot be regenerated ({type(e).__name__}: "
                                      f"{str(e)[:200]}); the file is corrupt") from None
            if got != meta.get("source_sha256"):
                raise FileFormatError(f"{path}: the regenerated source network differs from the one the ticket was "
                                      f"made on (hash {got[:12]} != {str(meta.get('source_sha256'))[:12]}); the "
                                      f"file is corrupt or was written by an incompatible generator")
        return ticket

    def file_report(self, path) -> dict:
        """Ticket file size against the dense float32 source."""
        size = Path(path).stat().st_size
        n = self.counts()["source_parameters"]
        return {"file_bytes": size, "dense_float32_bytes": 4 * n, "bits_per_source_parameter": 8 * size / n,
                "compression_vs_dense": 4 * n / size}


def _check_meta(meta: dict, path) -> None:
    """Types, ranges and size of a ticket's metadata, before anything is built from it."""
    arch = need(meta, "arch", dict, path, what="an architecture object")
    need(arch, "name", str, path, what="a model name")
    need(meta, "seed", int, path, lambda v: 0 <= v < 2**63, "an integer seed in [0, 2**63)")
    init = need(meta, "init", dict, path, what="an object of per-parameter init specs")
    for k, v in init.items():
        if not (isinstance(v, dict) and isinstance(v.get("dist"), str)
                and all(isinstance(x, (str, int, float)) for x in v.values())):
            raise FileFormatError(f"{path}: init spec of {k!r} is {v!r}; the file is corrupt")
    need(meta, "mask", dict, path, what="a mask record")
    need(meta, "source_sha256", str, path, what="a hex digest")
    if not isinstance(meta.get("report", {}), dict):
        raise FileFormatError(f"{path}: report is not an object; the file is corrupt")
    try:
        shapes = models.parameter_shapes(arch)  # refuses unbuildable or oversized architectures without allocating
    except ValueError as e:
        raise FileFormatError(f"{path}: {e}") from None
    for name, shape in (meta["mask"].get("shapes") or {}).items() if isinstance(meta["mask"].get("shapes"), dict) else ():
        if name not in shapes or not isinstance(shape, list) or tuple(shape) != shapes[name]:
            raise FileFormatError(f"{path}: mask entry {name!r} of shape {shape!r} does not match the source's "
                                  f"parameter {shapes.get(name)}; the file is corrupt")


def load_ticket(path, verify_source: bool = True) -> Ticket:
    return Ticket.load(path, verify_source=verify_source)
