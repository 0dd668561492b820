"""Image grids against a pixel-by-pixel reference; PNG, GIF and MP4 files read back."""

import math
import os
import shutil
import subprocess

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from strategies import generator, seeds

from nanogan import images as images_module
from nanogan.images import has_ffmpeg, make_grid, save_gif, save_grid, save_image, save_mp4


def reference_grid(x, nrow, padding, pad_value):
    """Start from a canvas of pad_value; copy image i to row i // nrow, column i % nrow."""
    b, c, h, w = x.shape
    rows = math.ceil(b / nrow)
    canvas = np.full((rows * (h + padding) + padding, nrow * (w + padding) + padding, c),
                     pad_value, dtype=np.float64)
    for i in range(b):
        top = padding + (i // nrow) * (h + padding)
        left = padding + (i % nrow) * (w + padding)
        for y in range(h):
            for xx in range(w):
                canvas[top + y, left + xx] = x[i, :, y, xx].double().numpy()
    pixels = np.clip(np.floor((canvas + 1) * 127.5 + 0.5), 0, 255).astype(np.uint8)
    return pixels[..., 0] if c == 1 else pixels


@given(seed=seeds, b=st.integers(1, 7), c=st.sampled_from([1, 3]), h=st.integers(1, 4),
       w=st.integers(1, 4), nrow=st.none() | st.integers(1, 4), padding=st.integers(0, 2),
       pad_value=st.sampled_from([-1.0, 0.5, 1.0]))
def test_matches_reference(seed, b, c, h, w, nrow, padding, pad_value):
    # values on the uint8 lattice so round-half cases cannot differ between implementations
    x = torch.randint(0, 256, (b, c, h, w), generator=generator(seed)).float() / 127.5 - 1
    expected = reference_grid(x, nrow or math.ceil(math.sqrt(b)), padding, pad_value)
    np.testing.assert_array_equal(make_grid(x, nrow, padding, pad_value), expected)


def test_each_image_lands_in_its_cell():
    """Image i fills row i // nrow, column i % nrow; padding and empty cells are pad_value."""
    pixels = (10, 60, 128, 200, 250)
    x = torch.stack([torch.full((3, 2, 3), p / 127.5 - 1) for p in pixels])
    grid = make_grid(x, nrow=2, padding=1, pad_value=1.0)
    assert grid.shape == (3 * 3 + 1, 2 * 4 + 1, 3)
    expected = np.full(grid.shape, 255, np.uint8)
    for i in range(5):
        r, k = divmod(i, 2)
        expected[1 + 3 * r : 3 + 3 * r, 1 + 4 * k : 4 + 4 * k] = pixels[i]
    np.testing.assert_array_equal(grid, expected)
    assert make_grid(x).shape == (2 * 3 + 1, 3 * 4 + 1, 3)  # nrow = ceil(sqrt(5)) = 3


def test_value_mapping():
    """−1 maps to 0, 1 to 255, and values outside [−1, 1] are clamped."""
    x = torch.tensor([-1.0, 1.0, -2.0, 2.0, 0.0]).view(5, 1, 1, 1)
    grid = make_grid(x, nrow=5, padding=0)
    assert grid.dtype == np.uint8 and grid.tolist() == [[0, 255, 0, 255, 128]]


def test_png_round_trip(tmp_path):
    """What save_grid returns is what Pillow reads back from the file, for grey and colour."""
    for c in (1, 3):
        x = torch.rand(5, c, 4, 6, generator=generator(c)) * 2 - 1
        path = tmp_path / "deep" / "folder" / f"grid{c}.png"
        grid = save_grid(path, x, nrow=3)
        with Image.open(path) as image:
            assert image.format == "PNG" and image.mode == ("L" if c == 1 else "RGB")
            np.testing.assert_array_equal(np.asarray(image), grid)
    single = torch.rand(3, 4, 5, generator=generator(9)) * 2 - 1
    save_image(tmp_path / "one.png", single)
    with Image.open(tmp_path / "one.png") as image:
        np.testing.assert_array_equal(np.asarray(image), make_grid(single[None], padding=0))
    assert not [p for p in tmp_path.rglob(".*")]  # no temporary files left behind


def test_gif_frames(tmp_path):
    frames = [np.full((6, 8, 3), 40 * i, np.uint8) for i in range(5)]
    save_gif(tmp_path / "a.gif", frames, fps=10)
    with Image.open(tmp_path / "a.gif") as gif:
        assert gif.n_frames == 5 and gif.size == (8, 6)
        assert gif.info["duration"] == 100 and gif.info["loop"] == 0
        for i in range(5):
            gif.seek(i)
            assert np.asarray(gif.convert("RGB"))[0, 0].tolist() == [40 * i] * 3
    save_gif(tmp_path / "once.gif", [f[..., 0] for f in frames], loop=False)
    with Image.open(tmp_path / "once.gif") as gif:
        assert gif.n_frames == 5 and "loop" not in gif.info
    with pytest.raises(ValueError, match="one shape"):
        save_gif(tmp_path / "b.gif", [frames[0], frames[0][:2]])


@pytest.mark.skipif(not has_ffmpeg(), reason="ffmpeg is not installed")
def test_mp4(tmp_path):
    frames = [np.full((7, 9, 3), 25 * i, np.uint8) for i in range(6)]  # odd sizes get padded
    save_mp4(tmp_path / "a.mp4", frames, fps=12)
    data = (tmp_path / "a.mp4").read_bytes()
    assert data[4:8] == b"ftyp" and b"avc1" in data
    if shutil.which("ffprobe"):
        probe = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
                                "-show_entries", "stream=nb_read_frames,width,height",
                                "-of", "csv=p=0", str(tmp_path / "a.mp4")],
                               capture_output=True, text=True, check=True)
        assert probe.stdout.split() == ["10,8,6"]  # padded to even sizes, every frame kept


def test_mp4_without_ffmpeg_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(images_module.shutil, "which", lambda name: None)
    assert not has_ffmpeg()
    with pytest.raises(RuntimeError, match="needs ffmpeg on PATH"):
        save_mp4(tmp_path / "a.mp4", [np.zeros((4, 4), np.uint8)])
    assert not os.path.exists(tmp_path / "a.mp4")


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="c in"):
        make_grid(torch.zeros(2, 2, 4, 4))
    with pytest.raises(ValueError, match="uint8"):
        save_image("x.png", np.zeros((4, 4), np.float32))
