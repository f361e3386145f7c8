"""The literature's figures are written as PNG files."""

import torch

from lotterylab import plots


def test_plots_write_png(tmp_path):
    p = plots.accuracy_vs_density({"a": [(1.0, [0.9, 0.91]), (0.1, 0.85)]}, tmp_path / "acc.png")
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    p = plots.mask_distance_matrix(torch.rand(4, 4), tmp_path / "eb.png", labels=list("abcd"))
    assert p.stat().st_size > 1000
