"""Use a trained generator: `python sample.py RUN --seeds 0-63`.

Sub-commands (`grid` is the default when the first argument is a file or folder):
  grid         images for seeds: one grid, and with --per-seed one PNG per seed
  classes      one row per class (class-conditional models: BigGAN, StyleGAN2 with labels)
  truncation   one row per truncation value (StyleGAN2 ψ, BigGAN threshold); --curve adds the
               fidelity/variety curve: FID and precision/recall against truncation, PNG + CSV
  interpolate  a GIF (and an MP4 where ffmpeg exists): slerp in Z, lerp in W, ProGAN's walk
  mix          StyleGAN2 style mixing: rows × columns, the chosen layers from the columns
  project      StyleGAN2 projection of images into W or W+; --detect tells generated from real
  score        evaluation metrics against a dataset: a table, and JSON with the protocol

Every command reads a sampling file (`model.safetensors`), a training checkpoint, a snapshot
(`RUN/snapshots/snapshot-000120.safetensors`) or a run folder (its model.safetensors, else its
newest snapshot, else its checkpoint), and writes next to the file, or into the folder, unless
told --out. Numeric options are checked against their ranges (exit 2, naming the allowed
values). The same seed gives the same image in every command (project --seeds: with fresh noise
inputs per seed, as a user of the model would see it).
"""

from __future__ import annotations

import csv
import functools
import json
import math
import re
import sys
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from types import ModuleType
from typing import Any, List, Optional

import torch
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from nanogan import checkpoint, config, data, models, runs
from nanogan.images import has_ffmpeg, make_grid, save_gif, save_grid, save_mp4
from nanogan.interpolate import key_path, lerp, slerp, smoothed_walk
from nanogan.randomness import derive_seed
from nanogan.truncation import truncate_w

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Use a trained generator: `python sample.py MODEL --seeds 0-63` draws a "
                       "grid; the commands below do the rest.")
console = Console()
errors = Console(stderr=True)

# What "truncation" means per model (None: the model has no truncation trick), the rows of the
# sweep grid (StyleGAN2 Fig. 12 uses ψ = 1, 0.7, 0.5, 0; BigGAN Fig. 2a thresholds 2 … 0.04),
# and the denser values of the fidelity/variety curve.
TRUNCATION = {
    "stylegan2": ("ψ", "1,0.7,0.5,0", "1,0.9,0.8,0.7,0.6,0.5,0.4,0.3,0.2,0.1,0"),
    "biggan": ("threshold", "2,1.5,1,0.5,0.04", "2,1.75,1.5,1.25,1,0.75,0.5,0.25,0.04"),
}
LAYER_NAMES = {"coarse": (0, 4), "middle": (4, 8), "fine": (8, None)}  # StyleGAN §3.1, Fig. 3


class SampleError(Exception):
    """A problem with the user's request: printed as one red line, exit status 2."""


USER_ERRORS = (SampleError, config.ConfigError, checkpoint.CheckpointError, data.DataError,
               data.DatasetNotFoundError, runs.RunError, ValueError)


