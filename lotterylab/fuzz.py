"""Mutation harness for lotterylab's files: every load succeeds unchanged or raises FileFormatError.

Real ticket, mask, checkpoint and weights files are written, then mutated with a seeded generator:

* ``truncate``: cut at a random length;
* ``flip_data`` / ``flip_header``: one bit flipped in the tensor bytes / in the safetensors header;
* ``edit_meta``: one metadata value replaced (other types, null, huge or negative numbers, deep
  nesting, NaN text), the file's checksum left as it was;
* ``resigned_*``: the same edits, tensor shape edits and oversized architectures, with the checksum
  recomputed -- a deliberate, valid-looking file. These may load (a different file is a different
  file); they must never raise anything but FileFormatError, hang or build an oversized network.

Each mutated file is loaded through the API (``load_ticket``, ``Mask.load``, resuming a checkpoint,
``runs.load_weights``) and ``lotterylab info``, which must agree with the API (for checkpoints, whose
model it does not know, it must only not fail). Outcomes: ``clear_error``, ``identical`` (loaded,
same content), ``changed`` (loaded, other content: a defect unless resigned), ``traceback`` and
``hang`` (defects). ``tests/test_fuzz_files.py`` runs a sample; ``benchmarks/fuzz_files.py`` the
full count for the docs.
"""

from __future__ import annotations

import contextlib
import hashlib
import io as _io
import json
import random
import signal
import traceback
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .io import CHECKSUM_KEY, FileFormatError, save_tensors, tensors_digest

KINDS = ("ticket", "mask", "checkpoint", "weights")
CATEGORIES = ("truncate", "flip_data", "flip_header", "edit_meta", "resigned_edit", "resigned_shape",
              "resigned_oversized")
_VALUES = [None, [], {}, "x", -1, 2**70, -(2**40), 1e308, True, 0.5, [1, 2, 3], {"a": 1}, "", "0.1.0"]


