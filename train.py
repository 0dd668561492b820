"""Train a GAN: `python train.py --model stylegan2` (or progan, biggan).

The same script runs on a laptop CPU, one GPU, many GPUs, many nodes or a TPU through
HuggingFace Accelerate: `accelerate launch train.py ...` or `torchrun --nproc_per_node N train.py`.

`main` reads as the run's steps: settle the run (new, or resumed with its identity kept) -> open
the data -> check everything that could fail late (metrics setup, batch splits) -> build the
Accelerator and the model's recipe -> train, with a tick every `--log-every` steps (log, trackers,
stop requests), grids, numbered snapshots and metrics every few kimg -> save -> final metrics.
The loop itself lives in nanogan/trainer.py (`Trainer`, `finish`); this script owns the command
line, the Accelerator, the rich progress bar and messages (`RichDisplay`) and the exit codes.
Only the main process writes files. Ctrl-C (or SIGTERM) stops at the next tick, saves, and
exits; `--resume RUN` continues exactly where the run stopped, and `--resume auto` (for
`torchrun --max-restarts N`) continues the run in `--out` if it has a checkpoint.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import List, Optional

import torch
import torch.distributed as dist
import typer
from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
from accelerate.utils import DistributedType, ProjectConfiguration
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from nanogan import checkpoint, config, evaluate, models, runs
from nanogan.data import DataError, DatasetNotFoundError, has_test_split, open_dataset
from nanogan.runs import RUN_KEYS, Run
from nanogan.sources import UnreadableImageError
from nanogan.streaming import subset
from nanogan.trainer import (ON_NONFINITE, Display, Options, Trainer, build_recipe,
                             default_workers, finish, use_fast_kernels)

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
console = Console()
errors = Console(stderr=True)
PRECISIONS = ("no", "fp16", "bf16")


class Precision(str, Enum):
    no = "no"
    fp16 = "fp16"
    bf16 = "bf16"


OnNonFinite = Enum("OnNonFinite", {p: p for p in ON_NONFINITE}, type=str)


class Augment(str, Enum):
    none = "none"
    ada = "ada"
    diffaugment = "diffaugment"


class Cache(str, Enum):
    auto = "auto"
    ram = "ram"
    stream = "stream"


class ReportTo(str, Enum):
    none = "none"
    tensorboard = "tensorboard"
    wandb = "wandb"
    all = "all"


# ------------------------------------------------------------------------- settling the run


def _default_out(model: str, preset: str) -> Path:
    base = Path("runs") / f"{model}-{preset}"
    out, n = base, 1
    while (out / "checkpoint.safetensors").exists():
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return out


def resolve(model: str, preset: str, kimg, batch_size, resolution, overrides) -> object:
    module = config.choose(model, models.MODELS, "model")
    cfg = config.choose(preset, module.PRESETS, f"preset for {model}")
    flags = [f"{k}={v}" for k, v in (("kimg", kimg), ("batch_size", batch_size),
                                     ("resolution", resolution)) if v is not None]
    return config.apply_overrides(cfg, flags + list(overrides))


def effective_precision(flag: Optional[str], stored: Optional[str] = None) -> str:
    """--precision, else the resumed run's, else Accelerate's setting (`accelerate launch
    --mixed_precision`, `accelerate config`, ACCELERATE_MIXED_PRECISION), else "no".

    A resumed run keeps its own precision over Accelerate's: `accelerate launch` always sets
    ACCELERATE_MIXED_PRECISION ("no" by default), so it cannot tell a choice from a default."""
    value = flag or stored or os.environ.get("ACCELERATE_MIXED_PRECISION") or "no"
    if value not in PRECISIONS:
        raise typer.BadParameter(f"mixed precision {value!r} (from Accelerate's settings) is not "
                                 f"one of {', '.join(PRECISIONS)}", param_hint="--precision")
    if value == "fp16" and _no_accelerator():
        raise typer.BadParameter("fp16 autocast needs a GPU; on a CPU use bf16",
                                 param_hint="--precision")
    return value


def settle_run(*, model, preset, data, out, kimg, batch_size, resolution, seed, precision,
               resume, set_, mirror, skip_bad, max_images=None) -> Run:
    """A new run from the preset and flags, or the stored run when resuming (identity kept)."""
    if resume is not None and str(resume) == "auto":
        if out is None:
            raise typer.BadParameter("--resume auto needs --out (the run to continue or start)",
                                     param_hint="--resume")
        resume = out if (out / "checkpoint.safetensors").exists() else None
    if resume is None:
        model = model or "stylegan2"
        cfg = resolve(model, preset, kimg, batch_size, resolution, set_)
        return Run(model, preset, models.MODELS[model], cfg, out or _default_out(model, preset),
                   0 if seed is None else seed, effective_precision(precision), data, mirror,
                   skip_bad, max_images=max_images)
    _check_shared(resume)
    ckpt_path = runs.training_file(resume)
    stored = checkpoint.load(ckpt_path, kind="training", model=model)
    run_dir = out or (ckpt_path.parent.parent if ckpt_path.parent.name == runs.SNAPSHOTS
                      else ckpt_path.parent)
    original = runs.read_config(run_dir) if (run_dir / "config.json").is_file() else {}
    stored_run = {k: stored.config.pop(k, None) for k in RUN_KEYS}
    module = models.MODELS[stored.model]
    cfg = config.from_dict(module.Config, stored.config)
    first_seed = original.get("seed", stored.state["progress"]["seed"])
    kept = {"--seed": first_seed, "--batch-size": cfg.batch_size,
            "--resolution": cfg.resolution, "--max-images": stored_run["_max_images"]}
    flags = [f"kimg={kimg}"] if kimg is not None else []
    cfg = config.apply_overrides(cfg, flags + list(set_))
    for flag, given in (("--seed", seed), ("--batch-size", batch_size),
                        ("--batch-size", cfg.batch_size), ("--resolution", resolution),
                        ("--resolution", cfg.resolution), ("--max-images", max_images)):
        if given is not None and given != kept[flag]:  # the data order and shapes depend on them
            raise typer.BadParameter(f"this run was started with {flag} {kept[flag]}; a resumed "
                                     "run keeps it (start a new run to change it)", param_hint=flag)
    return Run(stored.model, stored_run["_preset"] or "tiny", module, cfg, run_dir, first_seed,
               effective_precision(precision, original.get("precision")),
               data or stored_run["_data"], mirror or bool(stored_run["_mirror"]),
               skip_bad or bool(stored_run["_skip_bad"]), stored.state,
               max_images=stored_run["_max_images"])


def _processes_per_node(world: int) -> int:
    """The training processes on this machine (torchrun and accelerate launch say so), else all
    of them (as under torch_xla's own spawn, which does not say: fewer loader workers)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", world))


def _several_nodes() -> bool:
    world = int(os.environ.get("WORLD_SIZE", 1))
    return world > _processes_per_node(world)


def _check_shared(path: Path) -> None:
    if not path.exists() and _several_nodes():
        raise checkpoint.CheckpointError(
            f"{path} is not on this node ({socket.gethostname()}). Every process reads the "
            "checkpoint that rank 0 wrote: on several nodes the run folder (--out) must be on a "
            "filesystem they share")


def check_same_start(run: Run, accelerator: Accelerator) -> None:
    """Every process must continue from the same step (each read the checkpoint from its own
    disk: on several nodes without a shared filesystem, --resume auto could find it on some)."""
    step = run.state["progress"]["step"] if run.state else -1
    steps = accelerator.gather(torch.tensor([step], device=accelerator.device)).tolist()
    if len(set(steps)) > 1:
        raise checkpoint.CheckpointError(
            f"the processes found different checkpoints in {run.out} (steps {steps}; -1: "
            "none): on several nodes the run folder (--out) must be on a filesystem they share")


def record_start(run: Run, dataset, world: int, grad_accum: int, images_seen: int) -> None:
    """config.json keeps the options the run started with and gains one record per start."""
    if run.state is None or not (run.out / "config.json").is_file():
        runs.create_config(run.out, {
            "model": run.model, "preset": run.preset, "seed": run.seed,
            "config": run.run_config, "world_size": world, "precision": run.precision,
            "grad_accum": grad_accum, "data": dataset.name, "images": len(dataset),
            "skipped": len(dataset.skipped)})
    runs.add_start(run.out, {
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]], "kimg": images_seen / 1000,
        "world_size": world, "precision": run.precision, "grad_accum": grad_accum,
        **runs.environment()})


