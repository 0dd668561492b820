"""Train a GAN: `python train.py --model stylegan2` (or progan, biggan).

The same script runs on a laptop CPU, one GPU, many GPUs, many nodes or a TPU through
HuggingFace Accelerate: `accelerate launch train.py ...` or `torchrun --nproc_per_node N train.py`.

One loop for every model: build the Accelerator -> dataset -> the model's recipe ->
`accelerator.prepare` -> for each step: the recipe's D/G phases, regularizers and EMA update ->
every few kimg: a grid of samples from fixed seeds, a checkpoint, optional metrics. Only the main
process writes files. Ctrl-C (or SIGTERM) finishes the current step, saves, and exits; `--resume
RUN` continues exactly where the run stopped.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import time
from enum import Enum
from pathlib import Path
from typing import List, Optional

import torch
import typer
from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from nanogan import checkpoint, config, models
from nanogan.data import (DataError, DatasetNotFoundError, InfiniteSampler,
                          UnreadableImageError, has_test_split, open_dataset, to_float)
from nanogan.images import save_grid
from nanogan.randomness import derive_seed
from nanogan.recipe import unwrap

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
console = Console()
RUN_KEYS = ("_preset", "_data", "_mirror", "_skip_bad")  # run options stored beside the config


class Precision(str, Enum):
    no = "no"
    fp16 = "fp16"
    bf16 = "bf16"


class OnNonFinite(str, Enum):
    stop = "stop"
    rollback = "rollback"


class StopFlag:
    """First Ctrl-C / SIGTERM asks the loop to stop after the current step; a second one aborts."""

    def __init__(self):
        self.requested = False
        self.previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def restore(self):
        for s, handler in self.previous.items():
            signal.signal(s, handler)


def _default_out(model: str, preset: str) -> Path:
    base = Path("runs") / f"{model}-{preset}"
    out, n = base, 1
    while (out / "checkpoint.safetensors").exists():
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return out


def _config_table(model: str, preset: str, cfg, dataset) -> Table:
    table = Table(title=f"{model} · preset {preset}", show_header=True, header_style="bold")
    table.add_column("key")
    table.add_column("value")
    for key, value in config.to_dict(cfg).items():
        table.add_row(key, str(value))
    if dataset is not None:
        table.add_row("[dim]dataset", f"[dim]{dataset.name}: {len(dataset)} images, "
                      f"{dataset.channels}×{dataset.resolution}², {dataset.num_classes} classes")
    return table


def resolve(model: str, preset: str, kimg, batch_size, resolution, overrides) -> object:
    module = config.choose(model, models.MODELS, "model")
    cfg = config.choose(preset, module.PRESETS, f"preset for {model}")
    flags = [f"{k}={v}" for k, v in (("kimg", kimg), ("batch_size", batch_size),
                                     ("resolution", resolution)) if v is not None]
    return config.apply_overrides(cfg, flags + list(overrides))


def _metric_names(text: str) -> list[str]:
    from nanogan.evaluate import parse_metrics
    try:
        return parse_metrics(text)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--metrics") from err


def _no_accelerator() -> bool:
    from accelerate.utils import (is_mps_available, is_npu_available, is_torch_xla_available,
                                  is_xpu_available)
    return not (torch.cuda.is_available() or is_torch_xla_available() or is_npu_available()
                or is_xpu_available() or is_mps_available())


def _undo_autocast_patch(*modules: torch.nn.Module) -> None:
    """Accelerate wraps a prepared model's forward in autocast; recipes instead enter
    `recipe.autocast()` themselves, so that R1 and path length can run in fp32."""
    for module in modules:
        inner = unwrap(module)
        if "_original_forward" in vars(inner):
            inner.forward = inner._original_forward


def make_accelerator(module, precision: str = "no") -> Accelerator:
    """One Accelerator per run: batches split over processes, DDP told about idle layers."""
    return Accelerator(
        cpu=_no_accelerator(),  # so that torchrun on CPUs starts gloo, not N lone processes
        mixed_precision=precision,
        dataloader_config=DataLoaderConfiguration(split_batches=True),
        kwargs_handlers=[DistributedDataParallelKwargs(
            find_unused_parameters=module.FIND_UNUSED_PARAMETERS)])


def build_recipe(module, cfg, accelerator: Accelerator, *, seed: int = 0, state=None,
                 grad_accum: int = 1):
    """The model's recipe on this process, its G, D and optimizers prepared by Accelerate."""
    torch.manual_seed(seed)  # weight initialisation; identical on every process
    recipe = module.Recipe(cfg, seed=seed, rank=accelerator.process_index,
                           world=accelerator.num_processes, device=accelerator.device,
                           backward=accelerator.backward, autocast=accelerator.autocast,
                           accumulate=grad_accum)
    if state is not None:
        recipe.load_state_dict(state)
    recipe.G, recipe.D, recipe.opt_G, recipe.opt_D = accelerator.prepare(
        recipe.G, recipe.D, recipe.opt_G, recipe.opt_D)
    _undo_autocast_patch(recipe.G, recipe.D)
    recipe.G_ema.to(accelerator.device)
    return recipe


