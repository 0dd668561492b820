"""Inception-v3 exactly as FID uses it: the TensorFlow graph of 2015-12-05, ported to PyTorch.

Paper: Szegedy, Vanhoucke, Ioffe, Shlens, Wojna (2016), "Rethinking the Inception Architecture for
Computer Vision", arXiv:1512.00567, §6 and Table 1 (the network); Heusel et al. (2017),
arXiv:1706.08500, §3 (FID on its 2048-d pool features); Salimans et al. (2016), arXiv:1606.03498,
§4 (Inception Score on its class probabilities).

    features = avgpool(Mixed_7c(…Conv2d_1a_3x3(resize₂₉₉(x))))  ∈ ℝ²⁰⁴⁸,   logits = W · features

FID numbers are only comparable when computed with *this* graph, which differs from torchvision's
Inception-v3 in three places (each marked below): the average pools inside the A, C and first E
blocks ignore the zero padding (TensorFlow's SAME pooling), the last E block pools with max
instead of average, and the classifier has 1008 outputs. The logits are `W · features` without
the fc bias, as the Inception Score's original code multiplies pool_3 by the MatMul weight alone.
Weights: pytorch-fid's `pt_inception-2015-12-05-6726825d.pth`; module and key names follow it.

Shapes: x (b, c, h, w) with c in {1, 3}, values in [-1, 1] -> features (b, 2048), logits (b, 1008).
Lesson: lessons/31_features.md
"""

from __future__ import annotations

import os
import pickle
import re
import tempfile
import urllib.request
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

FILENAME = "pt_inception-2015-12-05-6726825d.pth"
URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{FILENAME}"
SIZE = 299


def resize_for_inception(x: torch.Tensor) -> torch.Tensor:
    """(b, 1 or 3, h, w) in [-1, 1] -> (b, 3, 299, 299) in [-1, 1]: grey repeated, bilinear resize.

    The 2015 graph takes pixels scaled to [-1, 1], the range nanogan's images already use, so no
    rescaling happens here (pytorch-fid maps its [0, 1] input with 2x - 1 instead).
    """
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected images (b, 1 or 3, h, w), got {tuple(x.shape)}")
    x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
    if x.shape[2:] != (SIZE, SIZE):
        x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    return x


def tf_avg_pool(x: torch.Tensor) -> torch.Tensor:
    # FID graph: 3×3 average over the *valid* neighbours only (TensorFlow SAME padding).
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class ConvBN(nn.Module):
    """Convolution without bias, batch norm (ε = 0.001), ReLU: every layer of the network."""

    def __init__(self, i: int, o: int, kernel, stride: int = 1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(i, o, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(o, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class BlockA(nn.Module):
    """35×35 block (Mixed_5b–5d): 1×1 | 1×1→5×5 | 1×1→3×3→3×3 | avgpool→1×1."""

    def __init__(self, i: int, pool_features: int):
        super().__init__()
        self.branch1x1 = ConvBN(i, 64, 1)
        self.branch5x5_1, self.branch5x5_2 = ConvBN(i, 48, 1), ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = ConvBN(i, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, padding=1)
        self.branch_pool = ConvBN(i, pool_features, 1)

    def forward(self, x):
        double = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)), double,
                          self.branch_pool(tf_avg_pool(x))], 1)


class BlockB(nn.Module):
    """35→17 reduction (Mixed_6a): 3×3/2 | 1×1→3×3→3×3/2 | maxpool/2."""

    def __init__(self, i: int):
        super().__init__()
        self.branch3x3 = ConvBN(i, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBN(i, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, stride=2)

    def forward(self, x):
        double = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), double, F.max_pool2d(x, 3, stride=2)], 1)


class BlockC(nn.Module):
    """17×17 block (Mixed_6b–6e) with factorised 7×7 convolutions (1×7 then 7×1)."""

    def __init__(self, i: int, c7: int):
        super().__init__()
        row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
        self.branch1x1 = ConvBN(i, 192, 1)
        self.branch7x7_1, self.branch7x7_2 = ConvBN(i, c7, 1), ConvBN(c7, c7, **row)
        self.branch7x7_3 = ConvBN(c7, 192, **col)
        self.branch7x7dbl_1, self.branch7x7dbl_2 = ConvBN(i, c7, 1), ConvBN(c7, c7, **col)
        self.branch7x7dbl_3, self.branch7x7dbl_4 = ConvBN(c7, c7, **row), ConvBN(c7, c7, **col)
        self.branch7x7dbl_5 = ConvBN(c7, 192, **row)
        self.branch_pool = ConvBN(i, 192, 1)

    def forward(self, x):
        single = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        double = x
        for k in range(1, 6):
            double = getattr(self, f"branch7x7dbl_{k}")(double)
        return torch.cat([self.branch1x1(x), single, double, self.branch_pool(tf_avg_pool(x))], 1)