# ---------------------------------------------------------------------------- building


def _config_table(run: Run, dataset, grad_accum: int) -> Table:
    table = Table(title=f"{run.model} · preset {run.preset}", show_header=True,
                  header_style="bold")
    table.add_column("key")
    table.add_column("value")
    for key, value in config.to_dict(run.cfg).items():
        table.add_row(key, str(value))
    table.add_row("[dim]precision", f"[dim]{run.precision}")
    table.add_row("[dim]seed, grad_accum", f"[dim]{run.seed}, {grad_accum}")
    table.add_row("[dim]dataset", f"[dim]{dataset.name}: {len(dataset)} images, "
                  f"{dataset.channels}×{dataset.resolution}², {dataset.num_classes} classes, "
                  f"{'decoded once' if dataset.cache == 'ram' else 'streamed'}")
    return table


def _no_accelerator() -> bool:
    from accelerate.utils import (is_mps_available, is_npu_available, is_torch_xla_available,
                                  is_xpu_available)
    return not (torch.cuda.is_available() or is_torch_xla_available() or is_npu_available()
                or is_xpu_available() or is_mps_available())


def make_accelerator(module, precision: str = "no", *, report_to: tuple[str, ...] = (),
                     out: Optional[Path] = None) -> Accelerator:
    """One Accelerator per run: batches split over processes, DDP told about idle layers.

    DDP does not broadcast buffers: every buffer of the three models is equal on all processes
    by construction (noise constants, w̄ and the path-length mean from all-reduced statistics,
    spectral-norm vectors from equal weights, cross-replica BatchNorm statistics), so the
    per-forward broadcast would only cost time. test_distributed checks they stay equal.
    """
    return Accelerator(
        cpu=_no_accelerator(),  # so that torchrun on CPUs starts gloo, not N lone processes
        mixed_precision=precision,
        log_with=list(report_to) or None,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(
            out / "tensorboard")) if out is not None else None,
        dataloader_config=DataLoaderConfiguration(split_batches=True,
                                                  non_blocking=torch.cuda.is_available()),
        kwargs_handlers=[DistributedDataParallelKwargs(
            find_unused_parameters=module.FIND_UNUSED_PARAMETERS, broadcast_buffers=False)])


