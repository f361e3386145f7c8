import pytest
import torch
from torch.nn.utils import prune

from lotterylab import Mask, models
from lotterylab.io import FileFormatError
from lotterylab.masks import pack_bits, unpack_bits


def random_mask(model, density=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    m = Mask.ones_like(model)
    for n in m:
        m[n] = torch.rand(m[n].shape, generator=g) < density
    return m


def test_pack_roundtrip_odd_sizes():
    for n in (1, 7, 8, 9, 1001):
        m = torch.rand(n) < 0.5
        assert torch.equal(unpack_bits(pack_bits(m), (n,)), m)
    with pytest.raises(FileFormatError):
        unpack_bits(torch.zeros(3, dtype=torch.uint8), (100,))
    # the file layout: 8 entries per byte, the first the most significant bit, the last byte zero-padded
    bits = torch.tensor([1, 0, 0, 0, 0, 0, 1, 1, 0, 1], dtype=torch.bool)
    assert pack_bits(bits).tolist() == [0b10000011, 0b01000000]
    assert torch.equal(unpack_bits(torch.tensor([0b10000011, 0b01000000], dtype=torch.uint8), (2, 5)),
                       bits.view(2, 5))


def test_density_sparsity_report():
    model = models.create("lenet_300_100")
    m = Mask.ones_like(model)
    assert set(m) == {"layers.1.weight", "layers.3.weight", "layers.5.weight"}
    assert m.density == 1.0 and m.sparsity == 0.0
    m["layers.5.weight"][:] = False
    assert m.num_kept() == 784 * 300 + 300 * 100
    assert m.density == pytest.approx(m.num_kept() / (784 * 300 + 300 * 100 + 100 * 10))
    assert m.layer_density()["layers.5.weight"] == 0.0
    assert "layers.5.weight" in m.report() and "0.0000" in m.report()


def test_rejects_non_binary_and_unknown_names():
    model = models.create("lenet_300_100")
    with pytest.raises(ValueError, match="0/1"):
        Mask({"layers.1.weight": torch.full((300, 784), 0.5)})
    with pytest.raises(KeyError, match="does not have"):
        Mask({"nope": torch.ones(3, dtype=torch.bool)}).apply(model)
    with pytest.raises(ValueError, match="shape"):
        Mask({"layers.1.weight": torch.ones(3, dtype=torch.bool)}).apply(model)


def test_apply_zeroes_exactly_the_pruned_entries():
    model = models.create("conv2", input_shape=(1, 12, 12))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    m = random_mask(model)
    m.apply(model)
    for n, p in model.named_parameters():
        if n in m:
            assert torch.all(p[~m[n]] == 0)
            assert torch.equal(p[m[n]], before[n][m[n]])
        else:
            assert torch.equal(p, before[n])


def test_torch_prune_roundtrip():
    model = models.create("lenet5")
    m = random_mask(model, 0.2)
    m.to_prune(model)
    assert hasattr(model.features[0], "weight_orig") and hasattr(model.features[0], "weight_mask")
    x = torch.randn(2, 1, 28, 28)
    out_pruned = model(x)
    back = Mask.from_prune(model, remove=True)
    assert back.equal(m)
    assert not hasattr(model.features[0], "weight_orig")
    assert torch.allclose(model(x), out_pruned)
    # a mask made by torch's own pruner comes in too
    fresh = models.create("lenet5")
    prune.l1_unstructured(fresh.classifier[1], "weight", amount=0.5)
    got = Mask.from_prune(fresh)
    assert got.layer_density()["classifier.1.weight"] == pytest.approx(0.5, abs=1e-3)


def test_save_load_and_corruption(tmp_path):
    model = models.create("lenet_300_100")
    m = random_mask(model)
    p = tmp_path / "m.safetensors"
    m.save(p)
    assert Mask.load(p).equal(m)
    # ~1 bit per entry
    assert p.stat().st_size < m.num_total() / 8 * 1.05
    raw = bytearray(p.read_bytes())
    raw[-10] ^= 0xFF  # flip bits inside the packed data
    (tmp_path / "flip.safetensors").write_bytes(bytes(raw))
    with pytest.raises(FileFormatError, match="checksum"):
        Mask.load(tmp_path / "flip.safetensors")
    (tmp_path / "cut.safetensors").write_bytes(p.read_bytes()[:-100])
    with pytest.raises(FileFormatError, match="truncated or corrupt"):
        Mask.load(tmp_path / "cut.safetensors")
