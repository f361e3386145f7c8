"""Shared fixtures. Tests run torch on one thread: a second thread on a busy machine slows torch 5-50x."""

import gzip
from pathlib import Path

import pytest
import torch

from lotterylab import data as data_mod

torch.set_num_threads(1)


@pytest.fixture
def tiny_data():
    """A small, learnable 10-class problem (1x8x8 images): Gaussian class centres plus noise."""
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(10, 1, 8, 8, generator=g)

    def split(n):
        y = torch.randint(0, 10, (n,), generator=g)
        x = centres[y] + 0.8 * torch.randn(n, 1, 8, 8, generator=g)
        return data_mod.Split(x, y)

    return data_mod.DataSplits("tiny", split(600), split(200), split(200), 10, (1, 8, 8), [0.0], [1.0])


def mnist_available() -> bool:
    return (data_mod.cache_dir() / data_mod.MNIST_TARBALL).exists()


needs_mnist = pytest.mark.skipif(not mnist_available(), reason="MNIST not fetched: run `lotterylab data fetch mnist`")
needs_fashion = pytest.mark.skipif(not (data_mod.FASHION_MNIST_SYSTEM_DIR / "train-images-idx3-ubyte.gz").exists(),
                                   reason="Fashion-MNIST not installed: apt-get install dataset-fashion-mnist")


def idx_bytes(t: torch.Tensor) -> bytes:
    """Encode a uint8 tensor as an IDX file."""
    header = bytes([0, 0, 0x08, t.dim()]) + b"".join(int(d).to_bytes(4, "big") for d in t.shape)
    return header + t.to(torch.uint8).contiguous().numpy().tobytes()


@pytest.fixture
def fashion_fixture_dir(tmp_path) -> Path:
    """Four standard-format .gz IDX files with random content (60/10 examples)."""
    g = torch.Generator().manual_seed(1)
    d = tmp_path / "fmnist"
    d.mkdir()
    for prefix, n in (("train", 60), ("t10k", 10)):
        imgs = torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8)
        labels = torch.arange(n, dtype=torch.uint8) % 10
        (d / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(imgs)))
        (d / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    return d
