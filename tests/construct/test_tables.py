"""Candidate values: the compiled gather equals the tensor passes bit for bit."""

import pytest
import torch

import lotterylab as ll
from lotterylab.construct import tables
from lotterylab.construct.source import RandomSource

from targets import trained_mlp


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


@pytest.mark.parametrize("act,mode", [("relu", "L+1"), ("relu", "2L"), ("gelu", "L+1")])
def test_tables_extended_after_growth_equal_a_fresh_build(act, mode, monkeypatch):
    """Every table the engine hands out during a growing construction (extended where growth added
    candidates) equals one built afresh from the same lists."""
    from lotterylab.construct import engine as engine_mod
    from lotterylab.construct.tables import candidate_tables

    checked = {"extended": 0, "calls": 0}
    real_extend = engine_mod.extend_tables

    def counting_extend(*a, **k):
        checked["extended"] += 1
        return real_extend(*a, **k)

    real_tables = engine_mod.Engine.tables

    def checked_tables(self, P, product, limit=engine_mod.subsetsum.MAX_N):
        got = real_tables(self, P, product, limit)
        want = candidate_tables(P, product, self.first, limit)
        checked["calls"] += 1
        for g, w in zip(got, want):
            assert g.shape == w.shape and torch.equal(g, w)
        return got

    monkeypatch.setattr(engine_mod, "extend_tables", counting_extend)
    monkeypatch.setattr(engine_mod.Engine, "tables", checked_tables)
    target = trained_mlp(act, steps=5)
    ll.construct(target, mode=mode, eps_param=0.002, rho=4, rho_first=6, seed=0)
    assert checked["extended"] > 0 and checked["calls"] > checked["extended"]
