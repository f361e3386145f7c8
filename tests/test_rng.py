import struct

import pytest
import torch

from lotterylab import rng


def f32_bits(values) -> list[int]:
    return [struct.unpack("<I", struct.pack("<f", float(v)))[0] for v in values]


def test_pinned_values():
    # A change of the generator changes these; tickets saved before it would regenerate other weights.
    assert rng.random_bits(0, 0, 4).tolist() == [1106122415, 1571432977, 4046466928, 974113976]
    assert rng.random_bits(12345, rng.stream_id("fc.weight"), 3, offset=2**33).tolist() == [4294021347, 3143550321, 1211398422]
    assert rng.stream_id("layers.1.weight") == 3719529875
    s = rng.stream_id("layers.1.weight")
    assert f32_bits(rng.uniform(7, s, (4,))) == f32_bits([0.9466774463653564, 0.6773604154586792,
                                                          0.5120010375976562, -0.6096291542053223])
    assert f32_bits(rng.normal(7, s, (4,))) == f32_bits([-0.16268500685691833, -0.5579810738563538,
                                                         0.3783547878265381, -0.36715272068977356])


def test_offsets_address_the_same_sequence():
    full = rng.random_bits(3, 9, 1000)
    part = rng.random_bits(3, 9, 100, offset=500)
    assert torch.equal(full[500:600], part)


def test_streams_and_seeds_differ():
    a, b, c = rng.random_bits(1, 1, 1000), rng.random_bits(1, 2, 1000), rng.random_bits(2, 1, 1000)
    assert (a == b).float().mean() < 0.01 and (a == c).float().mean() < 0.01


def test_bad_seed():
    with pytest.raises(ValueError, match="seed"):
        rng.random_bits(-1, 0, 3)


def test_uniform_statistics():
    u = rng.uniform(0, 5, (200_000,), -1.0, 1.0)
    assert u.min() >= -1.0 and u.max() < 1.0
    assert abs(float(u.mean())) < 0.01
    assert abs(float(u.var()) - 1 / 3) < 0.01
    # neighbouring counters are uncorrelated
    assert abs(float(torch.corrcoef(torch.stack([u[:-1], u[1:]]))[0, 1])) < 0.01
    hist = torch.histc(u, bins=20, min=-1, max=1)
    assert float((hist / hist.mean() - 1).abs().max()) < 0.05


def test_normal_statistics():
    z = rng.normal(0, 6, (200_000,), 0.0, 2.0).double()
    assert abs(float(z.mean())) < 0.02
    assert abs(float(z.std()) - 2.0) < 0.02
    frac = float((z.abs() > 2 * 1.959964).double().mean())
    assert abs(frac - 0.05) < 0.003
    skew = float(((z - z.mean()) ** 3).mean() / z.std() ** 3)
    kurt = float(((z - z.mean()) ** 4).mean() / z.std() ** 4)
    assert abs(skew) < 0.03 and abs(kurt - 3) < 0.06


def test_libm_free_functions_are_accurate():
    u = torch.linspace(1e-9, 1.0, 10_001, dtype=torch.float64)
    assert float((rng._log_unit(u) - torch.log(u)).abs().max()) < 1e-13
    v = torch.linspace(0, 1, 10_001, dtype=torch.float64)[:-1]
    assert float((rng._cos_2pi(v) - torch.cos(2 * torch.pi * v)).abs().max()) < 1e-13


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_gives_identical_bits():
    s = rng.stream_id("w")
    for fn in (rng.uniform, rng.normal):
        cpu = fn(11, s, (10_000,))
        gpu = fn(11, s, (10_000,), device="cuda").cpu()
        assert torch.equal(cpu, gpu)


def test_compiled_cpu_path_gives_the_reference_bits():
    from lotterylab import rng

    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, 2**62, (50_000,), generator=g, dtype=torch.int64)
    idx[:6] = torch.tensor([0, 1, 2**32 - 1, 2**32, 2**62 - 1, 7 * 2**24 + 3])
    k0, k1 = rng._keys(11, rng.stream_id("layers.3.weight"))
    assert torch.equal(rng.bits_at(11, rng.stream_id("layers.3.weight"), idx), rng._bits_at_torch(k0, k1, idx))


def test_compiled_uniform_grid_gives_the_reference_floats():
    from lotterylab import rng

    for seed, stream, shape, lo, hi, r0, c0 in [(0, 5, (300, 500), -0.3, 0.3, 0, 0),
                                               (2**40 + 3, 2**31 + 5, (7, 9000), -0.01, 0.05, 12345, 2**23)]:
        got = rng.uniform_grid(seed, stream, shape, lo, hi, row_offset=r0, col_offset=c0)
        idx = torch.arange(r0, r0 + shape[0]).view(-1, 1) * rng.GRID_STRIDE + torch.arange(c0, c0 + shape[1])
        bits = rng._bits_at_torch(*rng._keys(seed, stream), idx)
        assert torch.equal(got, (bits >> 8).to(torch.float32) * (2.0**-24) * (hi - lo) + lo)
