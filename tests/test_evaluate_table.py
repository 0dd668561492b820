"""benchmarks/evaluate_table.py: merging re-scored rows into an existing table."""

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import evaluate_table as et  # noqa: E402
from benchmarks.evaluate_table import merge  # noqa: E402


def test_merge_replaces_rows_of_the_same_name_in_place_and_appends_new_ones():
    """A model scored again replaces its row where it stood; a new model goes at the end; the
    rows the new scoring does not touch stay as they were, in their order."""
    old = [{"name": "floor", "v": 1}, {"name": "biggan", "v": 2}, {"name": "progan", "v": 3}]
    new = [{"name": "biggan", "v": 20}, {"name": "stylegan2", "v": 4}]
    assert merge(old, new) == [{"name": "floor", "v": 1}, {"name": "biggan", "v": 20},
                               {"name": "progan", "v": 3}, {"name": "stylegan2", "v": 4}]
    assert old[1] == {"name": "biggan", "v": 2}  # the input list is not modified


def test_merge_of_the_same_rows_twice_keeps_one_of_each():
    """Appending the references again (no --no-references) must not duplicate them."""
    rows = [{"name": "floor", "v": 1}, {"name": "control", "v": 2}]
    again = [{"name": "floor", "v": 1.5}, {"name": "control", "v": 2.5}]
    assert merge(merge(rows, again), again) == again
    assert merge([], rows) == rows


def test_main_overwrites_or_merges_into_out(tmp_path, monkeypatch, capsys):
    """Without --append --out is replaced by the new rows; with --append (the file existing or
    not) the new rows are merged in; a broken --out is refused before any scoring."""
    scored = []

    def fake_row(name, images, reals, split, dataset, seed):
        scored.append(name)
        return {"name": name, "values": {"swd": {"swd_avg": 1.0}, "fid": 2.0,
                                         "kid": {"mean": 0.0}, "pr": {"precision": 1.0,
                                                                      "recall": 1.0},
                                         "dc": {"coverage": 1.0},
                                         "pixels_pr": {"recall": 1.0},
                                         "pixels_dc": {"coverage": 1.0}, "msssim": 0.5,
                                         "classes": {"a": 1.0}}}

    class Data:
        name = "fake"

    monkeypatch.setattr(et, "open_dataset", lambda *a, **k: Data())
    monkeypatch.setattr(et, "pick_real_images", lambda data, n: torch.zeros(n, 1, 32, 32))
    monkeypatch.setattr(et, "generated", lambda path, n, seed: ("m", torch.zeros(n, 1, 32, 32)))
    monkeypatch.setattr(et, "row", fake_row)

    def main(*args):
        monkeypatch.setattr(sys, "argv", ["evaluate_table.py", "--num-images", "2", *args])
        et.main()
        return [r["name"] for r in json.loads(out.read_text())]

    out = tmp_path / "new" / "eval.json"
    refs = ["test vs train split (floor)", "train split, 3×3 box blur (control)",
            "uniform noise (ceiling)"]
    assert main("--append", "--out", str(out), "a.safetensors") == refs + ["m `a.safetensors`"]
    assert main("--append", "--no-references", "--out", str(out), "b.safetensors",
                "a.safetensors") == refs + ["m `a.safetensors`", "m `b.safetensors`"]
    assert main("--append", "--out", str(out)) == refs + ["m `a.safetensors`",
                                                          "m `b.safetensors`"]
    assert main("--no-references", "--out", str(out), "c.safetensors") == ["m `c.safetensors`"]
    assert "m `c.safetensors`" in capsys.readouterr().out
    out.write_text("{not json")
    scored.clear()
    with pytest.raises(json.JSONDecodeError):
        main("--append", "--out", str(out), "d.safetensors")
    assert scored == []  # refused before any row was scored
