"""Use a trained generator: `python sample.py RUN --seeds 0-63`.

Sub-commands (`grid` is the default when the first argument is a file or folder):
  grid         images for seeds: one grid, and with --per-seed one PNG per seed
  classes      one row per class (class-conditional models)
  truncation   one row per value of the model's truncation (ψ in W, or a threshold on z);
               --curve adds the fidelity/variety curve: FID and precision/recall, PNG + CSV
  interpolate  a GIF (and an MP4 where ffmpeg exists): slerp in Z, lerp in W, a smoothed walk
  mix          style mixing (models with a W space): rows × columns, layers from the columns
  project      projection of images into W or W+; --detect tells generated from real
  score        evaluation metrics against a dataset: a table, and JSON with the protocol

Every command reads a sampling file (`model.safetensors`), a training checkpoint, a snapshot
(`RUN/snapshots/snapshot-000120.safetensors`) or a run folder (its model.safetensors, else its
newest snapshot, else its checkpoint), and writes next to the file, or into the folder, unless
told --out. Numeric options are checked against their ranges (exit 2, naming the allowed
values). The same seed gives the same image in every command (project --seeds: with fresh noise
inputs per seed, as a user of the model would see it).
"""

from __future__ import annotations

import functools
import json
import math
import sys
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, List, Optional

import torch
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from nanogan import checkpoint, config, data, models, runs, sampling
from nanogan.images import has_ffmpeg, make_grid, save_gif, save_grid, save_mp4, upscale

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Use a trained generator: `python sample.py MODEL --seeds 0-63` draws a "
                       "grid; the commands below do the rest.")
console = Console()
errors = Console(stderr=True)

SPECS = models.SPECS


def having(what) -> list[str]:
    """The registered models for which what(spec) holds (for "applies to …" messages)."""
    return sorted(name for name, spec in SPECS.items() if what(spec))


TRUNCATION_HELP = " or ".join(f"{s.truncation.symbol} ({n})" for n, s in SPECS.items()
                              if s.truncation) + "."
NOISE_HELP = "Noise inputs (" + ", ".join(having(lambda s: "noise_mode" in s.GENERATE_OPTIONS)) \
    + ") \\[default: const]."


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
            errors.print("[red]error:[/]", end=" ")
            errors.print(str(err), markup=False, highlight=False, soft_wrap=True)  # [paths]
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


MAX_SEED = sampling.MAX_SEED


def parsed(option: str, parse, *args):
    """parse(*args) with a library SamplingError reworded to name the option ("--seeds: …")."""
    try:
        return parse(*args)
    except sampling.SamplingError as err:
        raise SampleError(f"{option}: {err.problem}") from None


def parse_seeds(text: str, what: str = "seeds", option: str = "--seeds") -> list[int]:
    """'0-63' or '1,5,9' or '0-3,10' -> list of ints in [0, 2^64) (sampling.parse_seeds)."""
    return parsed(option, sampling.parse_seeds, text, what)


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
    spec: models.ModelSpec
    cfg: Any
    G: torch.nn.Module
    home: Path  # where outputs go by default: the run folder given, else the file's folder

    @property
    def name(self) -> str:
        return self.spec.name


def load(path: Path) -> Loaded:
    """The generator in a model file, checkpoint, snapshot or run folder (see runs.model_file)."""
    file = runs.model_file(path)
    spec, cfg, G = models.load_generator(file, _device())
    if file != path:
        console.print(f"[dim]reading {escape(str(file))}[/]", highlight=False)
    return Loaded(file, spec, cfg, G, path if path.is_dir() else file.parent)


def require(loaded: Loaded, command_name: str, what: str, applies: list[str]) -> None:
    raise SampleError(f"{command_name} applies to {what} ({', '.join(applies) or 'none here'}); "
                      f"{loaded.path} holds a {loaded.name} model")


def require_styled(loaded: Loaded, command_name: str) -> None:
    if loaded.spec.styles is None:
        require(loaded, command_name, "style-based generators with a mapping network",
                having(lambda s: s.styles is not None))


def options_for(loaded: Loaded, noise_mode: Optional[NoiseMode]) -> dict[str, Any]:
    """The model's generate() options: the noise mode where the model has noise inputs."""
    if "noise_mode" not in loaded.spec.GENERATE_OPTIONS:
        if noise_mode is not None:
            require(loaded, "--noise-mode", "models with noise inputs",
                    having(lambda s: "noise_mode" in s.GENERATE_OPTIONS))
        return {}
    return {"noise_mode": (noise_mode or NoiseMode.const).value}