def connect_processes(accelerator: Accelerator) -> None:
    """A process group for the models' own reductions, or a refusal, before any work starts.

    Cross-replica BatchNorm (BigGAN), StyleGAN2's w̄ and path-length mean and ADA's counts are
    reduced over processes with torch.distributed. Accelerate starts its process group on GPUs
    and CPUs but not on a TPU, where these reductions would silently do nothing and every
    replica would train with its own statistics: there, XLA's backend is started the way
    torch_xla documents it. Anywhere else several processes without a group are refused.
    bf16 on a TPU is refused too: Accelerate sets XLA_USE_BF16=1 (or XLA_DOWNCAST_BF16=1),
    which stores every fp32 tensor in bf16, the penalties included (in the torch_xla versions
    that honour them)."""
    xla = accelerator.distributed_type == DistributedType.XLA
    bf16_everywhere = "1" in (os.environ.get("XLA_USE_BF16"), os.environ.get("XLA_DOWNCAST_BF16"))
    if xla and bf16_everywhere:  # what Accelerate sets for bf16 on a TPU (or with its downcast)
        raise typer.BadParameter(
            "bf16 on a TPU makes every tensor bf16 (Accelerate sets XLA_USE_BF16=1 or "
            "XLA_DOWNCAST_BF16=1), the R1, path-length and gradient penalties included; train "
            "in fp32 (--precision no: XLA already multiplies fp32 matrices in bf16 passes on a "
            "TPU by default)",
            param_hint="--precision")
    if accelerator.num_processes == 1 or dist.is_initialized():
        return
    if xla:
        import torch_xla.distributed.xla_backend  # noqa: F401  (registers the "xla" backend)
        dist.init_process_group("xla", init_method="xla://")
    else:
        raise RuntimeError(
            f"{accelerator.num_processes} processes ({accelerator.distributed_type}) but no "
            "torch.distributed process group: the models' statistics would not be shared. "
            "Launch with torchrun or accelerate launch")


# ---------------------------------------------------------------------------- display


