"""A seeded sample of the file mutation harness (lotterylab.fuzz): no mutated ticket, mask,
checkpoint or weights file loads silently changed, raises anything but FileFormatError, or hangs.
The full run (benchmarks/fuzz_files.py) has its counts in docs/reliability.md."""

from lotterylab import fuzz


def test_mutated_files_load_identically_or_fail_clearly(tmp_path):
    res = fuzz.run(420, seed=11, folder=tmp_path)
    totals: dict = {}
    for per in res["counts"].values():
        for outcome, c in per.items():
            totals[outcome] = totals.get(outcome, 0) + c
    assert sum(totals.values()) == 420
    assert res["failures"] == [], res["failures"][:3]
    assert totals.get("clear_error", 0) > 300  # the mutations do hit: most are refused, none slip through
    for key, per in res["counts"].items():
        if not key.split("/")[1].startswith("resigned"):
            assert set(per) <= {"clear_error", "identical"}, (key, per)


def test_fifos_devices_and_oversized_files_are_refused_without_reading(tmp_path, capsys):
    import os

    import pytest

    from lotterylab import load_ticket
    from lotterylab.cli import main
    from lotterylab.io import FileFormatError

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in (fifo, "/dev/zero", tmp_path):
        with pytest.raises(FileFormatError, match="not a regular file"):
            load_ticket(path)
    assert main(["info", str(fifo)]) == 2 and main(["info", "/dev/zero"]) == 2
    assert "not a regular file" in capsys.readouterr().err
    big = tmp_path / "big.safetensors"
    big.write_bytes((10**9).to_bytes(8, "little") + b"{}")  # claims a 1 GB header
    with pytest.raises(FileFormatError, match="header length"):
        load_ticket(big)


def test_same_content_gives_the_same_file_bytes(tmp_path):
    # safetensors keeps metadata in a hash map whose order varies per call; the writer fixes it
    import torch

    from lotterylab.io import load_tensors, save_tensors

    tensors = {"b": torch.ones(3), "a": torch.arange(5.0)}
    files = set()
    for i in range(24):
        save_tensors(tmp_path / f"{i}.st", tensors, {"kind": "x"})
        files.add((tmp_path / f"{i}.st").read_bytes())
        assert load_tensors(tmp_path / f"{i}.st", "x")[1]["kind"] == "x"
    assert len(files) == 1