def check_truncation(loaded: Loaded, truncation: Optional[float],
                     option: str = "--truncation") -> None:
    """A truncation value the model has and accepts (its spec's rule)."""
    if truncation is None:
        return
    rule = loaded.spec.truncation
    if rule is None:
        require(loaded, option, "models with a truncation trick",
                having(lambda s: s.truncation is not None))
    if not rule.valid(truncation):
        raise SampleError(f"{option} {truncation:g}: {loaded.name}'s {rule.allowed}")


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


def default_out(loaded: Loaded, name: str) -> Path:
    return loaded.home / name


def open_data(source: Optional[str], split: Optional[str], loaded: Loaded):
    """(dataset, split) at the model's resolution and channels; split 'test' where one exists."""
    return sampling.open_data(source, split, loaded.cfg)


# ------------------------------------------------------------------------------------- grid


@command
def grid(
    model_file: Path = typer.Argument(..., help="A model file, checkpoint, snapshot or run folder (its model.safetensors, else newest snapshot)."),
    seeds: str = typer.Option("0-63", help="Seeds, e.g. 0-63 or 1,5,9."),
    out: Optional[Path] = typer.Option(None, help="Output PNG \\[default: next to the model file, or in the run folder]."),
    columns: Optional[int] = typer.Option(None, min=1, help="Images per row."),
    class_: Optional[int] = typer.Option(None, "--class", help="Class label for conditional models."),
    truncation: Optional[float] = typer.Option(None, help=TRUNCATION_HELP),
    noise_mode: Optional[NoiseMode] = typer.Option(None, help=NOISE_HELP),
    per_seed: bool = typer.Option(False, "--per-seed", help="Also write one PNG per seed."),
):
    """Generate images for seeds: a grid, and with --per-seed one PNG each."""
    seed_list = parse_seeds(seeds)  # before the model is read: a typo fails at once
    loaded = load(model_file)
    check_truncation(loaded, truncation)
    labels = labels_for(loaded, class_, len(seed_list))
    images = models.sample(loaded.spec, loaded.G, loaded.cfg, seed_list, labels,
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
    truncation: Optional[float] = typer.Option(None, help=TRUNCATION_HELP),
    noise_mode: Optional[NoiseMode] = typer.Option(None, help=NOISE_HELP),
    out: Optional[Path] = typer.Option(None, help="Output PNG \\[default: classes.png next to the model]."),
):
    """One row per class, one column per seed: what the label changes and what z keeps."""
    loaded = load(model_file)
    if not models.conditional(loaded.cfg):
        require(loaded, "classes", "class-conditional models",
                [f"{n} (trained with labels)" if s.labels == "optional" else n
                 for n, s in SPECS.items() if s.labels != "never"])
    k = loaded.cfg.num_classes
    rows = parse_seeds(classes_, "classes", "--classes") if classes_ else list(range(k))
    if bad := [c for c in rows if not 0 <= c < k]:
        raise SampleError(f"classes must be in [0, {k}), got {bad}")
    seed_list = parse_seeds(seeds)
    check_truncation(loaded, truncation)
    labels = torch.tensor(rows).repeat_interleave(len(seed_list))
    images = models.sample(loaded.spec, loaded.G, loaded.cfg, seed_list * len(rows), labels,
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
    noise_mode: Optional[NoiseMode] = typer.Option(None, help=NOISE_HELP),
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
    rule = loaded.spec.truncation
    if rule is None:
        require(loaded, "truncation", "models with a truncation trick",
                having(lambda s: s.truncation is not None))
    symbol = rule.symbol
    rows = (parsed("--values", sampling.parse_floats, values, "truncation values") if values
            else list(rule.grid))
    points = (parsed("--curve-values", sampling.parse_floats, curve_values, "curve values")
              if curve_values else list(rule.curve)) if curve else []
    for option, v in [("--values", v) for v in rows] + [("--curve-values", v) for v in points]:
        check_truncation(loaded, v, option)
    seed_list = parse_seeds(seeds)
    options = options_for(loaded, noise_mode)
    labels = labels_for(loaded, class_, len(seed_list))
    folder = output_folder(out, loaded.home)
    images = torch.cat([models.sample(loaded.spec, loaded.G, loaded.cfg, seed_list, labels,
                                      truncation=v, **options) for v in rows])
    save_grid(folder / "truncation.png", images, nrow=len(seed_list))
    console.print(f"wrote {folder / 'truncation.png'}: rows {symbol} = "
                  f"{', '.join(f'{v:g}' for v in rows)}")
    if not curve:
        return
    dataset, split = open_data(data_, split, loaded)
    with console.status("measuring") as status:
        points, protocol = sampling.truncation_curve(
            loaded.spec, loaded.G, loaded.cfg, points, dataset, split, num_images=num_images,
            options=options, label=class_, extractor=extractor, seed=seed,
            batch_size=batch_size, cache_dir=cache_dir,
            progress=lambda v: status.update(f"{symbol} = {v:g}"))
    table = Table(title=f"fidelity/variety · {loaded.name} · {dataset.name} ({split})")
    for key in (symbol, "FID", "precision", "recall"):
        table.add_column(key, justify="right")
    for row in points:
        table.add_row(f"{row['truncation']:g}", f"{row['fid']:.2f}", f"{row['precision']:.3f}",
                      f"{row['recall']:.3f}")
    console.print(table)
    sampling.save_curve(folder, points, protocol, model=str(loaded.path), symbol=symbol,
                        title=f"{loaded.name} vs {dataset.name} ({split}, {num_images} images, "
                              f"{extractor})")
    console.print(f"wrote {folder / 'truncation-curve.png'}, .csv and .json")


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
    truncation: Optional[float] = typer.Option(None, help=TRUNCATION_HELP),
    noise_mode: Optional[NoiseMode] = typer.Option(None, help=NOISE_HELP),
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
    rule = loaded.spec.truncation
    if path is PathKind.walk and truncation is not None and rule.in_z:
        raise SampleError(f"--truncation with --path walk applies to models that truncate in W "
                          f"({', '.join(having(lambda s: s.truncation and not s.truncation.in_z))}); "
                          f"{loaded.name}'s {rule.symbol} resamples z, which a smooth walk cannot do")
    images = sampling.latent_path(
        loaded.spec, loaded.G, cfg, path.value, seed_list, truncation=truncation, options=options,
        labels_for=lambda n: labels_for(loaded, class_, n), frames=frames, loop=loop,
        num_frames=max(1, round(seconds * fps)), sigma=sigma * fps)
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


def parse_layers(loaded: Loaded, text: str) -> tuple[int, int]:
    """'coarse' | 'middle' | 'fine' | '0-3' | '4-' | '5' -> [start, stop) within num_ws styles."""
    return parsed("--layers", sampling.parse_layers, loaded.spec, loaded.cfg, text)


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
    start, stop = parse_layers(loaded, layers)
    row_seeds = parse_seeds(rows, "row seeds", "--rows")
    col_seeds = parse_seeds(columns, "column seeds", "--columns")
    mode = options_for(loaded, noise_mode)["noise_mode"]
    ws_a = sampling.mapped(loaded.spec, loaded.G, cfg, row_seeds,
                           labels_for(loaded, class_, len(row_seeds)), truncation)
    ws_b = sampling.mapped(loaded.spec, loaded.G, cfg, col_seeds,
                           labels_for(loaded, class_, len(col_seeds)), truncation)
    grid = sampling.mixing_grid(loaded.spec, loaded.G, ws_a, ws_b, start, stop, noise_mode=mode)
    out = out or default_out(loaded, f"mix-{layers}.png")
    save_grid(out, grid, nrow=len(col_seeds) + 1)
    console.print(f"wrote {out}: styles {start}-{stop - 1} of {len(ws_a[0])} from the columns")


# ---------------------------------------------------------------------------------- project


def load_targets(loaded: Loaded, images: list[Path], seeds: Optional[str],
                 data_: Optional[str], indices: Optional[str], split: Optional[str],
                 class_: Optional[int]) -> tuple[torch.Tensor, list[str]]:
    """Targets in [-1, 1] at the model's size: image files, dataset images, generated seeds."""
    if not images and indices is None and seeds is None:
        raise SampleError("nothing to project: give image files, --indices (with --data) or "
                          "--seeds")
    dataset = index_list = None
    if indices is not None:
        dataset, split = open_data(data_, split, loaded)
        index_list = parse_seeds(indices, "indices", "--indices")
    seed_list = parse_seeds(seeds) if seeds is not None else []
    try:
        return sampling.projection_targets(
            loaded.spec, loaded.G, loaded.cfg, images=images, dataset=dataset, split=split,
            indices=index_list or [], seeds=seed_list,
            labels_for=lambda n: labels_for(loaded, class_, n))
    except sampling.SamplingError as err:
        raise SampleError(err.problem if err.parameter == "images"
                          else f"--{err.parameter}: {err.problem}") from None


def calibration_targets(loaded: Loaded, data_: Optional[str], class_: Optional[int],
                        calibrate: int) -> torch.Tensor:
    """--detect without --threshold: `calibrate` generated images, then as many real ones (of
    the class the projection assumes), to set the threshold between them."""
    real_set, _ = open_data(data_, "train", loaded)
    return sampling.calibration_targets(loaded.spec, loaded.G, loaded.cfg, real_set,
                                        count=calibrate, label=class_,
                                        labels_for=lambda n: labels_for(loaded, class_, n))


def print_projection(result, names: list[str], space: str, steps: int,
                     report: Optional[dict], calibrate: int) -> None:
    """The table of distances (and verdicts), and where a calibration put the threshold."""
    detect = report is not None
    table = Table(title=f"projection into {space.upper()} · {steps} steps")
    for col in ("target", "distance") + (("verdict",) if detect else ()):
        table.add_column(col, justify="left" if col == "target" else "right")
    for i, name in enumerate(names):
        verdict = [report["targets"][i]["verdict"]] if detect else []
        table.add_row(escape(name), f"{result.distance[i].item():.4f}", *verdict)
    console.print(table)
    if detect and "calibration" in report:
        calib = report["calibration"]
        console.print(f"threshold {report['threshold']:.4f}, calibrated between {calibrate} "
                      f"generated (max {max(calib['generated']):.4f}) and {calibrate} real images "
                      f"(min {min(calib['real']):.4f})")


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
    from nanogan.projector import ClassifierDistance, separating_threshold
    from nanogan.projector import project as run_projection

    loaded = load(model_file)
    require_styled(loaded, "project")
    targets, names = load_targets(loaded, images or [], seeds, data_, indices, split, class_)
    n = len(targets)
    if detect and threshold is None:
        targets = torch.cat([targets, calibration_targets(loaded, data_, class_, calibrate)])
    labels = labels_for(loaded, class_, len(targets))
    distance = ClassifierDistance(pixel_weight=pixel_weight).to(_device())
    with console.status(f"projecting {len(targets)} images into {space.value.upper()}, "
                        f"{steps} steps"):
        result = run_projection(loaded.G, targets, steps=steps, space=space.value,
                                distance=distance, labels=labels, noise_weight=noise_weight,
                                w_samples=w_samples, generator=torch.Generator().manual_seed(seed),
                                snapshot_every=max(1, steps // 60))
    folder = output_folder(out, loaded.home / "projection")
    sampling.save_projection(folder, result, targets, names, space=space.value, steps=steps,
                             model=str(loaded.path))
    report = None
    if detect:
        if threshold is None:
            calib = result.distance[n:]
            threshold = separating_threshold(calib[:calibrate], calib[calibrate:])
        report = sampling.detection_report(result.distance, names, threshold,
                                           calibrate=calibrate, space=space.value, steps=steps)
        (folder / "detection.json").write_text(json.dumps(report, indent=2))
    print_projection(result, names, space.value, steps, report, calibrate)
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
    truncation: Optional[float] = typer.Option(None, help=TRUNCATION_HELP),
    noise_mode: Optional[NoiseMode] = typer.Option(None, help=NOISE_HELP),
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
        results = sampling.evaluate_model(
            loaded.spec, loaded.G, loaded.cfg, names, dataset, split, num_images=num_images,
            truncation=truncation, options=options_for(loaded, noise_mode), label=class_,
            extractor=extractor, seed=seed, batch_size=batch_size, cache_dir=cache_dir)
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
    if not models.conditional(loaded.cfg):
        require(loaded, "--per-class", "class-conditional models",
                having(lambda s: s.labels != "never"))
    accuracy = sampling.class_accuracies(loaded.spec, loaded.G, loaded.cfg,
                                         num_images=num_images, truncation=truncation,
                                         options=options, extractor=extractor, seed=seed,
                                         batch_size=batch_size)
    k, per = loaded.cfg.num_classes, accuracy["images_per_class"]
    names = list(data.FASHION_MNIST_CLASSES) if k == len(data.FASHION_MNIST_CLASSES) else []
    table = Table(title=f"classifier accuracy on {per} generated images per class ({extractor})")
    table.add_column("class")
    table.add_column("accuracy")
    for c in range(k):
        table.add_row(f"{c} {names[c]}" if names else str(c), f"{accuracy[f'acc_{c}']:.3f}")
    table.add_row("mean", f"{accuracy['acc_mean']:.3f}")
    console.print(table)
    return accuracy


COMMANDS = {"grid", "classes", "truncation", "interpolate", "mix", "project", "score"}


def main(argv: Optional[list[str]] = None) -> None:
    """`python sample.py MODEL --seeds …` means `python sample.py grid MODEL --seeds …`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] not in COMMANDS and not args[0].startswith("-"):
        args.insert(0, "grid")
    app(args, prog_name="sample.py")


if __name__ == "__main__":
    main()