class BlockD(nn.Module):
    """17→8 reduction (Mixed_7a): 1×1→3×3/2 | 1×1→1×7→7×1→3×3/2 | maxpool/2."""

    def __init__(self, i: int):
        super().__init__()
        self.branch3x3_1, self.branch3x3_2 = ConvBN(i, 192, 1), ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = ConvBN(i, 192, 1)
        self.branch7x7x3_2 = ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBN(192, 192, 3, stride=2)

    def forward(self, x):
        tower = x
        for k in range(1, 5):
            tower = getattr(self, f"branch7x7x3_{k}")(tower)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), tower,
                          F.max_pool2d(x, 3, stride=2)], 1)


class BlockE(nn.Module):
    """8×8 block (Mixed_7b, 7c): branches that split into parallel 1×3 and 3×1 convolutions."""

    def __init__(self, i: int, pool: str):
        super().__init__()
        self.pool = pool
        self.branch1x1 = ConvBN(i, 320, 1)
        self.branch3x3_1 = ConvBN(i, 384, 1)
        self.branch3x3_2a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1, self.branch3x3dbl_2 = ConvBN(i, 448, 1), ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = ConvBN(i, 192, 1)

    def forward(self, x):
        a = self.branch3x3_1(x)
        b = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        # FID graph: Mixed_7c pools with max, not average (torchvision's port averages here).
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.pool == "max" else tf_avg_pool(x)
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(a), self.branch3x3_2b(a),
                          self.branch3x3dbl_3a(b), self.branch3x3dbl_3b(b),
                          self.branch_pool(pooled)], 1)


class FIDInceptionV3(nn.Module):
    """The FID Inception network; `forward` returns (2048-d pool features, 1008 logits)."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = ConvBN(80, 192, 3)
        self.Mixed_5b, self.Mixed_5c = BlockA(192, 32), BlockA(256, 64)
        self.Mixed_5d = BlockA(288, 64)
        self.Mixed_6a = BlockB(288)
        self.Mixed_6b, self.Mixed_6c = BlockC(768, 128), BlockC(768, 160)
        self.Mixed_6d, self.Mixed_6e = BlockC(768, 160), BlockC(768, 192)
        self.Mixed_7a = BlockD(768)
        self.Mixed_7b, self.Mixed_7c = BlockE(1280, pool="avg"), BlockE(2048, pool="max")
        self.fc = nn.Linear(2048, 1008)  # 1008 = 1000 ImageNet classes + 8 unused outputs

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = resize_for_inception(x)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(F.max_pool2d(x, 3, stride=2)))
        x = F.max_pool2d(x, 3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(x)
        return features, features @ self.fc.weight.T


def default_path() -> Path:
    """$NANOGAN_INCEPTION if set, else ~/.cache/nanogan/pt_inception-2015-12-05-6726825d.pth."""
    if os.environ.get("NANOGAN_INCEPTION"):
        return Path(os.environ["NANOGAN_INCEPTION"]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "nanogan" / FILENAME


def fetch(url: str, dest: Path) -> None:
    """Download `url` to `dest` through a temporary file in the same folder, then rename."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            while chunk := response.read(1 << 20):
                out.write(chunk)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from a .safetensors file or a .pth read by torch.load(weights_only=True).

    weights_only=True is PyTorch's restricted unpickler: it rebuilds tensors and plain containers
    and refuses any other class or function, so a hostile .pth cannot run code; nanogan never
    calls the full unpickler.
    """
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        reason = re.search(r"WeightsUnpickler error: \s*(.+?)(?: was not|\.?\n|$)", str(err))
        raise ValueError(f"{path} is not the FID Inception weights: the restricted loader "
                         f"torch.load(weights_only=True) refused it "
                         f"({reason.group(1) if reason else type(err).__name__})") from None
    if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ValueError(f"{path} is not the FID Inception weights: it holds a "
                         f"{type(state).__name__}, not a state dict of named tensors")
    return state


def load_inception(path: str | Path | None = None, *, download: bool = False) -> FIDInceptionV3:
    """The FID Inception network with its weights, in eval mode and without gradients.

    `path` (a .pth or .safetensors file) defaults to `default_path()`; with `download=True` a
    missing default file is fetched from pytorch-fid's GitHub release. Keys and shapes must match
    exactly; the BatchNorm step counters (`num_batches_tracked`, unused in eval) may be absent.
    """
    path = Path(path).expanduser() if path is not None else default_path()
    if not path.is_file():
        if not download:
            raise FileNotFoundError(
                f"no FID Inception weights at {path}. Download {URL} and save it there "
                f"(or point $NANOGAN_INCEPTION at it), or call load_inception(download=True)")
        fetch(URL, path)
    model = FIDInceptionV3()
    expected = model.state_dict()
    state = read_state_dict(path)
    optional = {k for k in expected if k.endswith("num_batches_tracked")}
    missing = sorted(set(expected) - set(state) - optional)
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
                   if k in state and state[k].shape != v.shape)
    problems = [f"{label} ({len(keys)}): {', '.join(keys[:4])}{', ...' if len(keys) > 4 else ''}"
                for label, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                                    ("wrong shapes", wrong)) if keys]
    if problems:
        raise ValueError(f"{path} is not the FID Inception weights ({FILENAME}): "
                         + "; ".join(problems))
    model.load_state_dict({**{k: expected[k] for k in optional}, **state}, strict=True)
    return model.eval().requires_grad_(False)