def _state_digest(state: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().contiguous().cpu()
        h.update(f"{k}{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def make_samples(folder) -> dict[str, Path]:
    """One real file of each kind (small, so thousands of loads take seconds)."""
    from . import Mask, Ticket, models
    from .data import DataSplits, Split
    from .training import train

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = models.create("mlp", input_shape=(1, 6, 6), widths=[12], seed=3)
    g = torch.Generator().manual_seed(0)
    mask = Mask({n: torch.rand(p.shape, generator=g) < 0.4 for n, p in model.named_parameters() if n.endswith("weight")})
    Ticket.from_model(model, model.lotterylab_init, 3, mask, {"note": "fuzz"}).save(folder / "ticket.safetensors")
    mask.save(folder / "mask.safetensors")
    x = torch.randn(80, 1, 6, 6, generator=g)
    y = torch.randint(0, 10, (80,), generator=g)
    data = DataSplits("fuzz", Split(x[:60], y[:60]), Split(x[60:70], y[60:70]), Split(x[70:], y[70:]), 10,
                      (1, 6, 6), [0.0], [1.0])
    train(model, data, _train_cfg(), out=folder / "run", progress=False)
    save_tensors(folder / "weights.safetensors", dict(model.state_dict()),
                 {"kind": "weights", "arch": model.lotterylab_arch, "iteration": 8})
    return {"ticket": folder / "ticket.safetensors", "mask": folder / "mask.safetensors",
            "checkpoint": folder / "run" / "checkpoint.safetensors", "weights": folder / "weights.safetensors"}


def _train_cfg():
    from .training import TrainConfig

    return TrainConfig(optimizer="adam", budget="8it", batch_size=20, eval_every="4it", schedule="cosine")


def load_content(kind: str, path) -> str:
    """Load ``path`` as ``kind`` through the public API; a digest of what was loaded."""
    from . import Mask, load_ticket, models
    from .hparams import run_hash
    from .runs import load_weights
    from .training import Loop, load_checkpoint, make_optimizer

    if kind == "ticket":
        t = load_ticket(path)
        return json.dumps([t.arch, t.init, t.seed, t.masks.fingerprint(), {n: list(m.shape) for n, m in t.masks.items()}],
                          sort_keys=True)
    if kind == "mask":
        m = Mask.load(path)
        return json.dumps([m.fingerprint(), {n: list(v.shape) for n, v in m.items()}], sort_keys=True)
    if kind == "checkpoint":
        model = models.create("mlp", input_shape=(1, 6, 6), widths=[12], seed=3)
        cfg = _train_cfg()
        loop = Loop(model, make_optimizer(cfg, model.parameters()), None, cfg, 8, 3)
        from .io import load_tensors
        _, meta = load_tensors(path, kind="checkpoint")
        load_checkpoint(Path(path), loop, meta.get("config_hash") if isinstance(meta.get("config_hash"), str)
                        else run_hash({}))
        opt = loop.optimizer.state_dict()
        return json.dumps([loop.iteration, loop.history, _state_digest(model.state_dict()),
                           _state_digest({f"{i}.{k}": v for i, s in opt["state"].items() for k, v in s.items()
                                          if isinstance(v, torch.Tensor)})], sort_keys=True)
    if kind == "weights":
        return _state_digest(load_weights(path).state_dict())
    raise ValueError(kind)


class _Hang(Exception):
    pass


@contextlib.contextmanager
def _time_limit(seconds: int):
    def fire(signum, frame):
        raise _Hang()
    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _split(raw: bytes):
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    return n, header


def _random_path(obj, rnd: random.Random, path=()):
    """A random (container, key) inside a JSON object."""
    keys = list(obj.items()) if isinstance(obj, dict) else list(enumerate(obj)) if isinstance(obj, list) else []
    if not keys:
        return None
    k, v = rnd.choice(keys)
    if isinstance(v, (dict, list)) and v and rnd.random() < 0.6:
        deeper = _random_path(v, rnd, path + (k,))
        if deeper is not None:
            return deeper
    return obj, k


def _edit_meta(meta_json: str, rnd: random.Random) -> str:
    meta = json.loads(meta_json)
    choice = rnd.random()
    if choice < 0.08:
        return meta_json.replace("3", "NaN", 1) if "3" in meta_json else "NaN"
    if choice < 0.14:
        deep: list = []
        for _ in range(200):
            deep = [deep]
        meta[rnd.choice(list(meta))] = deep
        return json.dumps(meta)
    if choice < 0.18:
        return json.dumps(rnd.choice([[], None, 3, "meta"]))
    spot = _random_path(meta, rnd)
    if spot is None:
        return json.dumps(meta)
    obj, k = spot
    new = rnd.choice(_VALUES)
    if isinstance(obj[k], (int, float)) and not isinstance(obj[k], bool) and rnd.random() < 0.5:
        new = rnd.choice([obj[k] + 1, -obj[k] - 1, obj[k] * 1000, 0])
    obj[k] = new
    return json.dumps(meta)


def _rebuild(raw: bytes, meta_json: str, resign: bool, reshape=None) -> bytes:
    _, header = _split(raw)
    tensors = st_load(raw)
    if reshape is not None:
        name = sorted(tensors)[reshape[0] % len(tensors)]
        t = tensors[name]
        if t.numel() > 1 and t.numel() % 2 == 0:
            tensors[name] = t.reshape(2, -1) if t.dim() == 1 else t.reshape(-1)
        elif t.dim() == 2:
            tensors[name] = t.t().contiguous()
    md = dict(header.get("__metadata__", {}))
    md["lotterylab"] = meta_json
    if resign:
        md[CHECKSUM_KEY] = tensors_digest(tensors, meta_json)
    return st_save(tensors, metadata=md)


def _oversized(meta_json: str, rnd: random.Random) -> str:
    meta = json.loads(meta_json)
    if isinstance(meta.get("arch"), dict):
        meta["arch"]["kwargs"] = {"widths": [rnd.choice([10**5, 10**6, 3 * 10**6])] * 2}
        meta["arch"]["input_shape"] = rnd.choice([[1, 6, 6], [3, 1024, 1024]])
    return json.dumps(meta)


def mutate(raw: bytes, category: str, rnd: random.Random) -> bytes:
    n, header = _split(raw)
    meta_json = header["__metadata__"]["lotterylab"]
    if category == "truncate":
        return raw[:rnd.randrange(0, len(raw))]
    if category in ("flip_data", "flip_header"):
        lo, hi = (8 + n, len(raw)) if category == "flip_data" else (0, 8 + n)
        if hi <= lo:
            lo, hi = 0, len(raw)
        i = rnd.randrange(lo, hi)
        b = bytearray(raw)
        b[i] ^= 1 << rnd.randrange(8)
        return bytes(b)
    if category == "edit_meta":
        return _rebuild(raw, _edit_meta(meta_json, rnd), resign=False)
    if category == "resigned_edit":
        return _rebuild(raw, _edit_meta(meta_json, rnd), resign=True)
    if category == "resigned_shape":
        return _rebuild(raw, meta_json, resign=True, reshape=(rnd.randrange(1000),))
    if category == "resigned_oversized":
        return _rebuild(raw, _oversized(meta_json, rnd), resign=True)
    raise ValueError(category)


def check(kind: str, path, original: str, resigned: bool, timeout: int = 10) -> tuple[str, str]:
    """Outcome of loading one mutated file through the API and ``lotterylab info``."""
    from .cli import main

    try:
        with _time_limit(timeout):
            got = load_content(kind, path)
        outcome = "identical" if got == original else ("edited" if resigned else "changed")
    except FileFormatError:
        outcome = "clear_error"
    except _Hang:
        return "hang", f"{kind}: load did not finish in {timeout} s"
    except Exception:  # noqa: BLE001 - anything else is the defect being counted
        return "traceback", traceback.format_exc(limit=3)
    try:
        with _time_limit(timeout), contextlib.redirect_stdout(_io.StringIO()), \
                contextlib.redirect_stderr(_io.StringIO()):
            rc = main(["info", str(path)])
        # info validates tickets, masks and weights whole; a checkpoint only fits a model it does not know
        # (its summary checks the metadata), so there only the resume is authoritative
        if rc not in (0, 2) or (rc == 0 and outcome == "clear_error" and kind != "checkpoint"):
            return "traceback", f"info returned {rc} where the API said {outcome}"
    except _Hang:
        return "hang", f"{kind}: info did not finish in {timeout} s"
    except Exception:  # noqa: BLE001
        return "traceback", "info: " + traceback.format_exc(limit=3)
    return outcome, ""


def run(n: int, seed: int, folder, log=None) -> dict:
    """``n`` mutations spread over kinds and categories; counts per (kind, category, outcome)."""
    folder = Path(folder)
    samples = make_samples(folder / "originals")
    originals = {k: load_content(k, p) for k, p in samples.items()}
    raws = {k: Path(p).read_bytes() for k, p in samples.items()}
    rnd = random.Random(seed)
    counts: dict = {}
    failures: list = []
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        category = CATEGORIES[(i // len(KINDS)) % len(CATEGORIES)]
        if category == "resigned_oversized" and kind not in ("ticket", "weights"):
            category = "resigned_edit"
        data = mutate(raws[kind], category, rnd)
        path = folder / f"mutant.{kind}.safetensors"
        path.write_bytes(data)
        outcome, detail = check(kind, path, originals[kind], category.startswith("resigned"))
        key = f"{kind}/{category}"
        counts.setdefault(key, {}).setdefault(outcome, 0)
        counts[key][outcome] += 1
        if outcome in ("traceback", "hang", "changed"):
            failures.append({"i": i, "kind": kind, "category": category, "outcome": outcome, "detail": detail[-600:]})
            (folder / f"failure-{i}.safetensors").write_bytes(data)
        if log and (i + 1) % 200 == 0:
            log(f"{i + 1}/{n} mutations")
    return {"n": n, "seed": seed, "counts": counts, "failures": failures}