class RichDisplay(Display):
    """The main process's progress bar and messages: results on stdout, warnings (yellow) and
    errors (red) on stderr. Where stdout is not a terminal (a log file, a scheduler's capture),
    every tick also prints one line: `kimg 1.28  250.8 img/s  loss_D … loss_G …`."""

    def __init__(self, out: Console = console, err: Console = errors):
        self.out, self.err, self.bar, self.task = out, err, None, None

    @contextlib.contextmanager
    def progress(self, name: str, total_kimg: float, done_kimg: float):
        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                            TextColumn("{task.completed:.1f}/{task.total:.0f} kimg"),
                            TextColumn("{task.fields[speed]}"), TextColumn("{task.fields[info]}"),
                            TimeElapsedColumn(), TimeRemainingColumn(), console=self.out)
        with self.bar:
            self.task = self.bar.add_task(name, total=total_kimg, completed=done_kimg, speed="",
                                          info="")
            yield

    def advance(self, done_kimg: float) -> None:
        self.bar.update(self.task, completed=done_kimg)

    def tick(self, kimg: float, speed: float, info: str) -> None:
        self.bar.update(self.task, speed=f"{speed:.1f} img/s", info=info)
        if not self.out.is_terminal:
            self.out.print(f"kimg {kimg:.2f}  {speed:.1f} img/s  {info}")

    def say(self, message: str) -> None:
        self.out.print(message)

    def warn(self, message: str) -> None:
        self.err.print(f"[yellow]{message}")

    def error(self, message: str) -> None:
        self.err.print(f"[red]{message}")


# ---------------------------------------------------------------------------- checks


def check_numbers(**values) -> None:
    """Every numeric option in its range (exit 2 naming the allowed values)."""
    rules = {"kimg": (0, True), "batch_size": (1, False), "grad_accum": (1, False),
             "workers": (0, False), "log_every": (1, False), "grid_kimg": (0, False),
             "snapshot_kimg": (0, False), "metrics_kimg": (0, False),
             "metrics_images": (2, False), "threads": (1, False), "keep_snapshots": (0, False),
             "max_images": (1, False)}
    for name, value in values.items():
        low, strict = rules[name]
        if value is not None and (value <= low if strict else value < low):
            sign = ">" if strict else ">="
            zero = {"grid_kimg": " (0 = never)", "snapshot_kimg": " (0 = only at the end)",
                    "metrics_kimg": " (0 = only at the end)", "keep_snapshots": " (0 = all)"}
            raise typer.BadParameter(f"must be {sign} {low}{zero.get(name, '')}, got {value}",
                                     param_hint="--" + name.replace("_", "-"))


def metrics_setup(names: list[str], run: Run, dataset, *, extractor: str, num_images: int
                  ) -> dict:
    """The reference images and split for --metrics, checked before the first step."""
    if not names:
        return {"reference": None, "split": None}
    split = "test" if has_test_split(run.data) else "train"  # folders and zips: one split
    reference = dataset if split == "train" else open_dataset(
        run.data, resolution=run.cfg.resolution, channels=run.cfg.channels, split=split)
    try:
        evaluate.check_setup(names, extractor=extractor, num_images=num_images,
                             num_real=len(reference), resolution=run.cfg.resolution,
                             channels=run.cfg.channels)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--metrics") from err
    return {"reference": reference, "split": split}


def _metric_names(text: str) -> list[str]:
    try:
        return evaluate.parse_metrics(text)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--metrics") from err


def _trackers(report_to: ReportTo) -> tuple[str, ...]:
    chosen = {"none": (), "all": ("tensorboard", "wandb")}.get(report_to.value,
                                                              (report_to.value,))
    from accelerate.utils import is_tensorboard_available, is_wandb_available
    for name, available in (("tensorboard", is_tensorboard_available),
                            ("wandb", is_wandb_available)):
        if name in chosen and not available():
            raise typer.BadParameter(f"{name} is not installed (pip install {name})",
                                     param_hint="--report-to")
    return chosen

# ---------------------------------------------------------------------------- main


