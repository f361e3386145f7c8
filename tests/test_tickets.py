
import pytest
import torch

from lotterylab import Mask, Ticket, load_ticket, models
from lotterylab.io import FileFormatError, save_tensors


def make_ticket(seed=5, density=0.25):
    model = models.create("lenet_300_100", init={"weight": "uniform"}, seed=seed)
    g = torch.Generator().manual_seed(0)
    mask = Mask({n: torch.rand(p.shape, generator=g) < density for n, p in model.named_parameters()})
    return Ticket.from_model(model, {"weight": "uniform"}, seed, mask, report={"note": "test"})


def state_bytes(model):
    return b"".join(p.detach().numpy().tobytes() for p in model.parameters())


def test_regeneration_is_bit_identical():
    t = make_ticket()
    assert state_bytes(t.source()) == state_bytes(t.source())
    # and equal to the model it was made from
    assert state_bytes(t.source()) == state_bytes(models.create("lenet_300_100", init={"weight": "uniform"}, seed=5))


def test_pinned_source_values():
    src = make_ticket().source()
    w = src.layers[1].weight.detach()
    got = [w[0, 0].item(), w[17, 300].item(), w[299, 783].item()]
    assert got == [-0.2902137041091919, 0.6236307621002197, -0.2362830638885498]


def test_network_is_source_times_mask_and_roundtrip(tmp_path):
    t = make_ticket()
    src, net = t.source(), t.network()
    for (n, s), p in zip(src.named_parameters(), net.parameters()):
        assert torch.equal(p, s * t.masks[n])
    path = t.save(tmp_path / "t.ticket")
    back = load_ticket(path)
    assert back.masks.equal(t.masks) and back.seed == 5 and back.report == {"note": "test"}
    x = torch.randn(4, 1, 28, 28)
    assert torch.equal(back.network()(x), net(x))
    rep = back.file_report(path)
    assert rep["bits_per_source_parameter"] < 1.06  # 1 bit per entry + the JSON header (arch, init, checksum)
    assert rep["compression_vs_dense"] > 30


def test_corrupt_truncated_and_wrong_version(tmp_path):
    path = make_ticket().save(tmp_path / "t.ticket")
    raw = path.read_bytes()
    (tmp_path / "cut").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(FileFormatError, match="truncated or corrupt"):
        load_ticket(tmp_path / "cut")
    flipped = bytearray(raw)
    flipped[-5] ^= 0x01
    (tmp_path / "flip").write_bytes(bytes(flipped))
    with pytest.raises(FileFormatError, match="checksum"):
        load_ticket(tmp_path / "flip")
    (tmp_path / "junk").write_bytes(b"\x00" * 64)
    with pytest.raises(FileFormatError):
        load_ticket(tmp_path / "junk")

    def rewrite(name, **changes):
        from lotterylab.io import load_tensors
        tensors, meta = load_tensors(path)
        meta.update(changes)
        save_tensors(tmp_path / name, tensors, meta)
        return tmp_path / name

    with pytest.raises(FileFormatError, match="format version 99"):
        load_ticket(rewrite("v99", format_version=99))
    with pytest.raises(FileFormatError, match="regenerated source"):
        load_ticket(rewrite("seed", seed=6))
    with pytest.raises(FileFormatError, match="expected a 'ticket'"):
        load_ticket(rewrite("kind", kind="mask"))


def test_never_unpickles(tmp_path):
    # a file that is a pickle is rejected as not-safetensors, without executing anything
    import pickle
    (tmp_path / "evil").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(FileFormatError):
        load_ticket(tmp_path / "evil")
