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

This file is the command line only: options, tables, progress and the "wrote …" lines. What the
commands compute, and the checks of a request against the model, are in nanogan/sampling.py and
nanogan/loading.py, whose errors name their own parameters; `friendly` words them as options.
"""

from __future__ import annotations

import functools
import math
import sys
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from nanogan import checkpoint, config, data, loading, models, runs, sampling
from nanogan.images import save_grid
from nanogan.loading import Loaded

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Use a trained generator: `python sample.py MODEL --seeds 0-63` draws a "
                       "grid; the commands below do the rest.")
console = Console()
errors = Console(stderr=True)

SPECS = models.SPECS
having = loading.having
TRUNCATION_HELP = " or ".join(f"{s.truncation.symbol} ({n})" for n, s in SPECS.items()
                              if s.truncation) + "."
NOISE_HELP = "Noise inputs (" + ", ".join(having(lambda s: "noise_mode" in s.GENERATE_OPTIONS)) \
    + ") \\[default: const]."


class SampleError(Exception):
    """A problem with the user's request: printed as one red line, exit status 2."""


USER_ERRORS = (SampleError, config.ConfigError, checkpoint.CheckpointError, data.DataError,
               data.DatasetNotFoundError, runs.RunError, ValueError)
FLAGS = {"label": "--class", "images": None}  # the library's parameters that are not --name


def flag(parameter: str) -> str | None:
    """The option that sets a library parameter: noise_mode -> --noise-mode (None: an argument)."""
    return FLAGS.get(parameter, "--" + parameter.replace("_", "-"))


def worded(err: Exception) -> str:
    """The message of an error, a library SamplingError worded with this command line's options
    ("--class must be in …" for the library's "label must be in …")."""
    if not isinstance(err, sampling.SamplingError):
        return str(err)
    return err.problem if flag(err.parameter) is None else err.worded(flag)


def friendly(command):
    """Errors that name a problem of the request (bad arguments, unreadable files, missing data)
    end the command with that message and status 2 instead of a traceback."""
    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except USER_ERRORS as err:
            errors.print("[red]error:[/]", end=" ")
            errors.print(worded(err), markup=False, highlight=False, soft_wrap=True)  # [paths]
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


def mode(noise_mode: Optional[NoiseMode]) -> Optional[str]:
    """--noise-mode as the library takes it: the mode's name, or None when not given."""
    return None if noise_mode is None else noise_mode.value


def load(path: Path) -> Loaded:
    """loading.load, saying which file a run folder gave."""
    loaded = loading.load(path)
    if loaded.path != path:
        console.print(f"[dim]reading {escape(str(loaded.path))}[/]", highlight=False)
    return loaded


