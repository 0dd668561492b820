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
    main("--no-references", "--seed", "3", "--out", str(out), "c.safetensors")
    (model_row,) = json.loads(out.read_text())  # model rows record how their latents were drawn
    assert "batch_generator(3, j)" in model_row["latents"]
    out.write_text("{not json")
    scored.clear()
    with pytest.raises(json.JSONDecodeError):
        main("--append", "--out", str(out), "d.safetensors")
    assert scored == []  # refused before any row was scored


def test_generated_latents_are_not_the_weights_of_a_model_trained_with_the_same_seed(monkeypatch):
    """The trainer initialises weights under torch.manual_seed(seed) (trainer.py); latents drawn
    from torch.Generator().manual_seed(seed) would repeat that stream: for StyleGAN2, the rows of
    the mapping network's first layer. The table's latents for --seed 0 must not be those."""
    import dataclasses

    from nanogan import models, stylegan2
    cfg = dataclasses.replace(stylegan2.PRESETS["tiny"], resolution=8, z_dim=16, w_dim=16,
                              mapping_layers=2, channel_base=64, channel_max=8)
    torch.manual_seed(0)  # as train.py does for --seed 0
    G = stylegan2.Generator(cfg)
    first = G.mapping.layers[0].weight.detach()
    assert first.shape == (16, 16)
    reused = torch.randn(16, 16, generator=torch.Generator().manual_seed(0))
    cos = torch.nn.functional.cosine_similarity
    assert cos(reused, first, dim=1).min() > 0.999  # the collision the table must avoid
    spec = models.MODELS["stylegan2"]
    monkeypatch.setattr(et.models, "load_generator", lambda path: (spec, cfg, G))
    monkeypatch.setattr(et.models, "random_sampler",
                        lambda spec, G, cfg: lambda b, g: torch.randn(b, cfg.z_dim, generator=g))
    _, z = et.generated(Path("m"), 40, seed=0, batch=16)
    assert z.shape == (40, 16)
    assert cos(z[:16], first, dim=1).abs().max() < 0.9
    assert not torch.equal(z[:16], z[16:32])  # each batch its own stream
    _, again = et.generated(Path("m"), 40, seed=0, batch=16)
    assert torch.equal(z, again)