def friendly(command):
    """Errors that name a problem of the request (bad arguments, unreadable files, missing data)
    end the command with that message and status 2 instead of a traceback."""
    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except USER_ERRORS as err:
            errors.print(f"[red]error:[/] {err}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from err
    return run


def command(fn):
    return app.command()(friendly(fn))


def output_folder(out: Path | None, default: Path) -> Path:
    """--out of a command that writes several files: a folder, never an existing file."""
    folder = out or default
    if folder.exists() and not folder.is_dir():
        raise SampleError(f"--out {folder} is a file; this command writes several files into a "
                          f"folder, so give a folder (it is created if missing)")
    return folder


class NoiseMode(str, Enum):
    const = "const"
    random = "random"
    none = "none"


class Space(str, Enum):
    w = "w"
    w_plus = "w+"


class PathKind(str, Enum):
    slerp = "slerp"
    lerp_w = "lerp-w"
    walk = "walk"


# ------------------------------------------------------------------------------ shared helpers


MAX_SEED = 2**64 - 1  # torch.Generator.manual_seed takes seeds in [0, 2^64)
SINGULAR = {"seeds": "seed", "classes": "class", "indices": "index", "row seeds": "row seed",
            "column seeds": "column seed"}


def parse_seeds(text: str, what: str = "seeds") -> list[int]:
    """'0-63' or '1,5,9' or '0-3,10' -> list of ints in [0, 2^64), in the order written."""
    seeds: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
        if match is None:
            if part.startswith("-") or "--" in part:
                raise SampleError(f"{what} are whole numbers >= 0; got {part!r} in {text!r}")
            raise SampleError(f"{what} look like 0-63 or 1,5,9; got {text!r} ({part!r} is not a "
                              f"number or a range like 0-63)")
        lo = int(match[1])
        hi = lo if match[2] is None else int(match[2])
        if hi < lo:
            raise SampleError(f"{SINGULAR.get(what, what)} range {lo}-{hi} is reversed; "
                              f"write {hi}-{lo}")
        if hi > MAX_SEED:
            raise SampleError(f"{what} must be in [0, 2^64); got {hi} in {text!r}")
        seeds += range(lo, hi + 1)
    if not seeds:
        raise SampleError(f"no {what} given")
    return seeds


def parse_floats(text: str, what: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SampleError(f"{what} look like 1,0.7,0.5; got {text!r}") from None
    if not values:
        raise SampleError(f"no {what} given")
    return values


def at_least(low: float, *, above: bool = False):
    """A typer callback for a float option: a finite number >= low (> low with above=True)."""
    def check(value: Optional[float]) -> Optional[float]:
        if value is not None and not (math.isfinite(value) and
                                      (value > low if above else value >= low)):
            raise typer.BadParameter(f"must be a number {'>' if above else '>='} {low:g}, "
                                     f"got {value:g}")
        return value
    return check


def finite(value: Optional[float]) -> Optional[float]:
    """A typer callback for a float option with no bounds: no nan or inf."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"must be a finite number, got {value:g}")
    return value


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class Loaded:
    path: Path  # the file read: the one given, or the one runs.model_file picked in a folder
    name: str  # the registry name: progan, stylegan2, biggan
    module: ModuleType
    cfg: Any
    G: torch.nn.Module
    home: Path  # where outputs go by default: the run folder given, else the file's folder

    @property
    def styled(self) -> bool:
        return hasattr(self.G, "synthesis") and hasattr(self.G, "mapping")


def load(path: Path) -> Loaded:
    """The generator in a model file, checkpoint, snapshot or run folder (see runs.model_file)."""
    file = runs.model_file(path)
    module, cfg, G = models.load_generator(file, _device())
    name = next(n for n, m in models.MODELS.items() if m is module)
    if file != path:
        console.print(f"[dim]reading {escape(str(file))}[/]", highlight=False)
    return Loaded(file, name, module, cfg, G, path if path.is_dir() else file.parent)


def require(loaded: Loaded, command_name: str, what: str, applies: list[str]) -> None:
    raise SampleError(f"{command_name} applies to {what} ({', '.join(applies) or 'none here'}); "
                      f"{loaded.path} holds a {loaded.name} model")


def require_styled(loaded: Loaded, command_name: str) -> None:
    if not loaded.styled:
        applies = [n for n, m in models.MODELS.items() if hasattr(m.Generator, "synthesis")]
        require(loaded, command_name, "style-based generators with a mapping network", applies)


def options_for(loaded: Loaded, noise_mode: Optional[NoiseMode]) -> dict[str, Any]:
    """The model's generate() options: the noise mode where the model has noise inputs."""
    if "noise_mode" not in loaded.module.GENERATE_OPTIONS:
        if noise_mode is not None:
            applies = [n for n, m in models.MODELS.items() if "noise_mode" in m.GENERATE_OPTIONS]
            require(loaded, "--noise-mode", "models with noise inputs", applies)
        return {}
    return {"noise_mode": (noise_mode or NoiseMode.const).value}


# The values each model's truncation takes: ψ may extrapolate (ψ > 1) or invert (ψ < 0,
# StyleGAN Fig. 8); a threshold is a bound on |z| and must be positive.
TRUNCATION_RANGE = {
    "stylegan2": (math.isfinite, "ψ must be a finite number (1: no truncation, 0: the average "
                                 "image w̄)"),
    "biggan": (lambda v: v > 0, "threshold must be > 0 (2: little truncation, 0.04: "
                                "nearly one image per class)"),
}


def check_truncation(loaded: Loaded, truncation: Optional[float],
                     option: str = "--truncation") -> None:
    """A truncation value the model has and accepts: ψ for StyleGAN2, a threshold for BigGAN."""
    if truncation is None:
        return
    if loaded.name not in TRUNCATION:
        require(loaded, option, "models with a truncation trick", sorted(TRUNCATION))
    valid, allowed = TRUNCATION_RANGE[loaded.name]
    if not valid(truncation):
        raise SampleError(f"{option} {truncation:g}: {loaded.name}'s {allowed}")


def labels_for(loaded: Loaded, class_: Optional[int], n: int) -> Optional[torch.Tensor]:
    """n copies of --class (0 by default) for a conditional model; None otherwise."""
    if not models.conditional(loaded.cfg):
        if class_ is not None:
            raise SampleError(f"--class applies to class-conditional models; {loaded.path} holds "
                              f"an unconditional {loaded.name} model")
        return None
    label = 0 if class_ is None else class_
    if not 0 <= label < loaded.cfg.num_classes:
        raise SampleError(f"--class must be in [0, {loaded.cfg.num_classes}), got {label}")
    return torch.full((n,), label, dtype=torch.long)


def synthesize(loaded: Loaded, ws: torch.Tensor, noise_mode: str,
               batch_size: int = 32) -> torch.Tensor:
    """StyleGAN2 images from ws (b, d) or (b, num_ws, d), batch by batch."""
    device = next(loaded.G.parameters()).device
    n = loaded.cfg.num_ws
    ws = ws[:, None].expand(-1, n, -1) if ws.ndim == 2 else ws
    with torch.no_grad():
        return torch.cat([loaded.G.synthesis(chunk.to(device), noise_mode).float().cpu()
                          for chunk in ws.split(batch_size)])


def mapped(loaded: Loaded, seeds: list[int], labels: Optional[torch.Tensor],
           psi: Optional[float]) -> torch.Tensor:
    """ws (b, num_ws, d) for seeds: mapping, then truncation w̄ + ψ (w − w̄)."""
    device = next(loaded.G.parameters()).device
    z = loaded.module.sample_latents(loaded.cfg, seeds).to(device)
    with torch.no_grad():
        w = loaded.G.mapping(z, None if labels is None else labels.to(device))
    ws = w[:, None].expand(-1, loaded.cfg.num_ws, -1)
    return ws if psi is None or psi == 1 else truncate_w(ws, loaded.G.mapping.w_avg, psi)


def default_out(loaded: Loaded, name: str) -> Path:
    return loaded.home / name


def upscale(images: torch.Tensor, scale: int) -> torch.Tensor:
    return images.repeat_interleave(scale, 2).repeat_interleave(scale, 3) if scale > 1 else images


def open_data(source: Optional[str], split: Optional[str], loaded: Loaded):
    """The dataset at the model's resolution and channels; split 'test' where one exists."""
    split = split or ("test" if data.has_test_split(source) else "train")
    return data.open_dataset(source, resolution=loaded.cfg.resolution,
                             channels=loaded.cfg.channels, split=split), split


def evaluate_model(loaded: Loaded, metrics: list[str], dataset, split: str, *, num_images: int,
                   truncation: Optional[float], options: dict, class_: Optional[int],
                   extractor: str, seed: int, batch_size: int, cache_dir: Optional[Path]):
    """nanogan.evaluate.evaluate on this model: seeds (and labels) drawn from the generator."""
    from nanogan.evaluate import evaluate

    def generate(b: int, g: torch.Generator) -> torch.Tensor:
        seeds = torch.randint(0, 2**31 - 1, (b,), generator=g).tolist()
        labels = None
        if models.conditional(loaded.cfg):
            labels = (torch.randint(loaded.cfg.num_classes, (b,), generator=g) if class_ is None
                      else torch.full((b,), class_, dtype=torch.long))
        return models.sample(loaded.module, loaded.G, loaded.cfg, seeds, labels,
                             batch_size=batch_size, truncation=truncation, **options)

    return evaluate(metrics, generate=generate, dataset=dataset, num_images=num_images,
                    extractor=extractor, split=split, batch_size=batch_size, seed=seed,
                    cache_dir=cache_dir)


def flat_values(results) -> dict[str, float]:
    """{"fid": 12.3, "precision": 0.7, "recall": 0.5, "kid_mean": …} from MetricResults."""
    out = {}
    for name, result in results.items():
        if isinstance(result.value, dict):
            for key, value in result.value.items():
                out[key if name == "pr" else f"{name}_{key}"] = value
        else:
            out[name] = result.value
    return out


# ------------------------------------------------------------------------------------- grid


@command
def grid(
    model_file: Path = typer.Argument(..., help="A model file, checkpoint, snapshot or run folder (its model.safetensors, else newest snapshot)."),
    seeds: str = typer.Option("0-63", help="Seeds, e.g. 0-63 or 1,5,9."),
    out: Optional[Path] = typer.Option(None, help="Output PNG \\[default: next to the model file, or in the run folder]."),
    columns: Optional[int] = typer.Option(None, min=1, help="Images per row."),
    class_: Optional[int] = typer.Option(None, "--class", help="Class label for conditional models."),
    truncation: Optional[float] = typer.Option(None, help="ψ (StyleGAN2) or threshold (BigGAN)."),
    noise_mode: Optional[NoiseMode] = typer.Option(None, help="StyleGAN2 noise inputs \\[default: const]."),
    per_seed: bool = typer.Option(False, "--per-seed", help="Also write one PNG per seed."),
):
    """Generate images for seeds: a grid, and with --per-seed one PNG each."""
    seed_list = parse_seeds(seeds)  # before the model is read: a typo fails at once
    loaded = load(model_file)
    check_truncation(loaded, truncation)
    labels = labels_for(loaded, class_, len(seed_list))
    images = models.sample(loaded.module, loaded.G, loaded.cfg, seed_list, labels,
                           truncation=truncation, **options_for(loaded, noise_mode))
    out = out or default_out(loaded, f"seeds-{seed_list[0]}-{seed_list[-1]}.png")
    save_grid(out, images, nrow=columns)
    if per_seed:
        for s, image in zip(seed_list, images):
            save_grid(out.with_name(f"seed{s:04d}.png"), image[None], nrow=1, padding=0)
    console.print(f"wrote {out}" + (f" and {len(seed_list)} per-seed PNGs" if per_seed else ""))


# ---------------------------------------------------------------------------------- classes


@command
def classes(
    model_file: Path = typer.Argument(..., help="A class-conditional model file, snapshot or run folder."),
    classes_: Optional[str] = typer.Option(None, "--classes", help="Classes, e.g. 0,3,7 \\[default: all]."),
    seeds: str = typer.Option("0-7", help="Seeds: one column each, the same in every row."),
    truncation: Optional[float] = typer.Option(None, help="ψ (StyleGAN2) or threshold (BigGAN)."),
    noise_mode: Optional[NoiseMode] = typer.Option(None, help="StyleGAN2 noise inputs \\[default: const]."),
    out: Optional[Path] = typer.Option(None, help="Output PNG \\[default: classes.png next to the model]."),
):
    """One row per class, one column per seed: what the label changes and what z keeps."""
    loaded = load(model_file)
    if not models.conditional(loaded.cfg):
        require(loaded, "classes", "class-conditional models",
                ["biggan", "stylegan2 trained with labels"])
    k = loaded.cfg.num_classes
    rows = parse_seeds(classes_, "classes") if classes_ else list(range(k))
    if bad := [c for c in rows if not 0 <= c < k]:
        raise SampleError(f"classes must be in [0, {k}), got {bad}")
    seed_list = parse_seeds(seeds)
    check_truncation(loaded, truncation)
    labels = torch.tensor(rows).repeat_interleave(len(seed_list))
    images = models.sample(loaded.module, loaded.G, loaded.cfg, seed_list * len(rows), labels,
                           truncation=truncation, **options_for(loaded, noise_mode))
    out = out or default_out(loaded, "classes.png")
    save_grid(out, images, nrow=len(seed_list))
    console.print(f"wrote {out}: {len(rows)} classes × {len(seed_list)} seeds")


# ------------------------------------------------------------------------------- truncation


@command
def truncation(
    model_file: Path = typer.Argument(..., help="A StyleGAN2 or BigGAN model file, snapshot or run folder."),
    values: Optional[str] = typer.Option(None, help="Rows: ψ (StyleGAN2, default 1,0.7,0.5,0) or thresholds (BigGAN, default 2,1.5,1,0.5,0.04)."),
    seeds: str = typer.Option("0-7", help="Seeds: one column each."),
    class_: Optional[int] = typer.Option(None, "--class", help="Class label for conditional models."),
    noise_mode: Optional[NoiseMode] = typer.Option(None, help="StyleGAN2 noise inputs \\[default: const]."),
    curve: bool = typer.Option(False, "--curve", help="Also measure FID and precision/recall against truncation."),
    curve_values: Optional[str] = typer.Option(None, help="Truncation values of the curve \\[default: a dense sweep]."),
    data_: Optional[str] = typer.Option(None, "--data", help="Real images for the curve \\[default: fashion-mnist]."),
    split: Optional[str] = typer.Option(None, help="Dataset split \\[default: test where there is one]."),
    num_images: int = typer.Option(1000, min=2, help="Generated (and real) images per curve point."),
    extractor: str = typer.Option("fashion", help="Feature extractor: fashion | inception."),
    seed: int = typer.Option(0, min=0, max=MAX_SEED, help="Seed of the curve's generated images."),
    batch_size: int = typer.Option(64, min=1, help="Batch size for generation and features."),
    cache_dir: Optional[Path] = typer.Option(None, help="Cache of real features \\[default: ~/.cache/nanogan/stats]."),
    out: Optional[Path] = typer.Option(None, help="Output folder \\[default: the model's folder]."),
):
    """Rows of one seed set at decreasing truncation; --curve: the fidelity/variety trade-off."""
    loaded = load(model_file)
    if loaded.name not in TRUNCATION:
        require(loaded, "truncation", "models with a truncation trick", sorted(TRUNCATION))
    symbol, grid_default, curve_default = TRUNCATION[loaded.name]
    rows = parse_floats(values or grid_default, "truncation values")
    points = parse_floats(curve_values or curve_default, "curve values") if curve else []
    for option, v in [("--values", v) for v in rows] + [("--curve-values", v) for v in points]:
        check_truncation(loaded, v, option)
    seed_list = parse_seeds(seeds)
    options = options_for(loaded, noise_mode)
    labels = labels_for(loaded, class_, len(seed_list))
    folder = output_folder(out, loaded.home)
    images = torch.cat([models.sample(loaded.module, loaded.G, loaded.cfg, seed_list, labels,
                                      truncation=v, **options) for v in rows])
    save_grid(folder / "truncation.png", images, nrow=len(seed_list))
    console.print(f"wrote {folder / 'truncation.png'}: rows {symbol} = "
                  f"{', '.join(f'{v:g}' for v in rows)}")
    if not curve:
        return
    dataset, split = open_data(data_, split, loaded)
    results = []
    table = Table(title=f"fidelity/variety · {loaded.name} · {dataset.name} ({split})")
    for key in (symbol, "FID", "precision", "recall"):
        table.add_column(key, justify="right")
    with console.status("measuring") as status:
        for v in points:
            status.update(f"{symbol} = {v:g}")
            scores = evaluate_model(loaded, ["fid", "pr"], dataset, split, num_images=num_images,
                                    truncation=v, options=options, class_=class_,
                                    extractor=extractor, seed=seed, batch_size=batch_size,
                                    cache_dir=cache_dir)
            row = {"truncation": v, **flat_values(scores)}
            results.append((row, scores))
            table.add_row(f"{v:g}", f"{row['fid']:.2f}", f"{row['precision']:.3f}",
                          f"{row['recall']:.3f}")
    console.print(table)
    fields = ["truncation", "fid", "precision", "recall"]
    with (folder / "truncation-curve.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows({k: row[k] for k in fields} for row, _ in results)
    protocol = next(iter(results[0][1].values())).to_dict()
    (folder / "truncation-curve.json").write_text(json.dumps(
        {"model": str(loaded.path), "truncation": symbol, "points": [row for row, _ in results],
         "protocol": {k: v for k, v in protocol.items() if k not in ("metric", "value")}},
        indent=2))
    plot_curve(folder / "truncation-curve.png", [row for row, _ in results], symbol,
               f"{loaded.name} vs {dataset.name} ({split}, {num_images} images, {extractor})")
    console.print(f"wrote {folder / 'truncation-curve.png'}, .csv and .json")


def plot_curve(path: Path, rows: list[dict], symbol: str, title: str) -> None:
    """FID against truncation, and precision (fidelity) against recall (variety)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["truncation"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    left.plot(t, [r["fid"] for r in rows], "o-")
    left.set(xlabel=f"truncation {symbol}", ylabel="FID (lower is better)")
    right.plot([r["recall"] for r in rows], [r["precision"] for r in rows], "o-")
    for r in rows:
        right.annotate(f"{r['truncation']:g}", (r["recall"], r["precision"]), fontsize=8,
                       xytext=(3, 3), textcoords="offset points")
    right.set(xlabel="recall (variety)", ylabel="precision (fidelity)", xlim=(-0.02, 1.02),
              ylim=(-0.02, 1.02))
    fig.suptitle(title, fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------------------ interpolate


@command
def interpolate(
    model_file: Path = typer.Argument(..., help="A model file, checkpoint, snapshot or run folder (its model.safetensors, else newest snapshot)."),
    seeds: str = typer.Option("0-3", help="Key seeds (slerp, lerp-w); the walk uses the first."),
    path: PathKind = typer.Option(PathKind.slerp, help="slerp in Z | lerp-w in W (StyleGAN2) | walk (ProGAN's smoothed random walk)."),
    frames: int = typer.Option(24, min=1, help="Frames from one key to the next."),
    loop: bool = typer.Option(True, help="Return to the first key at the end."),
    seconds: float = typer.Option(8.0, callback=at_least(0, above=True), help="Length of the walk (> 0)."),
    sigma: float = typer.Option(0.75, callback=at_least(0, above=True), help="The walk's temporal blur in seconds, > 0 (ProGAN: 45 frames at 60 Hz)."),
    fps: int = typer.Option(24, min=1, max=100, help="Frames per second (GIF delays are in 1/100 s)."),
    class_: Optional[int] = typer.Option(None, "--class", help="Class label for conditional models."),
    truncation: Optional[float] = typer.Option(None, help="ψ (StyleGAN2) or threshold (BigGAN)."),
    noise_mode: Optional[NoiseMode] = typer.Option(None, help="StyleGAN2 noise inputs \\[default: const]."),
    scale: Optional[int] = typer.Option(None, min=1, help="Upscale frames by this factor \\[default: to >= 256 px]."),
    out: Optional[Path] = typer.Option(None, help="Output .gif (an .mp4 is written beside it) \\[default: next to the model]."),
):
    """A video along a latent path: slerp between seeds' z, lerp between their w, or ProGAN's walk."""
    seed_list = parse_seeds(seeds)  # before the model is read: a typo fails at once
    loaded = load(model_file)
    options = options_for(loaded, noise_mode)
    check_truncation(loaded, truncation)
    cfg = loaded.cfg
    if path is PathKind.lerp_w:
        require_styled(loaded, "--path lerp-w")
    if path is not PathKind.walk and len(seed_list) < 2:
        raise SampleError(f"--path {path.value} needs at least two seeds, got {seed_list}")
    if path is PathKind.walk:
        if truncation is not None and loaded.name == "biggan":
            raise SampleError("--truncation with --path walk applies to stylegan2 (ψ in W); "
                              "BigGAN's threshold resamples z, which a smooth walk cannot do")
        n = max(1, round(seconds * fps))
        z = smoothed_walk(n, cfg.z_dim, sigma * fps, torch.Generator().manual_seed(seed_list[0]))
        images = models.render(loaded.module, loaded.G, z, labels_for(loaded, class_, n),
                               truncation=truncation, **options)
    elif path is PathKind.slerp:
        keys = loaded.module.sample_latents(cfg, seed_list, truncation)
        z = key_path(keys, frames, slerp, loop=loop)
        images = models.render(loaded.module, loaded.G, z, labels_for(loaded, class_, len(z)),
                               truncation=truncation, **options)
    else:  # lerp in W, after truncation: truncating the path is lerping the truncated keys
        ws = mapped(loaded, seed_list, labels_for(loaded, class_, len(seed_list)), truncation)
        images = synthesize(loaded, key_path(ws[:, 0], frames, lerp, loop=loop),
                            options["noise_mode"])
    scale = scale or max(1, 256 // cfg.resolution)
    video = [make_grid(upscale(image[None], scale), nrow=1, padding=0) for image in images]
    out = out or default_out(loaded, f"interpolate-{path.value}-{seed_list[0]}.gif")
    save_gif(out, video, fps=fps)
    written = [out]
    if has_ffmpeg():
        save_mp4(out.with_suffix(".mp4"), video, fps=fps)
        written.append(out.with_suffix(".mp4"))
    console.print(f"wrote {' and '.join(map(str, written))}: {len(video)} frames"
                  + ("" if has_ffmpeg() else " (no ffmpeg on PATH: GIF only)"))


# -------------------------------------------------------------------------------------- mix


def parse_layers(text: str, num_ws: int, resolution: int) -> tuple[int, int]:
    """'coarse' | 'middle' | 'fine' | '0-3' | '4-' | '5' -> [start, stop) within num_ws styles."""
    if text in LAYER_NAMES:
        start, stop = LAYER_NAMES[text]
        stop = num_ws if stop is None else min(stop, num_ws)
    else:
        lo, dash, hi = text.partition("-")
        try:
            start = int(lo)
            stop = (int(hi) + 1 if hi else num_ws) if dash else start + 1
        except ValueError:
            raise SampleError(f"--layers looks like coarse, middle, fine, 0-3, 4- or 5; "
                              f"got {text!r}") from None
    if not 0 <= start < stop <= num_ws:
        raise SampleError(f"--layers {text} selects no styles of this {resolution}×{resolution} "
                          f"model, whose styles are 0-{num_ws - 1} (coarse 0-3: 4²–8², "
                          f"middle 4-7: 16²–32², fine 8-: 64² and up)")
    return start, stop


@command
def mix(
    model_file: Path = typer.Argument(..., help="A StyleGAN2 model file, snapshot or run folder."),
    rows: str = typer.Option("0-4", help="Row sources (A): their styles outside --layers."),
    columns: str = typer.Option("5-9", help="Column sources (B): their styles in --layers."),
    layers: str = typer.Option("coarse", help="Styles copied from B: coarse (0-3), middle (4-7), fine (8-), or a range like 2-5."),
    class_: Optional[int] = typer.Option(None, "--class", help="Class label for conditional models."),
    truncation: Optional[float] = typer.Option(None, help="ψ for every source."),
    noise_mode: Optional[NoiseMode] = typer.Option(None, help="Noise inputs \\[default: const]."),
    out: Optional[Path] = typer.Option(None, help="Output PNG \\[default: mix-LAYERS.png next to the model]."),
):
    """Style mixing (StyleGAN Fig. 3): the top row shows B, the left column A, each cell A's
    styles with B's in the chosen layers."""
    loaded = load(model_file)
    require_styled(loaded, "mix")
    check_truncation(loaded, truncation)
    cfg = loaded.cfg
    start, stop = parse_layers(layers, cfg.num_ws, cfg.resolution)
    row_seeds, col_seeds = parse_seeds(rows, "row seeds"), parse_seeds(columns, "column seeds")
    mode = options_for(loaded, noise_mode)["noise_mode"]
    ws_a = mapped(loaded, row_seeds, labels_for(loaded, class_, len(row_seeds)), truncation)
    ws_b = mapped(loaded, col_seeds, labels_for(loaded, class_, len(col_seeds)), truncation)
    from_b = (torch.arange(cfg.num_ws) >= start) & (torch.arange(cfg.num_ws) < stop)
    cells = torch.where(from_b[None, None, :, None].to(ws_a.device), ws_b[None], ws_a[:, None])
    a, b = synthesize(loaded, ws_a, mode), synthesize(loaded, ws_b, mode)
    mixed = synthesize(loaded, cells.flatten(0, 1), mode).unflatten(0, (len(ws_a), len(ws_b)))
    blank = torch.ones_like(a[:1])  # white: the corner has no source
    layout = [torch.cat([blank, b])]
    layout += [torch.cat([a[i : i + 1], mixed[i]]) for i in range(len(a))]
    out = out or default_out(loaded, f"mix-{layers}.png")
    save_grid(out, torch.cat(layout), nrow=len(col_seeds) + 1)
    console.print(f"wrote {out}: styles {start}-{stop - 1} of {cfg.num_ws} from the columns")


# ---------------------------------------------------------------------------------- project


def load_targets(loaded: Loaded, images: list[Path], seeds: Optional[str],
                 data_: Optional[str], indices: Optional[str], split: Optional[str],
                 class_: Optional[int]) -> tuple[torch.Tensor, list[str]]:
    """Targets in [-1, 1] at the model's size: image files, dataset images, generated seeds."""
    cfg, targets, names = loaded.cfg, [], []
    for file in images:
        if not file.is_file():
            raise SampleError(f"{file}: no such image file")
        pixels = data.decode_image(file.read_bytes(), cfg.resolution, cfg.channels)
        targets.append(data.to_float(torch.from_numpy(pixels.copy())))
        names.append(str(file))
    if indices is not None:
        dataset, split = open_data(data_, split, loaded)
        for i in parse_seeds(indices, "indices"):
            if not 0 <= i < len(dataset):
                raise SampleError(f"--indices: {dataset.name} ({split}) has {len(dataset)} images, "
                                  f"got index {i}")
            targets.append(data.to_float(dataset[i][0]))
            names.append(f"{dataset.name}[{split}][{i}]")
    if seeds is not None:
        seed_list = parse_seeds(seeds)
        targets += list(generated(loaded, seed_list, labels_for(loaded, class_, len(seed_list))))
        names += [f"seed {s}" for s in seed_list]
    if not targets:
        raise SampleError("nothing to project: give image files, --indices (with --data) or "
                          "--seeds")
    return torch.stack(targets), names


def generated(loaded: Loaded, seeds: list[int], labels: Optional[torch.Tensor]) -> torch.Tensor:
    """What the generator makes for seeds with fresh noise inputs, as a user would see them."""
    gens = [torch.Generator().manual_seed(derive_seed(s, "noise")) for s in seeds]
    ws = mapped(loaded, seeds, labels, None)
    device = ws.device
    with torch.no_grad():
        def noise(i, shape):  # each seed's noise from its own generator: batch-independent
            return torch.cat([torch.randn(1, *shape[1:], generator=g) for g in gens]).to(device)

        return loaded.G.synthesis(ws, "random", noise=noise).float().cpu()


@command
def project(
    model_file: Path = typer.Argument(..., help="A StyleGAN2 model file, snapshot or run folder."),
    images: Optional[List[Path]] = typer.Argument(None, help="Image files to project."),
    seeds: Optional[str] = typer.Option(None, help="Also project the model's own images for these seeds."),
    data_: Optional[str] = typer.Option(None, "--data", help="Dataset for --indices and --detect's calibration \\[default: fashion-mnist]."),
    indices: Optional[str] = typer.Option(None, help="Also project these dataset images, e.g. 0-7."),
    split: Optional[str] = typer.Option(None, help="Split of --indices \\[default: test where there is one]."),
    space: Space = typer.Option(Space.w, help="w: one w for all layers (the paper's choice) | w+: one per layer."),
    steps: int = typer.Option(1000, min=1, help="Optimisation steps (the paper: 1000)."),
    pixel_weight: float = typer.Option(1.0, callback=at_least(0), help="Weight of pixel MSE in the distance (>= 0)."),
    noise_weight: float = typer.Option(1e5, callback=at_least(0), help="α, the noise-map regularization weight (>= 0)."),
    w_samples: int = typer.Option(10_000, min=2, help="Mapping samples for w̄ and σ_w."),
    class_: Optional[int] = typer.Option(None, "--class", help="Class label for conditional models."),
    seed: int = typer.Option(0, min=0, max=MAX_SEED, help="Seeds the initial noise maps and the noise on w."),
    detect: bool = typer.Option(False, "--detect", help="Call each target generated or real by its distance (§5.1)."),
    threshold: Optional[float] = typer.Option(None, callback=finite, help="--detect: distances up to this are 'generated' \\[default: calibrated]."),
    calibrate: int = typer.Option(8, min=1, help="--detect without --threshold: project this many generated and real images to set it."),
    out: Optional[Path] = typer.Option(None, help="Output folder \\[default: projection/ next to the model]."),
):
    """Project images into W (Appendix D); save latents, reconstructions and a progress GIF."""
    from safetensors.torch import save_file

    from nanogan.projector import ClassifierDistance, separating_threshold
    from nanogan.projector import project as run_projection

    loaded = load(model_file)
    require_styled(loaded, "project")
    targets, names = load_targets(loaded, images or [], seeds, data_, indices, split, class_)
    n = len(targets)
    if detect and threshold is None:
        real_set, _ = open_data(data_, "train", loaded)
        pick = torch.randperm(len(real_set), generator=torch.Generator().manual_seed(1))
        if models.conditional(loaded.cfg):  # real images of the class the projection assumes
            pick = pick[real_set.labels[pick] == (class_ or 0)]
        reals = torch.stack([data.to_float(real_set[i][0]) for i in pick[:calibrate].tolist()])
        fake_seeds = list(range(10**6, 10**6 + calibrate))  # far from the seeds users pick
        fakes = generated(loaded, fake_seeds, labels_for(loaded, class_, calibrate))
        targets = torch.cat([targets, fakes, reals])
    labels = labels_for(loaded, class_, len(targets))
    distance = ClassifierDistance(pixel_weight=pixel_weight).to(_device())
    every = max(1, steps // 60)
    with console.status(f"projecting {len(targets)} images into {space.value.upper()}, "
                        f"{steps} steps"):
        result = run_projection(loaded.G, targets, steps=steps, space=space.value,
                                distance=distance, labels=labels, noise_weight=noise_weight,
                                w_samples=w_samples, generator=torch.Generator().manual_seed(seed),
                                snapshot_every=every)
    folder = output_folder(out, loaded.home / "projection")
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {"ws": result.ws[:n].cpu().contiguous(), "distance": result.distance[:n],
               "target": targets[:n].cpu().contiguous()}
    tensors |= {f"noise.{i}": m[:n].cpu().contiguous() for i, m in result.noise.items()}
    save_file(tensors, str(folder / "projected.safetensors"), metadata={
        "space": space.value, "steps": str(steps), "targets": json.dumps(names),
        "distance": "classifier features (LPIPS form) + pixel MSE", "model": str(loaded.path)})
    save_grid(folder / "projection.png", torch.cat([targets[:n], result.images[:n]]), nrow=n)
    video = [make_grid(torch.cat([targets[:n], frame[:n]]), nrow=n) for frame in result.frames]
    save_gif(folder / "projection.gif", video, fps=12)
    verdicts = None
    if detect:
        calib = result.distance[n:]
        if threshold is None:
            threshold = separating_threshold(calib[:calibrate], calib[calibrate:])
        verdicts = ["generated" if d <= threshold else "real" for d in result.distance[:n]]
    table = Table(title=f"projection into {space.value.upper()} · {steps} steps")
    for col in ("target", "distance") + (("verdict",) if detect else ()):
        table.add_column(col, justify="left" if col == "target" else "right")
    for i in range(n):
        row = [escape(names[i]), f"{result.distance[i].item():.4f}"]
        table.add_row(*row, *([verdicts[i]] if detect else []))
    console.print(table)
    if detect:
        report = {"threshold": threshold, "space": space.value, "steps": steps,
                  "distance": "classifier features (LPIPS form) + pixel MSE",
                  "targets": [{"target": names[i], "distance": result.distance[i].item(),
                               "verdict": verdicts[i]} for i in range(n)]}
        if len(targets) > n:
            calib = result.distance[n:].tolist()
            report["calibration"] = {"generated": calib[:calibrate], "real": calib[calibrate:]}
            console.print(f"threshold {threshold:.4f}, calibrated between {calibrate} generated "
                          f"(max {max(calib[:calibrate]):.4f}) and {calibrate} real images "
                          f"(min {min(calib[calibrate:]):.4f})")
        (folder / "detection.json").write_text(json.dumps(report, indent=2))
    console.print(f"wrote {folder}/projected.safetensors, projection.png, projection.gif"
                  + (", detection.json" if detect else ""))


# ------------------------------------------------------------------------------------ score


@command
def score(
    model_file: Path = typer.Argument(..., help="A model file, checkpoint, snapshot or run folder (its model.safetensors, else newest snapshot)."),
    metrics: str = typer.Option("fid,kid,pr", help="Comma-separated: swd, fid, kid, pr, msssim, is."),
    data_: Optional[str] = typer.Option(None, "--data", help="Real images \\[default: fashion-mnist]."),
    split: Optional[str] = typer.Option(None, help="Dataset split \\[default: test where there is one]."),
    num_images: int = typer.Option(1000, min=2, help="Generated (and real) images."),
    truncation: Optional[float] = typer.Option(None, help="ψ (StyleGAN2) or threshold (BigGAN)."),
    noise_mode: Optional[NoiseMode] = typer.Option(None, help="StyleGAN2 noise inputs \\[default: const]."),
    class_: Optional[int] = typer.Option(None, "--class", help="Only this class \\[default: uniform labels]."),
    extractor: str = typer.Option("fashion", help="Feature extractor: fashion | inception."),
    seed: int = typer.Option(0, min=0, max=MAX_SEED, help="Seed of the generated images and the metrics' draws."),
    batch_size: int = typer.Option(64, min=1, help="Batch size for generation and features."),
    cache_dir: Optional[Path] = typer.Option(None, help="Cache of real features \\[default: ~/.cache/nanogan/stats]."),
    per_class: bool = typer.Option(False, "--per-class", help="Conditional models: the classifier's accuracy on each class's images."),
    out: Optional[Path] = typer.Option(None, help="Output JSON \\[default: scores.json next to the model]."),
):
    """Evaluation metrics of a model against a dataset, each with its protocol."""
    from nanogan.evaluate import parse_metrics

    loaded = load(model_file)
    names = parse_metrics(metrics)  # before any data is opened
    check_truncation(loaded, truncation)
    if class_ is not None:
        labels_for(loaded, class_, 1)  # validates
    dataset, split = open_data(data_, split, loaded)
    with console.status(f"scoring {num_images} images"):
        results = evaluate_model(loaded, names, dataset, split, num_images=num_images,
                                 truncation=truncation, options=options_for(loaded, noise_mode),
                                 class_=class_, extractor=extractor, seed=seed,
                                 batch_size=batch_size, cache_dir=cache_dir)
    table = Table(title=escape(f"{loaded.name} · {loaded.path}"))
    for col in ("metric", "value", "extractor", "images", "split", "dataset"):
        table.add_column(col)
    for name, r in results.items():
        value = (", ".join(f"{k} {v:.4g}" for k, v in r.value.items())
                 if isinstance(r.value, dict) else f"{r.value:.4g}")
        p = r.protocol
        table.add_row(name, value, p.extractor + (f" ({p.resize})" if p.resize else ""),
                      str(p.num_images), p.split, p.dataset)
    console.print(table)
    accuracy = None
    if per_class:
        accuracy = class_accuracies(loaded, num_images, truncation, options_for(loaded, noise_mode),
                                    extractor, seed, batch_size)
    out = out or default_out(loaded, "scores.json")
    out.write_text(json.dumps({"model": str(loaded.path), "truncation": truncation,
                               "class": class_, "seed": seed,
                               "results": [r.to_dict() for r in results.values()]}
                              | ({"class_accuracy": accuracy} if accuracy else {}), indent=2))
    console.print(f"wrote {out}")


def class_accuracies(loaded: Loaded, num_images: int, truncation: Optional[float], options: dict,
                     extractor: str, seed: int, batch_size: int) -> dict:
    """num_images / K images per class k, classified: the share the classifier calls k."""
    from nanogan.evaluate import class_accuracy
    from nanogan.features import extract

    if not models.conditional(loaded.cfg):
        require(loaded, "--per-class", "class-conditional models",
                [n for n, m in models.MODELS.items() if models.conditional(m.PRESETS["tiny"])])
    k = loaded.cfg.num_classes
    per = max(1, num_images // k)
    g = torch.Generator().manual_seed(seed)
    seeds = torch.randint(0, 2**31 - 1, (per * k,), generator=g).tolist()
    labels = torch.arange(k).repeat_interleave(per)
    images = models.sample(loaded.module, loaded.G, loaded.cfg, seeds, labels,
                           batch_size=batch_size, truncation=truncation, **options)
    _, probs = extract(extractor, images, batch_size=batch_size)
    accuracy = class_accuracy(probs, labels, k)
    names = list(data.FASHION_MNIST_CLASSES) if k == len(data.FASHION_MNIST_CLASSES) else []
    table = Table(title=f"classifier accuracy on {per} generated images per class ({extractor})")
    table.add_column("class")
    table.add_column("accuracy")
    for c in range(k):
        table.add_row(f"{c} {names[c]}" if names else str(c), f"{accuracy[f'acc_{c}']:.3f}")
    table.add_row("mean", f"{accuracy['acc_mean']:.3f}")
    console.print(table)
    return {"images_per_class": per, "extractor": extractor, **accuracy}


COMMANDS = {"grid", "classes", "truncation", "interpolate", "mix", "project", "score"}


def main(argv: Optional[list[str]] = None) -> None:
    """`python sample.py MODEL --seeds …` means `python sample.py grid MODEL --seeds …`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] not in COMMANDS and not args[0].startswith("-"):
        args.insert(0, "grid")
    app(args, prog_name="sample.py")


if __name__ == "__main__":
    main()
