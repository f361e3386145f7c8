"""Growing the source by real neurons when an instance fails, without redrawing a value."""

import torch

import lotterylab as ll
from lotterylab import rng

from targets import trained_mlp


def test_growth_adds_real_neurons_without_redrawing():
    # appending rows / columns keeps every drawn value: the basis of growing the source on failures
    full = rng.uniform_grid(7, 11, (10, 12))
    assert torch.equal(full[:6, :9], rng.uniform_grid(7, 11, (6, 9)))
    assert torch.equal(full[6:, 9:], rng.uniform_grid(7, 11, (4, 3), row_offset=6, col_offset=9))
    target = trained_mlp("relu", widths=(4, 6, 3))
    t = ll.construct(target, mode="2L", eps_param=0.002, seed=0, rho_first=12)  # few candidates: failures
    ss = t.report["subset_sum"]
    assert ss["failed_first_try"] > 0 and ss["neurons_added"] > 0 and ss["unresolved"] == 0