@app.command()
def main(
    model: Optional[str] = typer.Option(None, help="stylegan2 | progan | biggan \\[default: stylegan2]"),
    preset: str = typer.Option("tiny", help="Named configuration in the model file."),
    data: Optional[str] = typer.Option(None, help="fashion-mnist (default), an image folder, a .zip (e.g. from python -m nanogan.prepare), or a CIFAR-10 folder."),
    out: Optional[Path] = typer.Option(None, help="Run folder \\[default: runs/MODEL-PRESET, numbered if taken]."),
    kimg: Optional[float] = typer.Option(None, help="Train until this many thousand real images were shown to D."),
    batch_size: Optional[int] = typer.Option(None, help="Global batch size (split over processes)."),
    resolution: Optional[int] = typer.Option(None, help="Power-of-two image size."),
    seed: Optional[int] = typer.Option(None, help="Seeds weights, data order and every random draw \\[default: 0]."),
    precision: Optional[Precision] = typer.Option(None, help="Mixed precision; R1, path length and the gradient penalty stay fp32 \\[default: Accelerate's setting, else no]."),
    grad_accum: int = typer.Option(1, help="Split every phase's batch into this many accumulated micro-batches."),
    resume: Optional[Path] = typer.Option(None, help="Continue a run: its folder, checkpoint or a snapshot; 'auto' = the run in --out if it has a checkpoint (for torchrun --max-restarts)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved configuration and exit."),
    set_: List[str] = typer.Option([], "--set", help="Override a config field: --set key=value (repeatable)."),
    mirror: bool = typer.Option(False, "--mirror", help="Add horizontally mirrored copies of the data."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip unreadable images (counted in config.json) instead of failing."),
    augment: Optional[Augment] = typer.Option(None, help="Augment every image D sees: ada (adaptive, ADA's bgc) or diffaugment; same as --set augment=... \\[default: none]."),
    max_images: Optional[int] = typer.Option(None, help="Train on a fixed subset of this many images (the same in every run, before --mirror)."),
    cache: Cache = typer.Option(Cache.auto, help="Decode the data once into memory/a memmap (ram), read it on the fly (stream), or choose by size (auto)."),
    grid_kimg: float = typer.Option(Options.grid_kimg, help="Write a sample grid every this many kimg (0 = never)."),
    snapshot_kimg: float = typer.Option(Options.snapshot_kimg, help="Write a checkpoint and a numbered snapshot every this many kimg."),
    keep_snapshots: int = typer.Option(Options.keep_snapshots, help="Numbered snapshots kept in RUN/snapshots (0 = all)."),
    metrics: str = typer.Option("", help="Metrics to compute while training, e.g. fid,kid,pr,dc (off by default)."),
    metrics_kimg: float = typer.Option(Options.metrics_kimg, help="Compute --metrics every this many kimg and at the end."),
    metrics_images: int = typer.Option(Options.metrics_images, help="Generated and real images per metric evaluation."),
    extractor: str = typer.Option(Options.extractor, help="Features for fid/kid/pr/dc/is: fashion (offline, 32² grey), inception, or pixels (no is)."),
    on_nonfinite: OnNonFinite = typer.Option(OnNonFinite(Options.on_nonfinite), help="After a NaN/inf loss: stop, or roll back to the last checkpoint with a new seed."),
    report_to: ReportTo = typer.Option(ReportTo.none, help="Also log to trackers through Accelerate."),
    log_every: int = typer.Option(Options.log_every, help="Log losses and speed (and check for Ctrl-C) every this many steps."),
    workers: Optional[int] = typer.Option(None, help="DataLoader worker processes \\[default: 0 on a CPU, up to 4 on a GPU]."),
    threads: Optional[int] = typer.Option(None, help="CPU threads per process (1 is faster on a busy machine)."),
):
    """Train StyleGAN2, ProGAN or BigGAN; writes grids, a JSONL log and checkpoints to --out."""
    check_numbers(kimg=kimg, batch_size=batch_size, grad_accum=grad_accum, workers=workers,
                  log_every=log_every, grid_kimg=grid_kimg, snapshot_kimg=snapshot_kimg,
                  metrics_kimg=metrics_kimg, metrics_images=metrics_images, threads=threads,
                  keep_snapshots=keep_snapshots, max_images=max_images)
    metric_names = _metric_names(metrics)
    trackers = _trackers(report_to)
    if threads:
        torch.set_num_threads(threads)
    run = settle_run(model=model, preset=preset, data=data, out=out, kimg=kimg,
                     batch_size=batch_size, resolution=resolution, seed=seed,
                     precision=precision.value if precision else None, resume=resume,
                     set_=([f"augment={augment.value}"] if augment else []) + list(set_),
                     mirror=mirror, skip_bad=skip_bad, max_images=max_images)
    dataset = open_data(run, cache.value, explicit_channels=any(
        s.split("=")[0].strip() == "channels" for s in set_))
    measured = metrics_setup(metric_names, run, dataset, extractor=extractor,
                             num_images=metrics_images)
    if dry_run:
        console.print(_config_table(run, dataset, grad_accum))
        console.print(f"would write to [bold]{run.out}[/]")
        return
    if run.state is None and (run.out / "checkpoint.safetensors").exists():
        raise typer.BadParameter(f"{run.out} already holds a run; continue it with --resume "
                                 f"{run.out} or choose another --out", param_hint="--out")

    accelerator = make_accelerator(run.module, run.precision, report_to=trackers, out=run.out)
    connect_processes(accelerator)
    recipe = build(run, accelerator, dataset, grad_accum)
    options = Options(**measured, metric_names=metric_names, metrics_images=metrics_images,
                      extractor=extractor, on_nonfinite=on_nonfinite.value, log_every=log_every,
                      grid_kimg=grid_kimg, snapshot_kimg=snapshot_kimg, metrics_kimg=metrics_kimg,
                      keep_snapshots=keep_snapshots,
                      workers=default_workers(accelerator.device, _processes_per_node(
                          accelerator.num_processes)) if workers is None else workers)
    begin(run, accelerator, dataset, recipe, grad_accum, trackers)
    trainer = Trainer(run, recipe, accelerator, dataset, options, RichDisplay())
    if accelerator.is_main_process:
        trainer.write_reals()
    report(trainer, finish(trainer))


def open_data(run: Run, cache: str, explicit_channels: bool):
    """The run's dataset (its fixed subset, then that subset's mirrored copies), with the config
    fitted to it: channels and classes from the data."""
    run.cfg.validate()  # before touching any data: a bad resolution or batch fails at once
    dataset = open_dataset(run.data, resolution=run.cfg.resolution, xflip=run.mirror,
                           skip_bad=run.skip_bad, cache=cache,
                           channels=run.cfg.channels if explicit_channels or run.state else None)
    dataset = subset(dataset, run.max_images)  # the subset first, then its mirrored copies
    run.cfg = models.fit_to_dataset(run.cfg, dataset)
    run.cfg.validate()
    return dataset


def build(run: Run, accelerator: Accelerator, dataset, grad_accum: int):
    """The recipe on this process, once every process found the same start; a dataset smaller
    than one step's batch is refused."""
    check_same_start(run, accelerator)
    use_fast_kernels(accelerator.device)
    recipe = build_recipe(run.module, run.cfg, accelerator, seed=run.seed, state=run.state,
                          grad_accum=grad_accum)
    if len(dataset) < recipe.batch_per_step:
        raise typer.BadParameter(f"the dataset has {len(dataset)} images, fewer than one step's "
                                 f"batch of {recipe.batch_per_step}", param_hint="--data")
    return recipe


def begin(run: Run, accelerator: Accelerator, dataset, recipe, grad_accum: int,
          trackers: tuple[str, ...]) -> None:
    """The main process creates the run folder and records this start (and any skipped
    images); every process calls init_trackers (Accelerate opens them on the main process)."""
    if accelerator.is_main_process:
        run.out.mkdir(parents=True, exist_ok=True)
        record_start(run, dataset, accelerator.num_processes, grad_accum, recipe.images_seen)
        if dataset.skipped:
            errors.print(f"[yellow]skipped {len(dataset.skipped)} unreadable images "
                         f"(first: {dataset.skipped[0][0]})")
    accelerator.wait_for_everyone()
    if trackers:
        accelerator.init_trackers("nanogan", config=_scalars(run.run_config | {"seed": run.seed}))


def report(trainer: Trainer, outcome: str) -> None:
    """How the run ended, for the person who started it: exit 1 after a non-finite loss (the
    loop named it), "Interrupted … Continue with" and exit 130 after Ctrl-C, "Done" otherwise."""
    recipe, out = trainer.recipe, trainer.out
    if outcome == "failed":
        raise typer.Exit(1)
    if trainer.main:
        if outcome == "interrupted":
            console.print(f"[yellow]Interrupted at kimg {recipe.images_seen / 1000:.2f}; "
                          f"saved. Continue with: python train.py --resume {out}")
        else:
            console.print(f"[green]Done: {recipe.images_seen / 1000:.1f} kimg. Samples: "
                          f"{out / 'grid.png'}  model: {out / 'model.safetensors'}")
    if outcome == "interrupted":
        raise typer.Exit(130)


def _scalars(values: dict) -> dict:
    """Tracker configs take scalars: everything else as text."""
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in values.items()}


if __name__ == "__main__":
    try:
        app()
    except (config.ConfigError, checkpoint.CheckpointError, runs.RunError, DataError,
            DatasetNotFoundError) as err:
        hint = {UnreadableImageError: " (train.py: --skip-bad)",  # library errors name their
                DatasetNotFoundError: " (train.py: --data FOLDER)"}.get(type(err), "")  # parameters
        errors.print("[red]error:[/]", end=" ")
        errors.print(f"{err}{hint}", markup=False, highlight=False)  # paths may hold [brackets]
        sys.exit(2)
