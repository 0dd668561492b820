"""Images out: sample grids, PNG files, GIF and MP4 animations (e.g. latent interpolations).

A grid lays b images out row by row, `nrow` to a row (torchvision's convention), with `padding`
pixels of `pad_value` around and between them; values in [−1, 1] map to pixels by
p = round((x + 1) · 127.5), clamped to [0, 255] (the inverse of `data.to_float`).

Shapes: images (b, c, h, w) with c in {1, 3} -> grid (H, W) or (H, W, 3) uint8, where
H = rows · (h + padding) + padding and W = nrow · (w + padding) + padding.
Every file is written to a temporary name in the target folder and renamed, so a reader (a
browser refreshing grid.png) never sees half an image.
Lesson: lessons/00_reading_this_repo.md
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from PIL import Image

from nanogan.data import to_uint8


def upscale(images: torch.Tensor, factor: int) -> torch.Tensor:
    """Nearest-neighbour upscaling of (b, c, h, w) by an integer factor: each pixel a block."""
    if factor < 1:
        raise ValueError(f"upscale factor must be an integer >= 1, got {factor}")
    return images.repeat_interleave(factor, 2).repeat_interleave(factor, 3) if factor > 1 else images


def make_grid(images: torch.Tensor, nrow: int | None = None, padding: int = 1,
              pad_value: float = -1.0) -> np.ndarray:
    """uint8 (H, W) or (H, W, 3) grid of float (b, c, h, w) images in [-1, 1], nrow per row."""
    if images.ndim != 4 or images.shape[1] not in (1, 3) or len(images) == 0:
        raise ValueError(f"make_grid needs (b, c, h, w) images with b >= 1 and c in (1, 3), got "
                         f"{tuple(images.shape)}")
    b = len(images)
    nrow = nrow or math.ceil(math.sqrt(b))
    if nrow < 1 or padding < 0:
        raise ValueError(f"nrow must be >= 1 and padding >= 0, got {nrow} and {padding}")
    rows = math.ceil(b / nrow)
    x = images.detach().float().cpu()
    x = torch.cat([x, x.new_full((rows * nrow - b, *x.shape[1:]), pad_value)])  # empty cells
    x = F.pad(x, (0, padding, 0, padding), value=pad_value)  # each cell's right and bottom edge
    grid = rearrange(x, "(r k) c h w -> c (r h) (k w)", k=nrow)
    grid = to_uint8(F.pad(grid, (padding, 0, padding, 0), value=pad_value))  # the top-left edge
    return grid[0].numpy() if grid.shape[0] == 1 else rearrange(grid, "c h w -> h w c").numpy()


def save_image(path: str | Path, image: np.ndarray | torch.Tensor) -> None:
    """Write a PNG (or the format the suffix names) atomically, creating parent folders.

    `image` is uint8 (H, W) / (H, W, 3) / (H, W, 4), or a tensor (c, h, w): uint8, or float in
    [-1, 1].
    """
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        image = image if image.dtype == torch.uint8 else to_uint8(image)
        image = image.numpy() if image.ndim == 2 else rearrange(image, "c h w -> h w c").numpy()
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.dtype != np.uint8 or not (image.ndim == 2 or image.shape[2] in (3, 4)):
        raise ValueError(f"save_image needs uint8 (H, W), (H, W, 3) or (H, W, 4), got "
                         f"{image.dtype} {image.shape}")
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower(), "PNG")
    with _atomic(path) as tmp:
        Image.fromarray(image).save(tmp, format=fmt)


def save_grid(path: str | Path, images: torch.Tensor, nrow: int | None = None,
              padding: int = 1) -> np.ndarray:
    """make_grid + save_image; returns the grid."""
    grid = make_grid(images, nrow, padding)
    save_image(path, grid)
    return grid


def save_gif(path: str | Path, frames: Sequence[np.ndarray], fps: int = 24,
             loop: bool = True) -> None:
    """An animated GIF of uint8 frames (H, W) or (H, W, 3) through Pillow.

    GIF stores 256 colours per frame, and Pillow merges identical consecutive frames (adding
    their durations); use save_mp4 for smooth colour.
    """
    images = [Image.fromarray(_frame(f, frames[0])) for f in _nonempty(frames)]
    options = {"loop": 0} if loop else {}  # loop=0 is "forever"; no loop block plays once
    with _atomic(Path(path)) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                       duration=round(1000 / fps), **options)


def has_ffmpeg() -> bool:
    return shutil.which("ffmpeg") is not None


def save_mp4(path: str | Path, frames: Sequence[np.ndarray], fps: int = 24) -> None:
    """An H.264 MP4 of uint8 frames (H, W) or (H, W, 3), piped as raw video to ffmpeg."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RuntimeError("save_mp4 needs ffmpeg on PATH (e.g. `apt-get install ffmpeg`); "
                           "save_gif works without it")
    frames = [_frame(f, frames[0]) for f in _nonempty(frames)]
    h, w = frames[0].shape[:2]
    pixel_format = "gray" if frames[0].ndim == 2 else "rgb24"
    with _atomic(Path(path)) as tmp:
        # yuv420p (what players accept) needs even sizes: pad odd ones by a black pixel.
        command = [ffmpeg, "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", pixel_format,
                   "-s", f"{w}x{h}", "-r", str(fps), "-i", "-",
                   "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-c:v", "libx264",
                   "-pix_fmt", "yuv420p", "-movflags", "+faststart", "-f", "mp4", str(tmp)]
        result = subprocess.run(command, input=b"".join(f.tobytes() for f in frames),
                                capture_output=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"ffmpeg failed writing {path}: "
                               f"{result.stderr.decode(errors='replace')[-2000:]}")


def _nonempty(frames: Sequence[np.ndarray]) -> Sequence[np.ndarray]:
    if len(frames) == 0:
        raise ValueError("no frames to write")
    return frames


def _frame(frame: np.ndarray, first: np.ndarray) -> np.ndarray:
    frame = np.ascontiguousarray(frame)
    if frame.dtype != np.uint8 or frame.ndim not in (2, 3) or frame.shape[2:] not in ((), (3,)):
        raise ValueError(f"frames must be uint8 (H, W) or (H, W, 3), got {frame.dtype} "
                         f"{frame.shape}")
    if frame.shape != np.shape(first):
        raise ValueError(f"all frames must have one shape, got {frame.shape} and "
                         f"{np.shape(first)}")
    return frame


@contextmanager
def _atomic(path: Path) -> Iterator[Path]:
    """A temporary path in path's folder that replaces `path` when the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; images are for everyone to look at
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
