"""The planted study: every finder on plants of two families, the references as ground truth, resume
without recomputation, the same numbers on a process pool, a regression variant, bad grids refused."""


import pytest
import torch

from lotterylab.planted_study import FINDERS, PlantedStudyConfig, run_planted_study

TINY = dict(width=4, target_budget="10it", budget="3it", batch_size=10, imp_rounds=2)


def _spec(root):
    return {"name": "fashion-mnist", "root": str(root), "verify": False, "val_size": 10}


def _numbers(rows):
    """A cell's numbers without its timings."""
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def test_every_finder_on_two_families_with_the_plant_as_ground_truth(fashion_fixture_dir, tmp_path):
    torch.set_num_threads(1)
    cfg = PlantedStudyConfig(families="2L,L+1", activations="relu", density_factors="1,3", **TINY)
    out = tmp_path / "study"
    res = run_planted_study(_spec(fashion_fixture_dir), cfg, out=out, log=lambda line: None)
    rows = {(r["family"], r["finder"], r["factor"]): r for r in res["rows"]}
    assert len(rows) == 2 * (2 + 2 * len(FINDERS))
    for fam in ("2L", "L+1"):
        prob = res["problems"][f"{fam}_relu"]
        pd = prob["planted_density"]
        planted, dense = rows[(fam, "planted", None)], rows[(fam, "dense", None)]
        # the plant itself: every planted weight kept and nothing else; untrained it is the teacher
        assert planted["precision"] == planted["recall"] == 1.0
        assert planted["untrained"]["accuracy"] == 1.0 and planted["untrained"]["reaches"]
        # the dense source keeps everything: recall 1, precision = the planted share of the weights
        assert dense["recall"] == 1.0 and dense["precision"] == pytest.approx(pd)
        assert planted["found_density"] == pytest.approx(pd)
        for finder in FINDERS:
            for k in (1.0, 3.0):
                r = rows[(fam, finder, k)]
                assert r["density"] == pytest.approx(min(1.0, k * pd))
                assert r["found_density"] == pytest.approx(r["density"], rel=0.1, abs=2e-3), (finder, k)
                assert 0.0 <= r["precision"] <= 1.0 and 0.0 <= r["recall"] <= 1.0
                assert ("trained" in r) == (finder != "edge_popup")  # edge-popup's weights stay frozen
    for name in ("table.csv", "table.md", "planted_recall.png", "planted_score.png", "study.json"):
        assert (out / name).exists(), name
    assert (out / "table.csv").read_text().count("\n") == len(res["rows"]) + 1
    assert set(res["first_reaching"]) == {"2L_relu", "L+1_relu"}
    assert res["first_reaching"]["2L_relu"]["planted"] == pytest.approx(res["problems"]["2L_relu"]["planted_density"])

    # a rerun recomputes nothing and returns the same numbers
    stamps = {p: p.stat().st_mtime_ns for p in (out / "cells").rglob("*.json")}
    again = run_planted_study(_spec(fashion_fixture_dir), cfg, out=out, log=lambda line: None)
    assert {p: p.stat().st_mtime_ns for p in (out / "cells").rglob("*.json")} == stamps
    assert _numbers(again["rows"]) == _numbers(res["rows"])
    # another tolerance reuses the cells but judges them again: with tol 1 every classifier "reaches"
    loose = run_planted_study(_spec(fashion_fixture_dir), PlantedStudyConfig(**{**cfg.__dict__, "tol": 1.0}),
                              out=out, log=lambda line: None)
    assert {p: p.stat().st_mtime_ns for p in (out / "cells").rglob("*.json")} == stamps
    assert all(r["untrained"]["reaches"] for r in loose["rows"])
    assert all(d == pytest.approx(min(1.0, 1.0 * res["problems"][p]["planted_density"])) or f in ("planted", "dense")
               for p, fs in loose["first_reaching"].items() for f, d in fs.items())
    assert (out / "table.json").exists()
    # cells computed under other settings are refused, not returned as this study's
    with pytest.raises(ValueError, match="other settings"):
        run_planted_study(_spec(fashion_fixture_dir), PlantedStudyConfig(**{**cfg.__dict__, "budget": "4it"}),
                          out=out, log=lambda line: None)
    assert {p: p.stat().st_mtime_ns for p in (out / "cells").rglob("*.json")} == stamps


def test_a_process_pool_gives_the_numbers_of_one_process(fashion_fixture_dir, tmp_path):
    torch.set_num_threads(1)
    cfg = PlantedStudyConfig(families="2L", activations="relu", finders="imp,snip,edge_popup", density_factors="2",
                             **TINY)
    serial = run_planted_study(_spec(fashion_fixture_dir), cfg, out=tmp_path / "a", log=lambda line: None)
    pool = run_planted_study(_spec(fashion_fixture_dir), cfg, out=tmp_path / "b", executor="processes", workers=2,
                             log=lambda line: None)
    assert _numbers(pool["rows"]) == _numbers(serial["rows"])
    assert pool["executor"]["executor"] == "processes"


def test_the_regression_variant_scores_squared_error(fashion_fixture_dir, tmp_path):
    torch.set_num_threads(1)
    cfg = PlantedStudyConfig(families="2L", activations="tanh", finders="snip,grasp", density_factors="2",
                             task="regression", **TINY)
    res = run_planted_study(_spec(fashion_fixture_dir), cfg, out=tmp_path / "r", log=lambda line: None)
    rows = {r["finder"]: r for r in res["rows"]}
    assert rows["planted"]["untrained"]["relative_loss"] == 0.0 and rows["planted"]["untrained"]["reaches"]
    for f in ("snip", "grasp", "dense"):
        assert rows[f]["trained"]["accuracy"] is None  # a regression task has no accuracy (NaN, written as null)
        assert rows[f]["trained"]["relative_loss"] > 0.0
    assert (tmp_path / "r" / "planted_score.png").exists()


@pytest.mark.parametrize("bad, needle", [
    (dict(finders="snip,bogus"), "bogus"),
    (dict(families="3L"), "families"),
    (dict(activations="swish2"), "activations"),
    (dict(density_factors="1,-2"), "positive"),
    (dict(density_factors="a"), "numbers"),
    (dict(imp_rewind="later"), "rewind"),
])
def test_a_bad_grid_is_refused_before_any_work(bad, needle, tmp_path):
    out = tmp_path / "never"
    with pytest.raises(ValueError, match=needle):
        run_planted_study({"name": "mnist"}, PlantedStudyConfig(**bad), out=out)
    assert not out.exists()