@app.command()
def main(
    model: Optional[str] = typer.Option(None, help="stylegan2 | progan | biggan \\[default: stylegan2]"),
    preset: str = typer.Option("tiny", help="Named configuration in the model file."),
    data: Optional[str] = typer.Option(None, help="fashion-mnist (default), an image folder, a .zip, or a CIFAR-10 folder."),
    out: Optional[Path] = typer.Option(None, help="Run folder \\[default: runs/MODEL-PRESET, numbered if taken]."),
    kimg: Optional[float] = typer.Option(None, help="Train until this many thousand real images were shown to D."),
    batch_size: Optional[int] = typer.Option(None, help="Global batch size (split over processes)."),
    resolution: Optional[int] = typer.Option(None, help="Power-of-two image size."),
    seed: int = typer.Option(0, help="Seeds weights, data order and every random draw."),
    precision: Precision = typer.Option(Precision.no, help="Mixed precision (Accelerate); R1 and path length stay fp32."),
    grad_accum: int = typer.Option(1, help="Split every phase's batch into this many accumulated micro-batches."),
    resume: Optional[Path] = typer.Option(None, help="Continue a run (its folder or checkpoint file)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved configuration and exit."),
    set_: List[str] = typer.Option([], "--set", help="Override a config field: --set key=value (repeatable)."),
    mirror: bool = typer.Option(False, "--mirror", help="Add horizontally mirrored copies of the data."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip unreadable images (counted in config.json) instead of failing."),
    grid_kimg: float = typer.Option(4.0, help="Write a sample grid every this many kimg."),
    snapshot_kimg: float = typer.Option(10.0, help="Write a checkpoint every this many kimg."),
    metrics: str = typer.Option("", help="Metrics to compute while training, e.g. fid,kid,pr (off by default)."),
    metrics_kimg: float = typer.Option(50.0, help="Compute --metrics every this many kimg and at the end."),
    metrics_images: int = typer.Option(2000, help="Generated and real images per metric evaluation."),
    extractor: str = typer.Option("fashion", help="Features for fid/kid/pr/is: fashion (offline, 32² grey) or inception."),
    on_nonfinite: OnNonFinite = typer.Option(OnNonFinite.stop, help="After a NaN/inf loss: stop, or roll back to the last checkpoint with a new seed."),
    log_every: int = typer.Option(20, help="Log losses and speed every this many steps."),
    workers: int = typer.Option(0, help="DataLoader worker processes."),
    threads: Optional[int] = typer.Option(None, help="CPU threads per process (1 is faster on a busy machine)."),
):
    """Train StyleGAN2, ProGAN or BigGAN; writes grids, a JSONL log and checkpoints to --out."""
    metric_names = _metric_names(metrics)
    if threads:
        torch.set_num_threads(threads)
    if grad_accum < 1:
        raise typer.BadParameter(f"must be >= 1, got {grad_accum}", param_hint="--grad-accum")
    state = None
    if resume is not None:
        ckpt_path = resume / "checkpoint.safetensors" if resume.is_dir() else resume
        stored = checkpoint.load(ckpt_path, kind="training", model=model)
        run = {k: stored.config.pop(k, None) for k in RUN_KEYS}
        model, preset = stored.model, run["_preset"] or "tiny"
        data = data or run["_data"]
        mirror, skip_bad = mirror or bool(run["_mirror"]), skip_bad or bool(run["_skip_bad"])
        module = models.MODELS[model]
        cfg = config.from_dict(module.Config, stored.config)
        flags = [f"kimg={kimg}"] if kimg is not None else []
        cfg = config.apply_overrides(cfg, flags + list(set_))
        state, out = stored.state, out or ckpt_path.parent
    else:
        model = model or "stylegan2"
        cfg = resolve(model, preset, kimg, batch_size, resolution, set_)
        module = models.MODELS[model]
    out = out or _default_out(model, preset)
    cfg.validate()  # before touching any data: a bad resolution or batch fails at once
    explicit_channels = any(s.split("=")[0].strip() == "channels" for s in set_)
    dataset = open_dataset(data, resolution=cfg.resolution, xflip=mirror, skip_bad=skip_bad,
                           channels=cfg.channels if explicit_channels or state else None)
    cfg = models.fit_to_dataset(cfg, dataset)
    cfg.validate()
    if dry_run:
        console.print(_config_table(model, preset, cfg, dataset))
        console.print(f"would write to [bold]{out}[/]")
        return
    if state is None and (out / "checkpoint.safetensors").exists():
        raise typer.BadParameter(f"{out} already holds a run; continue it with --resume {out} "
                                 "or choose another --out", param_hint="--out")

    accelerator = make_accelerator(module, precision.value)
    main_process = accelerator.is_main_process
    world = accelerator.num_processes
    recipe = build_recipe(module, cfg, accelerator, seed=seed, state=state, grad_accum=grad_accum)
    per_step = recipe.batch_per_step
    if len(dataset) < per_step:
        raise typer.BadParameter(f"the dataset has {len(dataset)} images, fewer than one step's "
                                 f"batch of {per_step}", param_hint="--data")

    def batches():
        """The data stream from this step on; its order is a function of (seed, step) alone."""
        sampler = InfiniteSampler(len(dataset), seed=recipe.seed, start=recipe.step * per_step)
        loader = torch.utils.data.DataLoader(dataset, batch_size=per_step, sampler=sampler,
                                             drop_last=True, num_workers=workers)
        return iter(accelerator.prepare_data_loader(loader))

    run_config = config.to_dict(cfg) | {"_preset": preset, "_data": data, "_mirror": mirror,
                                        "_skip_bad": skip_bad}
    grid_seeds, grid_labels = models.grid_inputs(module, cfg)
    if main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(
            {"model": model, "preset": preset, "seed": seed, "config": run_config,
             "world_size": world, "precision": precision.value, "grad_accum": grad_accum,
             "data": dataset.name, "images": len(dataset), "skipped": len(dataset.skipped)},
            indent=2))
        if dataset.skipped:
            console.print(f"[yellow]skipped {len(dataset.skipped)} unreadable images "
                          f"(first: {dataset.skipped[0][0]})")
        reals = torch.stack([dataset[i][0] for i in range(min(len(dataset), len(grid_seeds)))])
        save_grid(out / "reals.png", to_float(reals), nrow=models.grid_columns(cfg, len(reals)))

    def write_grid() -> None:
        recipe.before_sampling()
        images = models.sample(module, recipe.G_ema, cfg, grid_seeds, grid_labels,
                               **recipe.sampling_view())
        save_grid(out / "grids" / f"grid-{recipe.images_seen / 1000:09.3f}kimg.png", images,
                  nrow=models.grid_columns(cfg, len(images)))
        save_grid(out / "grid.png", images, nrow=models.grid_columns(cfg, len(images)))

    def save() -> None:
        recipe.before_sampling()
        if main_process:
            checkpoint.save(out / "checkpoint.safetensors", recipe.state_dict(), kind="training",
                            model=model, config=run_config)
            checkpoint.save(out / "model.safetensors", {"G_ema": recipe.G_ema.state_dict()},
                            kind="model", model=model, config=run_config)
        accelerator.wait_for_everyone()

    def measure() -> dict:
        """The chosen metrics of G_ema against the data's test split (train for folders)."""
        from nanogan.evaluate import evaluate
        recipe.before_sampling()
        split = "test" if has_test_split(data) else "train"  # folders and zips: one split
        reference = dataset if split == "train" else open_dataset(
            data, resolution=cfg.resolution, channels=cfg.channels, split=split)
        results = evaluate(metric_names, dataset=reference, num_images=metrics_images,
                           extractor=extractor, split=split, seed=seed,
                           generate=models.random_sampler(module, recipe.G_ema, cfg))
        record = {"kimg": recipe.images_seen / 1000, "step": recipe.step,
                  "metrics": {k: r.to_dict() for k, r in results.items()}}
        with (out / "metrics.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")
        return {k: r.value for k, r in results.items()}

    total = round(cfg.kimg * 1000)
    log_file = (out / "log.jsonl").open("a") if main_process else None
    stop = StopFlag()
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                        TextColumn("{task.completed:.1f}/{task.total:.0f} kimg"),
                        TextColumn("{task.fields[speed]}"), TextColumn("{task.fields[info]}"),
                        TimeElapsedColumn(), TimeRemainingColumn(),
                        console=console, disable=not main_process)
    data_stream = batches()
    sums: dict[str, torch.Tensor] = {}  # per logged number: its sum and how often it appeared
    counts: dict[str, int] = {}
    tick_time, tick_images, steps_in_tick = time.perf_counter(), recipe.images_seen, 0
    interrupted = failed = False
    rollbacks = 0

    def log(record: dict) -> None:
        if main_process:
            log_file.write(json.dumps(record) + "\n")
            log_file.flush()

    try:
        with progress:
            task = progress.add_task(model, total=total / 1000, completed=recipe.images_seen / 1000,
                                     speed="", info="")
            if main_process and recipe.images_seen == 0:
                write_grid()
            while recipe.images_seen < total:
                reals, labels = next(data_stream)
                before = recipe.images_seen
                stats = recipe.train_step(to_float(reals), labels)
                for k, v in stats.items():
                    sums[k], counts[k] = sums.get(k, 0) + v.float(), counts.get(k, 0) + 1
                steps_in_tick += 1
                progress.update(task, completed=recipe.images_seen / 1000)
                done = recipe.images_seen >= total
                snapshot = _crossed(before, recipe.images_seen, snapshot_kimg) and not done
                if steps_in_tick == log_every or done or snapshot:
                    means = {k: accelerator.reduce(v.to(accelerator.device), "mean").item()
                             / counts[k] for k, v in sums.items()}  # R1/PL run every k steps
                    bad = [k for k, v in means.items() if not math.isfinite(v)]
                    if bad:  # never save a broken state: check before any checkpoint
                        message = (f"non-finite {', '.join(bad)} at step {recipe.step} (kimg "
                                   f"{recipe.images_seen / 1000:.2f})")
                        log({"step": recipe.step, "kimg": recipe.images_seen / 1000,
                             "event": "non-finite", "losses": bad})
                        last = out / "checkpoint.safetensors"
                        if on_nonfinite == OnNonFinite.rollback and last.exists() and rollbacks < 3:
                            rollbacks += 1
                            recipe.load_state_dict(checkpoint.load(last, kind="training").state)
                            recipe.seed = derive_seed(recipe.seed, "rollback", rollbacks) % 2**31
                            console.print(f"[yellow]{message}; rolled back to kimg "
                                          f"{recipe.images_seen / 1000:.2f} with seed "
                                          f"{recipe.seed}")
                            log({"step": recipe.step, "event": "rollback", "seed": recipe.seed})
                            data_stream, sums, counts, steps_in_tick = batches(), {}, {}, 0
                            tick_time, tick_images = time.perf_counter(), recipe.images_seen
                            continue
                        failed = True
                        console.print(f"[red]{message}; stopping. The last good checkpoint is "
                                      f"{last if last.exists() else '(none yet)'}")
                        break
                    now = time.perf_counter()
                    speed = (recipe.images_seen - tick_images) / (now - tick_time)
                    diag = recipe.diagnostics()
                    record = {"step": recipe.step, "kimg": recipe.images_seen / 1000,
                              "images_per_s": round(speed, 2),
                              **{k: round(v, 5) for k, v in means.items()},
                              **{k: round(v, 5) for k, v in diag.items()}}
                    log(record)
                    if main_process:
                        shown = means | {k: v for k, v in diag.items() if "/" not in k}
                        info = " ".join(f"{k} {v:.3g}" for k, v in shown.items())
                        progress.update(task, speed=f"{speed:.1f} img/s", info=info)
                        if not console.is_terminal:
                            console.print(f"kimg {record['kimg']:.2f}  {speed:.1f} img/s  {info}")
                    sums, counts, steps_in_tick = {}, {}, 0
                    tick_time, tick_images = now, recipe.images_seen
                if main_process and _crossed(before, recipe.images_seen, grid_kimg) and not done:
                    write_grid()
                if metric_names and _crossed(before, recipe.images_seen, metrics_kimg) and not done:
                    if main_process:
                        log({"step": recipe.step, "kimg": recipe.images_seen / 1000,
                             **{f"metric/{k}": v for k, v in measure().items()}})
                    accelerator.wait_for_everyone()
                if snapshot:
                    save()
                flag = torch.tensor(float(stop.requested), device=accelerator.device)
                if accelerator.reduce(flag, "sum").item() > 0:
                    interrupted = True
                    break
        if not failed:
            if main_process:
                write_grid()
                if metric_names and not interrupted:
                    scores = measure()
                    log({"step": recipe.step, "kimg": recipe.images_seen / 1000,
                         **{f"metric/{k}": v for k, v in scores.items()}})
                    console.print(" ".join(f"{k} {v}" for k, v in scores.items()))
            save()
    finally:
        stop.restore()
        if log_file:
            log_file.close()
    if failed:
        raise typer.Exit(1)
    if main_process:
        if interrupted:
            console.print(f"[yellow]Interrupted at kimg {recipe.images_seen / 1000:.2f}; "
                          f"saved. Continue with: python train.py --resume {out}")
        else:
            console.print(f"[green]Done: {recipe.images_seen / 1000:.1f} kimg. Samples: "
                          f"{out / 'grid.png'}  model: {out / 'model.safetensors'}")
    accelerator.end_training()
    if interrupted:
        raise typer.Exit(130)


def _crossed(before: int, after: int, every_kimg: float) -> bool:
    every = round(every_kimg * 1000)
    return every > 0 and before // every != after // every


if __name__ == "__main__":
    try:
        app()
    except (config.ConfigError, checkpoint.CheckpointError, DataError,
            DatasetNotFoundError) as err:
        hint = " (train.py: --skip-bad)" if isinstance(err, UnreadableImageError) else ""
        console.print("[red]error:[/]", end=" ")
        console.print(f"{err}{hint}", markup=False, highlight=False)  # paths may hold [brackets]
        sys.exit(2)