def show(title: str, columns: tuple[str, ...], rows, right: tuple[str, ...] = ()) -> None:
    """A rich table: the columns named in `right` right-justified, the others left."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="right" if column in right else "left")
    for row in rows:
        table.add_row(*row)
    console.print(table)


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
    images = sampling.seed_images(loaded, seed_list, label=class_, truncation=truncation,
                                  noise_mode=mode(noise_mode))
    out = out or loaded.home / f"seeds-{seed_list[0]}-{seed_list[-1]}.png"
    save_grid(out, images, nrow=columns)
    if per_seed:
        sampling.save_per_seed(out.parent, seed_list, images)
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
    loading.require_conditional(loaded, "classes")
    rows = (parse_seeds(classes_, "classes", "--classes") if classes_
            else list(range(loaded.cfg.num_classes)))
    seed_list = parse_seeds(seeds)
    images = sampling.class_grid(loaded, rows, seed_list, truncation=truncation,
                                 noise_mode=mode(noise_mode))
    out = out or loaded.home / "classes.png"
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
    extractor: str = typer.Option("fashion", help="Feature extractor: fashion | inception | pixels."),
    seed: int = typer.Option(0, min=0, max=MAX_SEED, help="Seed of the curve's generated images."),
    batch_size: int = typer.Option(64, min=1, help="Batch size for generation and features."),
    cache_dir: Optional[Path] = typer.Option(None, help="Cache of real features \\[default: ~/.cache/nanogan/stats]."),
    out: Optional[Path] = typer.Option(None, help="Output folder \\[default: the model's folder]."),
):
    """Rows of one seed set at decreasing truncation; --curve: the fidelity/variety trade-off."""
    loaded = load(model_file)
    rule = loading.truncation_rule(loaded, "truncation")
    symbol = rule.symbol
    rows = (parsed("--values", sampling.parse_floats, values, "truncation values") if values
            else list(rule.grid))
    points = (parsed("--curve-values", sampling.parse_floats, curve_values, "curve values")
              if curve_values else list(rule.curve)) if curve else []
    for parameter, v in [("values", v) for v in rows] + [("curve_values", v) for v in points]:
        loading.check_truncation(loaded, v, parameter)
    seed_list = parse_seeds(seeds)
    if curve:  # FID and precision/recall need the extractor: refused before any image is drawn
        from nanogan.evaluate import check_extractor

        check_extractor(sampling.CURVE_METRICS, extractor)
    folder = output_folder(out, loaded.home)
    images = sampling.truncation_grid(loaded, seed_list, rows, label=class_,
                                      noise_mode=mode(noise_mode))
    save_grid(folder / "truncation.png", images, nrow=len(seed_list))
    console.print(f"wrote {folder / 'truncation.png'}: rows {symbol} = "
                  f"{', '.join(f'{v:g}' for v in rows)}")
    if not curve:
        return
    dataset, split = sampling.open_data(data_, split, loaded.cfg)
    with console.status("measuring") as status:
        points, protocol = sampling.truncation_curve(
            loaded.spec, loaded.G, loaded.cfg, points, dataset, split, num_images=num_images,
            options=loading.generate_options(loaded, mode(noise_mode)), label=class_,
            extractor=extractor, seed=seed, batch_size=batch_size, cache_dir=cache_dir,
            progress=lambda v: status.update(f"{symbol} = {v:g}"))
    show(f"fidelity/variety · {loaded.name} · {dataset.name} ({split})",
         (symbol, "FID", "precision", "recall"),
         [(f"{row['truncation']:g}", f"{row['fid']:.2f}", f"{row['precision']:.3f}",
           f"{row['recall']:.3f}") for row in points], right=(symbol, "FID", "precision", "recall"))
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
    images = sampling.video_frames(
        loaded, path.value, seed_list, label=class_, truncation=truncation,
        noise_mode=mode(noise_mode), frames=frames, loop=loop,
        num_frames=max(1, round(seconds * fps)), sigma=sigma * fps)
    out = out or loaded.home / f"interpolate-{path.value}-{seed_list[0]}.gif"
    written = sampling.save_video(out, images, scale=scale, fps=fps)
    console.print(f"wrote {' and '.join(map(str, written))}: {len(images)} frames"
                  + ("" if len(written) > 1 else " (no ffmpeg on PATH: GIF only)"))


# -------------------------------------------------------------------------------------- mix


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
    loading.require_styled(loaded, "mix")
    start, stop = parsed("--layers", sampling.parse_layers, loaded.spec, loaded.cfg, layers)
    row_seeds = parse_seeds(rows, "row seeds", "--rows")
    col_seeds = parse_seeds(columns, "column seeds", "--columns")
    grid = sampling.style_mix(loaded, row_seeds, col_seeds, start, stop, label=class_,
                              truncation=truncation, noise_mode=mode(noise_mode))
    out = out or loaded.home / f"mix-{layers}.png"
    save_grid(out, grid, nrow=len(col_seeds) + 1)
    console.print(f"wrote {out}: styles {start}-{stop - 1} of "
                  f"{loaded.spec.styles.num_ws(loaded.cfg)} from the columns")


# ---------------------------------------------------------------------------------- project


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
    loaded = load(model_file)
    loading.require_styled(loaded, "project")
    if not images and indices is None and seeds is None:
        raise SampleError("nothing to project: give image files, --indices (with --data) or "
                          "--seeds")
    dataset = None
    if indices is not None:
        dataset, split = sampling.open_data(data_, split, loaded.cfg)
    calibration = (sampling.open_data(data_, "train", loaded.cfg)[0]
                   if detect and threshold is None else None)
    targets, names = sampling.projection_inputs(
        loaded, images=images or [], dataset=dataset, split=split,
        indices=parse_seeds(indices, "indices", "--indices") if indices is not None else [],
        seeds=parse_seeds(seeds) if seeds is not None else [], label=class_,
        calibration_set=calibration, calibrate=calibrate)
    folder = output_folder(out, loaded.home / "projection")
    with console.status(f"projecting {len(targets)} images into {space.value.upper()}, "
                        f"{steps} steps"):
        result = sampling.projection(loaded, targets, label=class_, space=space.value,
                                     steps=steps, pixel_weight=pixel_weight,
                                     noise_weight=noise_weight, w_samples=w_samples, seed=seed)
    sampling.save_projection(folder, result, targets, names, space=space.value, steps=steps,
                             model=str(loaded.path))
    report = sampling.detect(folder, result, names, threshold=threshold, calibrate=calibrate,
                             space=space.value, steps=steps) if detect else None
    print_projection(result, names, space.value, steps, report, calibrate)
    console.print(f"wrote {folder}/projected.safetensors, projection.png, projection.gif"
                  + (", detection.json" if detect else ""))


def print_projection(result, names: list[str], space: str, steps: int,
                     report: Optional[dict], calibrate: int) -> None:
    """The table of distances (and verdicts), and where a calibration put the threshold."""
    detect = report is not None
    show(f"projection into {space.upper()} · {steps} steps",
         ("target", "distance") + (("verdict",) if detect else ()),
         [(escape(name), f"{result.distance[i].item():.4f}")
          + ((report["targets"][i]["verdict"],) if detect else ()) for i, name in enumerate(names)],
         right=("distance", "verdict"))
    if detect and "calibration" in report:
        calib = report["calibration"]
        console.print(f"threshold {report['threshold']:.4f}, calibrated between {calibrate} "
                      f"generated (max {max(calib['generated']):.4f}) and {calibrate} real images "
                      f"(min {min(calib['real']):.4f})")


# ------------------------------------------------------------------------------------ score


@command
def score(
    model_file: Path = typer.Argument(..., help="A model file, checkpoint, snapshot or run folder (its model.safetensors, else newest snapshot)."),
    metrics: str = typer.Option("fid,kid,pr", help="Comma-separated: swd, fid, kid, pr, dc, msssim, is."),
    data_: Optional[str] = typer.Option(None, "--data", help="Real images \\[default: fashion-mnist]."),
    split: Optional[str] = typer.Option(None, help="Dataset split \\[default: test where there is one]."),
    num_images: int = typer.Option(1000, min=2, help="Generated (and real) images."),
    truncation: Optional[float] = typer.Option(None, help=TRUNCATION_HELP),
    noise_mode: Optional[NoiseMode] = typer.Option(None, help=NOISE_HELP),
    class_: Optional[int] = typer.Option(None, "--class", help="Only this class \\[default: uniform labels]."),
    extractor: str = typer.Option("fashion", help="Feature extractor: fashion | inception | pixels."),
    seed: int = typer.Option(0, min=0, max=MAX_SEED, help="Seed of the generated images and the metrics' draws."),
    batch_size: int = typer.Option(64, min=1, help="Batch size for generation and features."),
    cache_dir: Optional[Path] = typer.Option(None, help="Cache of real features \\[default: ~/.cache/nanogan/stats]."),
    per_class: bool = typer.Option(False, "--per-class", help="Conditional models: the classifier's accuracy on each class's images."),
    out: Optional[Path] = typer.Option(None, help="Output JSON \\[default: scores.json next to the model]."),
):
    """Evaluation metrics of a model against a dataset, each with its protocol."""
    from nanogan.evaluate import check_extractor, parse_metrics

    loaded = load(model_file)
    names = parse_metrics(metrics)  # before any data is opened
    loading.request(loaded, 1, label=class_, truncation=truncation)  # checked before the data
    options = loading.generate_options(loaded, mode(noise_mode))
    if per_class:
        loading.require_conditional(loaded, "--per-class")
        if extractor == "pixels":
            raise sampling.SamplingError("extractor", "--per-class needs a classifier of the "
                                         "model's classes (fashion for Fashion-MNIST), not "
                                         "'pixels'")
    check_extractor(names, extractor)  # e.g. "is" on pixels: refused before the data is read
    dataset, split = sampling.open_data(data_, split, loaded.cfg)
    with console.status(f"scoring {num_images} images"):
        results = sampling.evaluate_model(
            loaded.spec, loaded.G, loaded.cfg, names, dataset, split, num_images=num_images,
            truncation=truncation, options=options, label=class_, extractor=extractor,
            seed=seed, batch_size=batch_size, cache_dir=cache_dir)
    show(escape(f"{loaded.name} · {loaded.path}"),
         ("metric", "value", "extractor", "images", "split", "dataset"),
         [(name, ", ".join(f"{k} {v:.4g}" for k, v in r.value.items())
           if isinstance(r.value, dict) else f"{r.value:.4g}",
           r.protocol.extractor + (f" ({r.protocol.resize})" if r.protocol.resize else ""),
           str(r.protocol.num_images), r.protocol.split, r.protocol.dataset)
          for name, r in results.items()])
    accuracy = None
    if per_class:
        accuracy = sampling.class_accuracies(
            loaded.spec, loaded.G, loaded.cfg, num_images=num_images, truncation=truncation,
            options=options, extractor=extractor, seed=seed, batch_size=batch_size)
        print_accuracies(accuracy, loaded.cfg.num_classes, extractor)
    out = out or loaded.home / "scores.json"
    sampling.save_scores(out, results, model=str(loaded.path), truncation=truncation,
                         label=class_, seed=seed, accuracy=accuracy)
    console.print(f"wrote {out}")


def print_accuracies(accuracy: dict, k: int, extractor: str) -> None:
    """The classifier's accuracy on each class's images (Fashion-MNIST's class names for 10)."""
    names = list(data.FASHION_MNIST_CLASSES) if k == len(data.FASHION_MNIST_CLASSES) else []
    show(f"classifier accuracy on {accuracy['images_per_class']} generated images per class "
         f"({extractor})", ("class", "accuracy"),
         [(f"{c} {names[c]}" if names else str(c), f"{accuracy[f'acc_{c}']:.3f}")
          for c in range(k)] + [("mean", f"{accuracy['acc_mean']:.3f}")])


COMMANDS = {"grid", "classes", "truncation", "interpolate", "mix", "project", "score"}


def main(argv: Optional[list[str]] = None) -> None:
    """`python sample.py MODEL --seeds …` means `python sample.py grid MODEL --seeds …`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] not in COMMANDS and not args[0].startswith("-"):
        args.insert(0, "grid")
    app(args, prog_name="sample.py")


if __name__ == "__main__":
    main()
