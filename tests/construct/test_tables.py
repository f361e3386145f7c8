"""Candidate values: the compiled gather equals the tensor passes bit for bit."""

import torch

from lotterylab.construct import tables
from lotterylab.construct.source import RandomSource


def test_compiled_candidate_values_equal_the_tensor_path(monkeypatch):
    g = torch.Generator().manual_seed(0)
    src = RandomSource(7, "cpu")
    src.add_layer(40, 12, 1.0, 0.1, "relu")
    C = src.add_layer(30, 40, 0.5, 0.1, None, taps=9)
    U, S, n = 12, 2, 7
    col = torch.randint(0, 40, (U, S, n), generator=g)
    valid = torch.rand(U, S, n, generator=g) < 0.7
    coef = torch.randn(U, S, n, generator=g, dtype=torch.float64)
    rows = torch.randint(0, 30, (500,), generator=g)
    units = torch.randint(0, U, (500,), generator=g)
    got = tables.candidate_values(C, rows, units, col, valid, coef)
    monkeypatch.setattr(tables, "HAVE_NUMBA", False)
    ref = tables.candidate_values(C, rows, units, col, valid, coef)
    assert got.shape == (500, 9, S, n) and got.dtype == torch.float64
    assert torch.equal(got, ref) and torch.equal(got.signbit(), ref.signbit())
    assert (got[~valid[units].unsqueeze(1).expand_as(got)] == 0).all()
