"""Safe, atomic file I/O shared by masks, tickets, checkpoints and results.

Tensors go to safetensors, metadata to JSON; nothing is ever unpickled. Every write goes to a
temporary file in the same directory, is fsynced and then renamed over the target, so a killed
process leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save


class FileFormatError(ValueError):
    """A file exists but is not a valid lotterylab file (corrupt, truncated, wrong kind or version)."""


def _file_mode() -> int:
    """0o666 less the process umask: what ``open()`` would give (mkstemp's files are 0o600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _file_mode())  # colleagues on a shared server can read results, as the umask allows
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path, obj) -> None:
    """Strict JSON (RFC 8259): NaN and infinities are written as null, never as bare tokens."""
    text = json.dumps(finite_json(obj), indent=2, sort_keys=True, default=_json_default, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode())


def finite_json(obj):
    """``obj`` with every non-finite float replaced by None (recursively through dicts, lists, tuples)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    if isinstance(obj, torch.Tensor) and obj.numel() == 1:
        return finite_json(obj.item())
    return obj


def remove_stale_tmp(directory) -> int:
    """Delete ``.*.tmp`` files an interrupted atomic write left in ``directory``; returns how many."""
    d = Path(directory)
    n = 0
    if d.is_dir():
        for p in d.glob(".*.tmp"):
            if p.is_file():
                p.unlink(missing_ok=True)
                n += 1
    return n


def _json_default(o):
    if isinstance(o, torch.Tensor) and o.numel() == 1:
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise FileFormatError(f"{path}: not valid JSON ({e}); delete it or restore it from a backup") from e


def save_tensors(path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """safetensors file with ``meta`` stored as one JSON string in the header."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write_bytes(path, st_save(tensors, metadata={"lotterylab": json.dumps(meta, sort_keys=True)}))


def load_tensors(path, kind: str | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a file written by :func:`save_tensors`; ``kind`` checks ``meta["kind"]``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    raw = path.read_bytes()
    try:
        tensors = st_load(raw)
        header_len = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8:8 + header_len])
    except (SafetensorError, ValueError, UnicodeDecodeError) as e:
        raise FileFormatError(
            f"{path}: not a readable safetensors file ({e}); it is truncated or corrupt, re-create it"
        ) from e
    try:
        meta = json.loads(header.get("__metadata__", {})["lotterylab"])
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise FileFormatError(f"{path}: safetensors file without lotterylab metadata; not written by lotterylab") from e
    if kind is not None and meta.get("kind") != kind:
        raise FileFormatError(f"{path}: holds a {meta.get('kind')!r} file, expected a {kind!r} file")
    return tensors, meta
