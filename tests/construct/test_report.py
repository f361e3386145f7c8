"""The ticket a construction reports: files written before the construct/ package (lotterylab 0.2.0,
tests/fixtures) still load, regenerate the same source (stored streams and parameter names), and the
same construction today gives the same mask and report figures."""

from pathlib import Path

import pytest
import torch

import lotterylab as ll

from targets import SHAPE, small_cnn, trained_mlp

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CASES = {"ticket-0.2-mlp-2L.safetensors": lambda: ll.construct(trained_mlp("relu", steps=30), mode="2L",
                                                               eps_param=0.02, seed=3),
         "ticket-0.2-cnn-L+1.safetensors": lambda: ll.construct(small_cnn("relu", steps=5), mode="L+1",
                                                                eps_param=0.05, seed=4, domain=(0.0, 1.0),
                                                                input_shape=SHAPE)}


@pytest.mark.parametrize("name", list(CASES))
def test_tickets_written_before_the_move_load_and_match(name):
    old = ll.load_ticket(FIXTURES / name)  # checks the stored hash of the regenerated source
    new = CASES[name]()
    assert old.arch == new.arch and old.init == new.init and old.seed == new.seed
    assert set(old.masks) == set(new.masks)
    assert all(torch.equal(old.masks[n], new.masks[n]) for n in new.masks)
    for a, b in zip(old.source().state_dict().values(), new.source().state_dict().values()):
        assert torch.equal(a, b)
    # (target_nonzero counts the module the report was made from; where the work ran, the sampled
    # check, the pure-pruning flag and the first layer's scale and matched orders were added later)
    drop = ("timings_s", "parameters", "executor", "sampled_error", "calibration_check", "far_from_target",
            "pure_pruning", "first_layer_s1", "matched_orders", "float32_check")
    assert {k: v for k, v in old.report.items() if k not in drop} == \
        {k: v for k, v in new.report.items() if k not in drop}
    assert old.report["parameters"]["ticket"] == new.report["parameters"]["ticket"]
