"""Train the Fashion-MNIST classifier whose features nanogan's metrics use by default.

    python benchmarks/train_classifier.py   # writes nanogan/weights/fashion_classifier.safetensors
    python benchmarks/train_classifier.py --epochs 2 --out /tmp/clf.safetensors

It lives beside the benchmarks because it builds an evaluation instrument (the weights shipped in
nanogan/weights), not a model a user trains.

The images are padded 28 -> 32 with black and mapped to [-1, 1], exactly as the GANs see them.
Training is deterministic for a seed on a given machine and torch version; the file's metadata
records the seed, epochs, test accuracy, date and torch version.
"""

from __future__ import annotations

import datetime
import gzip
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import typer
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # nanogan from a checkout

from nanogan.classifier import (WEIGHTS, evaluate_accuracy, pad_to_32, save_classifier,
                                train_classifier)

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
console = Console()
DEBIAN_FOLDER = Path("/usr/share/datasets/fashion-mnist")


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_split(split: str, data: Optional[Path]) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (n, 28, 28) images and int64 labels, through nanogan.data when it is available."""
    if data is None:
        try:
            from nanogan.data import load_fashion_mnist
        except ImportError:
            data = DEBIAN_FOLDER
        else:
            return load_fashion_mnist(split)
    prefix = "train" if split == "train" else "t10k"
    images = _read_idx(data / f"{prefix}-images-idx3-ubyte.gz")
    labels = _read_idx(data / f"{prefix}-labels-idx1-ubyte.gz")
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


@app.command()
def main(
    epochs: int = typer.Option(7, help="passes over the 60,000 training images"),
    batch_size: int = typer.Option(128, "--batch-size"),
    lr: float = typer.Option(3e-3, help="peak learning rate of the one-cycle schedule"),
    seed: int = typer.Option(0),
    augment: bool = typer.Option(True, help="random horizontal flips and shifts"),
    shift: int = typer.Option(0, help="largest random shift in pixels (0: flips only)"),
    out: Path = typer.Option(WEIGHTS, help="safetensors file to write (atomically)"),
    data: Optional[Path] = typer.Option(None, help="folder with the four idx .gz files"),
    threads: int = typer.Option(2, help="CPU threads for torch"),
):
    torch.set_num_threads(threads)
    train_x, train_y = load_split("train", data)
    test_x, test_y = load_split("test", data)
    train_x, test_x = pad_to_32(train_x), pad_to_32(test_x)
    console.print(f"train {tuple(train_x.shape)}, test {tuple(test_x.shape)}; {epochs} epochs, "
                  f"batch {batch_size}, lr {lr}, seed {seed}")
    start = time.perf_counter()

    def report(epoch: int, model: torch.nn.Module) -> None:
        acc = evaluate_accuracy(model, test_x, test_y)
        console.print(f"epoch {epoch + 1}/{epochs}  test accuracy {acc:.4f}  "
                      f"[dim]{time.perf_counter() - start:.0f} s")

    model = train_classifier(train_x, train_y, epochs=epochs, batch_size=batch_size, lr=lr,
                             seed=seed, augment=augment, shift=shift, on_epoch=report)
    seconds = time.perf_counter() - start
    accuracy = evaluate_accuracy(model, test_x, test_y)
    save_classifier(model, out, {
        "test_accuracy": f"{accuracy:.4f}", "epochs": epochs, "batch_size": batch_size, "lr": lr,
        "seed": seed, "augment": f"flip, shift {shift}" if augment else "none",
        "train_seconds": f"{seconds:.0f}", "threads": threads, "torch_version": torch.__version__,
        "date": datetime.date.today().isoformat(), "dataset": "fashion-mnist train, padded to 32",
    })
    console.print(f"[bold]test accuracy {accuracy:.4f}[/] after {seconds:.0f} s -> {out} "
                  f"({out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    app()
