"""A small Fashion-MNIST classifier whose penultimate layer is the default feature space.

Paper: Heusel, Ramsauer, Unterthiner, Nessler, Hochreiter (2017), "GANs Trained by a Two
Time-Scale Update Rule Converge to a Local Nash Equilibrium", arXiv:1706.08500, §3 (FID):
embed images with a network trained on the data's own domain and compare the embeddings'
Gaussians. FID uses Inception-v3 trained on ImageNet; for 32×32 grey clothes a classifier trained
on Fashion-MNIST itself gives features that see what matters there, and it works offline.

    φ(x) = ReLU(W₂ · flatten(stage₃(stage₂(stage₁(x)))) + b₂),   p(y | x) = softmax(W₁ φ(x) + b₁)

with stageₖ = conv3×3 → batch norm → ReLU → max-pool 2×2. Scores computed from these features
are comparable only with scores from the same weights: `load_classifier` reads the file shipped
in `nanogan/weights/`, whose metadata records how it was trained and its test accuracy.

Shapes: x (b, c, 32, 32) with c in {1, 3}, values in [-1, 1] -> features (b, d), logits (b, k).
Lesson: lessons/31_features.md
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import reduce
from torch import nn

WEIGHTS = Path(__file__).resolve().parent / "weights" / "fashion_classifier.safetensors"


def pad_to_32(images: torch.Tensor) -> torch.Tensor:
    """uint8 (b, 28, 28) Fashion-MNIST -> float (b, 1, 32, 32) in [-1, 1] with a black border."""
    if images.dtype != torch.uint8 or images.ndim != 3:
        raise ValueError(f"expected uint8 (b, h, w) images, got {images.dtype} "
                         f"{tuple(images.shape)}")
    padded = F.pad(images, (2, 2, 2, 2)).float()
    return (padded / 127.5 - 1.0).unsqueeze(1)


def _stage(i: int, o: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(),
                         nn.MaxPool2d(2))


class FashionClassifier(nn.Module):
    """Conv stages 32→16→8→4, a `feature_dim`-d ReLU layer (the features), a linear head."""

    def __init__(self, width: int = 32, feature_dim: int = 128, num_classes: int = 10):
        super().__init__()
        self.width, self.feature_dim = width, feature_dim
        if min(width, feature_dim, num_classes) < 1:
            raise ValueError(f"sizes must be positive, got width={width}, "
                             f"feature_dim={feature_dim}, num_classes={num_classes}")
        self.body = nn.Sequential(_stage(1, width), _stage(width, 2 * width),
                                  _stage(2 * width, 4 * width), nn.Flatten(),
                                  nn.Linear(4 * width * 16, feature_dim), nn.ReLU())
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] not in (1, 3) or x.shape[2:] != (32, 32):
            raise ValueError(f"expected (b, 1 or 3, 32, 32) images, got {tuple(x.shape)}")
        if x.shape[1] == 3:  # RGB samples (e.g. from a 3-channel generator) are seen in grey
            x = reduce(x, "b c h w -> b 1 h w", "mean")
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))


def random_shift(x: torch.Tensor, most: int, generator: torch.Generator) -> torch.Tensor:
    """Each image moved by its own integer offset in [-most, most]² (the border fills with -1)."""
    b, _, h, w = x.shape
    padded = F.pad(x, (most,) * 4, value=-1.0)
    dy, dx = torch.randint(0, 2 * most + 1, (2, b, 1), generator=generator)
    rows, cols = dy + torch.arange(h), dx + torch.arange(w)
    batch = torch.arange(b).view(b, 1, 1)
    # the indices around the channel slice put the channels last: (b, h, w, c)
    return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()


def augment_batch(x: torch.Tensor, generator: torch.Generator, shift: int = 2) -> torch.Tensor:
    """Random horizontal flips and integer shifts of up to `shift` pixels (border value -1)."""
    flip = torch.rand(len(x), generator=generator) < 0.5
    return random_shift(torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x), shift, generator)


def train_classifier(train_images: torch.Tensor, train_labels: torch.Tensor, *, epochs: int = 7,
                     batch_size: int = 128, lr: float = 3e-3, seed: int = 0,
                     augment: bool = True, shift: int = 0, width: int = 32,
                     feature_dim: int = 128, on_epoch=None) -> FashionClassifier:
    """Train with AdamW and a one-cycle schedule; the same seed gives the same weights.

    Initialization and dropout draw from a forked, seeded global RNG (restored afterwards);
    shuffling and augmentation draw from a `torch.Generator` seeded by `seed`.
    `on_epoch(epoch, model)` is called after each epoch (the training script reports with it).
    """
    if train_images.ndim != 4 or len(train_images) != len(train_labels):
        raise ValueError(f"need images (n, c, 32, 32) and n labels, got "
                         f"{tuple(train_images.shape)} "
                         f"and {tuple(train_labels.shape)}")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs}, {batch_size}")
    n = len(train_images)
    steps_per_epoch = math.ceil(n / batch_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = FashionClassifier(width, feature_dim)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
        schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, epochs=epochs,
                                                       steps_per_epoch=steps_per_epoch)
        g = torch.Generator().manual_seed(seed)
        for epoch in range(epochs):
            model.train()
            for idx in torch.randperm(n, generator=g).split(batch_size):
                x = train_images[idx]
                if augment:
                    x = augment_batch(x, g, shift)
                loss = F.cross_entropy(model(x), train_labels[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                schedule.step()
            if on_epoch is not None:
                on_epoch(epoch, model)
    return model.eval()


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                      batch_size: int = 500) -> float:
    """Fraction of `images` whose arg-max class equals the label (model in eval mode)."""
    was_training = model.training
    model.eval()
    correct = sum((model(x).argmax(1) == y).sum().item()
                  for x, y in zip(images.split(batch_size), labels.split(batch_size)))
    model.train(was_training)
    return correct / len(images)


def save_classifier(model: FashionClassifier, path: str | Path, metadata: dict[str, str]) -> None:
    """Write the weights as safetensors atomically (temporary file in the folder, then rename)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {**{k: str(v) for k, v in metadata.items()},
            "width": str(model.width), "feature_dim": str(model.feature_dim)}
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=meta)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the file is package data others read
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_classifier(path: str | Path | None = None) -> FashionClassifier:
    """The classifier shipped with nanogan (or the safetensors file at `path`), in eval mode."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path) if path is not None else WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"no classifier weights at {path}; train them with "
                                f"`python benchmarks/train_classifier.py --out {path}`")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    model = FashionClassifier(int(meta.get("width", 32)), int(meta.get("feature_dim", 128)))
    state = load_file(str(path))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path} is not a FashionClassifier weights file: {err}") from None
    model.metadata = meta
    return model.eval()
