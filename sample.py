"""Use a trained generator: `python sample.py RUN/model.safetensors --seeds 0-63`.

Sub-commands (the first is the default when the first argument is a file):
  grid         images for seeds, as one grid and optionally one PNG per seed
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import torch
import typer
from rich.console import Console

from nanogan import checkpoint, config, models
from nanogan.images import save_grid

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True)
console = Console()


def parse_seeds(text: str) -> list[int]:
    """'0-63' or '1,5,9' or '0-3,10' -> list of ints."""
    seeds: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        lo, _, hi = part.partition("-")
        try:
            seeds += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
        except ValueError:
            raise typer.BadParameter(f"seeds look like 0-63 or 1,5,9; got {text!r}") from None
    if not seeds:
        raise typer.BadParameter("no seeds given")
    return seeds


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@app.command()
def grid(
    model_file: Path = typer.Argument(..., help="A run's model.safetensors (or checkpoint)."),
    seeds: str = typer.Option("0-63", help="Seeds, e.g. 0-63 or 1,5,9."),
    out: Optional[Path] = typer.Option(None, help="Output PNG [default: next to the model file]."),
    columns: Optional[int] = typer.Option(None, help="Images per row."),
    class_: Optional[int] = typer.Option(None, "--class", help="Class label for conditional models."),
    truncation: Optional[float] = typer.Option(None, help="ψ (StyleGAN2) or threshold (BigGAN)."),
    noise_mode: str = typer.Option("const", help="StyleGAN2 noise inputs: const | random | none."),
    per_seed: bool = typer.Option(False, "--per-seed", help="Also write one PNG per seed."),
):
    """Generate images for seeds: a grid, and with --per-seed one PNG each."""
    module, cfg, G = models.load_generator(model_file, _device())
    seed_list = parse_seeds(seeds)
    labels = None
    if models.conditional(cfg):
        label = 0 if class_ is None else class_
        if not 0 <= label < cfg.num_classes:
            raise typer.BadParameter(f"--class must be in [0, {cfg.num_classes}), got {label}")
        labels = torch.full((len(seed_list),), label, dtype=torch.long)
    options = {"noise_mode": noise_mode} if "noise_mode" in module.GENERATE_OPTIONS else {}
    images = models.sample(module, G, cfg, seed_list, labels, truncation=truncation, **options)
    out = out or model_file.with_name(f"seeds-{seed_list[0]}-{seed_list[-1]}.png")
    save_grid(out, images, nrow=columns)
    if per_seed:
        for s, image in zip(seed_list, images):
            save_grid(out.with_name(f"seed{s:04d}.png"), image[None], nrow=1, padding=0)
    console.print(f"wrote {out}" + (f" and {len(seed_list)} per-seed PNGs" if per_seed else ""))


COMMANDS = {"grid"}

if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] not in COMMANDS and not sys.argv[1].startswith("-"):
        sys.argv.insert(1, "grid")  # `python sample.py MODEL --seeds ...` means `grid`
    try:
        app()
    except (config.ConfigError, checkpoint.CheckpointError) as err:
        console.print(f"[red]error:[/] {err}")
        sys.exit(2)
