"""Scores to masks: densities per layer, top-k against sorting, collapse checks."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lotterylab.find.scores import layer_densities, mask_from_scores


def test_layer_densities_match_overall_density():
    shapes = {"a": torch.Size([64, 3, 3, 3]), "b": torch.Size([128, 64, 3, 3]), "c": torch.Size([10, 128])}
    total = sum(math.prod(s) for s in shapes.values())
    for scheme in ("uniform", "er", "erk"):
        for d in (0.5, 0.1, 0.01):
            dens = layer_densities(shapes, d, scheme)
            kept = sum(dens[n] * math.prod(s) for n, s in shapes.items())
            assert kept / total == pytest.approx(d, rel=1e-9)
            assert all(0 < v <= 1 for v in dens.values())
    erk = layer_densities(shapes, 0.1, "erk")
    assert erk["a"] > erk["b"]  # small layers keep more, the point of ER/ERK


def test_mask_from_scores_keeps_top_and_respects_current():
    s = {"w": torch.arange(10.0)}
    m = mask_from_scores(s, 0.3, "global")
    assert m["w"].tolist() == [False] * 7 + [True] * 3
    cur = {"w": torch.tensor([True] * 8 + [False] * 2)}
    m2 = mask_from_scores(s, 0.3, "global", cur)
    assert m2["w"].nonzero().flatten().tolist() == [5, 6, 7]  # pruned entries never come back


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(1, 40), min_size=1, max_size=4), density=st.floats(0.0, 1.0),
       seed=st.integers(0, 2**16), scope=st.sampled_from(["global", "layerwise"]))
def test_mask_from_scores_against_sorting(sizes, density, seed, scope):
    g = torch.Generator().manual_seed(seed)
    scores = {f"l{i}": torch.randint(0, 5, (n,), generator=g).float() for i, n in enumerate(sizes)}  # many ties
    mask = mask_from_scores(scores, density, scope)
    groups = [list(scores)] if scope == "global" else [[n] for n in scores]
    for names in groups:
        s = torch.cat([scores[n] for n in names])
        m = torch.cat([mask[n] for n in names])
        assert int(m.sum()) == round(density * s.numel())
        if m.any() and (~m).any():
            assert s[m].min() >= s[~m].max()  # nothing kept scores below anything pruned
