"""Safe, atomic file I/O shared by masks, tickets, checkpoints and results.

Tensors go to safetensors, metadata to JSON; nothing is ever unpickled. Every write goes to a
temporary file in the same directory, is fsynced and then renamed over the target, so a killed
process leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import hashlib
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


_WRITES: dict[str, int] = {}


def _fault(path: Path, stage: str) -> None:
    """Fault injection for the kill tests: ``LOTTERYLAB_FAULT=name:n:stage`` SIGKILLs this process at
    ``stage`` (mid, before_rename, after_rename) of the n-th write of a file called ``name``."""
    spec = os.environ.get("LOTTERYLAB_FAULT")
    if not spec:
        return
    name, n, at = spec.split(":")
    if path.name == name and at == stage and _WRITES.get(name) == int(n):
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def atomic_write_bytes(path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _WRITES[path.name] = _WRITES.get(path.name, 0) + 1
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _file_mode())  # colleagues on a shared server can read results, as the umask allows
        with os.fdopen(fd, "wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
            _fault(path, "mid")
            f.write(data[len(data) // 2:])
            f.flush()
            os.fsync(f.fileno())
        _fault(path, "before_rename")
        os.replace(tmp, path)
        _fault(path, "after_rename")
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def exclusive(folder):
    """Hold an advisory lock on ``folder`` (its ``.lock`` file) while the block runs: parallel
    processes that would compute the same cached thing (a sweep's cells training one zoo target)
    take turns, and the later ones find it done. No-op where ``fcntl`` is missing (not POSIX)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


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
    """Delete ``.*.tmp`` files an interrupted atomic write left in ``directory`` (and below); returns how many."""
    d = Path(directory)
    n = 0
    if d.is_dir():
        for p in d.rglob(".*.tmp"):
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
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise FileFormatError(f"{path}: not valid JSON ({type(e).__name__}: {str(e)[:120]}); delete it or restore it "
                              f"from a backup") from None


# Files written from this version on carry a checksum; older files (lotterylab 0.1.x) are read without one.
CHECKSUM_KEY = "lotterylab_sha256"
MAX_FILE_BYTES = int(os.environ.get("LOTTERYLAB_MAX_FILE_BYTES", 16 << 30))
MAX_HEADER_BYTES = 64 << 20
MAX_JSON_DEPTH = 32


def tensors_digest(tensors: dict[str, torch.Tensor], meta_json: str) -> str:
    """SHA-256 over the metadata text and every tensor's name, dtype, shape and bytes."""
    h = hashlib.sha256(meta_json.encode())
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(f"\0{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_tensors(path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """safetensors file with ``meta`` stored as one JSON string in the header, plus a checksum over
    the tensors' data, shapes and dtypes and the metadata (verified by :func:`load_tensors`)."""
    from . import __version__

    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    meta = {"lotterylab": __version__, **meta}  # the writer's version: files from 0.2 on must carry a checksum
    meta_json = json.dumps(finite_json(meta), sort_keys=True, allow_nan=False)
    data = st_save(tensors, metadata={"lotterylab": meta_json, CHECKSUM_KEY: tensors_digest(tensors, meta_json)})
    atomic_write_bytes(path, _canonical_metadata_order(data))


def _canonical_metadata_order(data: bytes) -> bytes:
    """The same bytes for the same content: safetensors keeps metadata in a Rust HashMap whose order
    changes from call to call, so the checksum entry is moved behind the ``lotterylab`` entry (a
    permutation inside the header: its length, the padding and the data offsets are unchanged)."""
    n = int.from_bytes(data[:8], "little")
    text = data[8:8 + n].decode("utf-8")
    start = text.index('"__metadata__":') + len('"__metadata__":')
    _, end = json.JSONDecoder().raw_decode(text, start)
    inner = text[start + 1:end - 1]
    first = inner[:inner.index(":")]
    if first == json.dumps(CHECKSUM_KEY):
        entry, rest = inner.split(",", 1)  # the checksum entry is hex digits: its first comma ends it
        text = text[:start + 1] + rest + "," + entry + text[end - 1:]
    return data[:8] + text.encode("utf-8") + data[8 + n:]


def regular_file(path) -> Path:
    """``path`` if it is a regular file; FIFOs, devices and sockets are refused (they block or never end)."""
    import stat

    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    if not stat.S_ISREG(st.st_mode):
        raise FileFormatError(f"{path}: not a regular file (a folder, device, FIFO or socket); give a lotterylab file")
    return path


def _reject_constant(token):
    raise ValueError(f"non-finite number {token}")


def strict_json(text, what: str):
    """JSON without NaN/Infinity and nested at most MAX_JSON_DEPTH deep; FileFormatError otherwise."""
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError, UnicodeDecodeError) as e:
        raise FileFormatError(f"{what}: invalid JSON metadata ({type(e).__name__}: {str(e)[:120]})") from None
    if _depth(obj) > MAX_JSON_DEPTH:
        raise FileFormatError(f"{what}: metadata nested deeper than {MAX_JSON_DEPTH} levels")
    return obj


def _depth(obj, d: int = 0) -> int:
    if d > MAX_JSON_DEPTH:
        return d
    if isinstance(obj, dict):
        return max([_depth(v, d + 1) for v in obj.values()] or [d + 1])
    if isinstance(obj, list):
        return max([_depth(v, d + 1) for v in obj] or [d + 1])
    return d


def load_tensors(path, kind: str | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a file written by :func:`save_tensors`; ``kind`` checks ``meta["kind"]``.

    Checked before anything is built: regular file, size, header length and JSON, the checksum
    over data, shapes, dtypes and metadata (files of lotterylab 0.1.x have none and are read as they are).
    """
    path = regular_file(path)
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise FileFormatError(f"{path}: {size:,} bytes, over the limit of {MAX_FILE_BYTES:,} "
                              f"(LOTTERYLAB_MAX_FILE_BYTES raises it)")
    with open(path, "rb") as f:
        head = f.read(8)
        header_len = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 0 < header_len <= min(MAX_HEADER_BYTES, size - 8):
            raise FileFormatError(f"{path}: not a readable safetensors file (header length {header_len} for a "
                                  f"{size}-byte file); it is truncated or corrupt, re-create it")
        raw = head + f.read()
    header = strict_json(raw[8:8 + header_len], str(path))
    md = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(md, dict) or not isinstance(md.get("lotterylab"), str):
        raise FileFormatError(f"{path}: safetensors file without lotterylab metadata; not written by lotterylab")
    meta = strict_json(md["lotterylab"], str(path))
    if not isinstance(meta, dict):
        raise FileFormatError(f"{path}: lotterylab metadata is a {type(meta).__name__}, not an object; the file is corrupt")
    try:
        tensors = st_load(raw)
    except (SafetensorError, ValueError, UnicodeDecodeError, RuntimeError) as e:
        raise FileFormatError(
            f"{path}: not a readable safetensors file ({e}); it is truncated or corrupt, re-create it"
        ) from e
    digest = md.get(CHECKSUM_KEY)
    legacy = digest is None and str(meta.get("lotterylab", "0.1.")).startswith("0.1.")  # written before checksums
    if not legacy:
        if digest != tensors_digest(tensors, md["lotterylab"]):
            raise FileFormatError(f"{path}: checksum mismatch: the data, shapes, dtypes or metadata changed after the "
                                  f"file was written (bit flip, truncation or edit); re-create it or restore a copy")
    if kind is not None and meta.get("kind") != kind:
        raise FileFormatError(f"{path}: holds a {meta.get('kind')!r} file, expected a {kind!r} file")
    return tensors, meta


def need(meta: dict, key: str, types, path, check=None, what: str = ""):
    """``meta[key]`` if it has one of ``types`` (and passes ``check``); FileFormatError naming it otherwise."""
    v = meta.get(key) if isinstance(meta, dict) else None
    ok = isinstance(v, types) and not (isinstance(v, bool) and bool not in (types if isinstance(types, tuple)
                                                                             else (types,)))
    if not ok or (check is not None and not check(v)):
        raise FileFormatError(f"{path}: metadata field {key!r} is {v!r}; expected {what or types}; the file is corrupt")
    return v


def load_state_into(model, state: dict, path) -> None:
    """``model.load_state_dict(state)`` (strict, onto the model's device); FileFormatError when it does not fit."""
    try:
        device = next(iter(model.parameters())).device
        model.load_state_dict({k: v.to(device) for k, v in state.items()}, strict=True)
    except (RuntimeError, ValueError, KeyError, TypeError, StopIteration) as e:
        raise FileFormatError(f"{path}: the weights do not fit the model ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200] if str(e) else ''}); the file is corrupt or from "
                              f"another model") from None
