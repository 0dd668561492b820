"""benchmarks/swd_sensitivity.py: the perturbations and the class-share draws it scores."""

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import swd_sensitivity as sens  # noqa: E402


def images(n=6, seed=0):
    return torch.rand(n, 1, 12, 12, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_blur_is_the_binomial_3x3_kernel_and_keeps_constants():
    x = images()
    kernel = torch.tensor([[1.0, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16
    inner = F.conv2d(x, kernel.view(1, 1, 3, 3))  # no padding: the pixels away from the edge
    torch.testing.assert_close(sens.blur(x)[..., 1:-1, 1:-1], inner)
    flat = torch.full((2, 1, 5, 5), 0.3)
    torch.testing.assert_close(sens.blur(flat), flat)


def test_zoom_by_one_is_the_identity_and_zoom_in_spreads_a_centred_square():
    x = images()
    torch.testing.assert_close(sens.zoom(x, 1.0), x)
    square = torch.full((1, 1, 16, 16), -1.0)
    square[..., 6:10, 6:10] = 1.0
    bigger, smaller = sens.zoom(square, 1.5), sens.zoom(square, 0.75)
    assert (bigger > 0).sum() > (square > 0).sum() > (smaller > 0).sum()
    torch.testing.assert_close(bigger, bigger.flip(-1))  # scaled about the centre
    torch.testing.assert_close(bigger, bigger.flip(-2))


def test_gamma_keeps_black_white_and_order():
    x = torch.linspace(-1, 1, 11)
    for g in (0.8, 1.25):
        y = sens.gamma(x, g)
        assert y[0] == -1 and y[-1] == 1 and (y.diff() > 0).all()
    torch.testing.assert_close(sens.gamma(x, 1.0), x)
    assert (sens.gamma(x[1:-1], 0.8) > x[1:-1]).all()  # gamma below 1 brightens the mid-tones


@pytest.mark.parametrize("n", [100, 97])
def test_with_shares_draws_n_distinct_images_in_the_given_proportions(n):
    labels = torch.arange(3).repeat_interleave(torch.tensor([50, 60, 70]))
    shares = torch.tensor([0.2, 0.3, 0.5])
    picked = sens.with_shares(labels, shares, n, torch.Generator().manual_seed(0))
    assert len(picked) == n == len(set(picked.tolist()))
    counts = torch.bincount(labels[picked], minlength=3)
    assert (counts - shares * n).abs().max() <= 1.5
    with pytest.raises(ValueError, match="class 0 has 50 images, 80 wanted"):
        sens.with_shares(labels, torch.tensor([0.8, 0.1, 0.1]), 100, torch.Generator())


def test_balanced_takes_the_same_count_of_every_class_or_none():
    labels = torch.tensor([0, 1, 1, 2, 0, 2, 1, 0, 2, 2])
    picked = sens.balanced(labels, 3, 3)
    assert torch.equal(torch.bincount(labels[picked]), torch.tensor([3, 3, 3]))
    assert sens.balanced(labels, 4, 3) is None


def test_main_writes_the_three_tables(tmp_path, monkeypatch, capsys):
    """The whole script on a stub dataset (both splits the same 40 images, 4 per class) and two
    stub models: one whose images the stub classifier calls balanced, one missing a class."""
    import json
    g = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (40, 1, 32, 32), generator=g, dtype=torch.uint8)
    labels = torch.arange(10).repeat(4)

    class Data:
        name = "stub"

        def __len__(self):
            return 40

        def __getitem__(self, i):
            return pixels[i].float() / 127.5 - 1, int(labels[i])

        def labels(self):
            return labels

        def images_uint8(self, idx):
            return pixels[idx]

    def extract(model, images, batch_size):
        k = torch.arange(len(images)) % (10 if images[0, 0, 0, 0] >= 0 else 9)
        return None, F.one_hot(k, 10).float()

    rows = [{"name": "test vs train split (floor)", "values": {}},
            {"name": "m `runs/m`", "values": {"classes": dict(zip(sens.CLASSES, [0.1] * 10))}}]
    (tmp_path / "eval.json").write_text(json.dumps(rows))
    monkeypatch.setattr(sens, "open_dataset", lambda *a, **k: Data())
    # model "even" draws images the stub classifier spreads over all classes, "odd" never class 9
    monkeypatch.setattr(sens, "generated", lambda p, n, s: (p.name, torch.ones(n, 1, 32, 32) *
                                                                (1 if p.name == "even" else -1)))
    monkeypatch.setattr(sens, "extract", extract)
    out = tmp_path / "out.json"
    monkeypatch.setattr(sys, "argv", ["swd_sensitivity.py", str(tmp_path / "even"),
                                      str(tmp_path / "odd"), "--num-images", "20",
                                      "--per-class", "2", "--eval", str(tmp_path / "eval.json"),
                                      "--out", str(out)])
    sens.main()
    result = json.loads(out.read_text())
    assert len(result["perturbations"]) == 13
    assert result["perturbations"]["none (the floor)"]["swd_avg"] == 0  # the same 20 images
    assert result["perturbations"]["left-right flip"]["swd_avg"] > 0
    assert list(result["class_mixture"]) == ["m `runs/m`"]  # reference rows are skipped
    assert list(result["rebalanced"]) == [f"even `{tmp_path / 'even'}`"]
    assert result["rebalanced"][f"even `{tmp_path / 'even'}`"]["shares"] == [0.1] * 10
    assert "only 0 images of its rarest class among 40; skipped" in capsys.readouterr().err
    assert result["num_images"] == 20 and result["rebalanced_images"] == 20


def test_haze_lifts_only_the_black_pixels_by_at_most_the_given_levels():
    x = images(n=4, seed=1)
    x[:, :, :6] = -1.0  # a black top half
    hazed = sens.haze(x, 10, torch.Generator().manual_seed(0))
    black = x == -1
    torch.testing.assert_close(hazed[~black], x[~black], rtol=0, atol=0)
    lift = (hazed[black] + 1) * 127.5  # in grey levels
    assert lift.min() >= 0 and lift.max() <= 10 and lift.mean() > 3
