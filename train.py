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
from nanogan.data import InfiniteSampler, open_dataset, to_float
from nanogan.images import save_grid

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
console = Console()


class Precision(str, Enum):
    no = "no"
    fp16 = "fp16"
    bf16 = "bf16"


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


@app.command()
def main(
    model: Optional[str] = typer.Option(None, help="progan | stylegan2 | biggan [default: progan]"),
    preset: str = typer.Option("tiny", help="Named configuration in the model file."),
    data: Optional[str] = typer.Option(None, help="fashion-mnist (default), an image folder, a .zip, or a CIFAR-10 folder."),
    out: Optional[Path] = typer.Option(None, help="Run folder [default: runs/MODEL-PRESET, numbered if taken]."),
    kimg: Optional[float] = typer.Option(None, help="Train until this many thousand real images were shown to D."),
    batch_size: Optional[int] = typer.Option(None, help="Global batch size (split over processes)."),
    resolution: Optional[int] = typer.Option(None, help="Power-of-two image size."),
    seed: int = typer.Option(0, help="Seeds weights, data order and every random draw."),
    precision: Precision = typer.Option(Precision.no, help="Mixed precision (Accelerate)."),
    resume: Optional[Path] = typer.Option(None, help="Continue a run (its folder or checkpoint file)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved configuration and exit."),
    set_: List[str] = typer.Option([], "--set", help="Override a config field: --set key=value (repeatable)."),
    grid_kimg: float = typer.Option(4.0, help="Write a sample grid every this many kimg."),
    snapshot_kimg: float = typer.Option(10.0, help="Write a checkpoint every this many kimg."),
    log_every: int = typer.Option(20, help="Log losses and speed every this many steps."),
    workers: int = typer.Option(0, help="DataLoader worker processes."),
):
    """Train ProGAN, StyleGAN2 or BigGAN; writes grids, a JSONL log and checkpoints to --out."""
    state = None
    if resume is not None:
        ckpt_path = resume / "checkpoint.safetensors" if resume.is_dir() else resume
        stored = checkpoint.load(ckpt_path, kind="training", model=model)
        model, preset = stored.model, stored.config.pop("_preset", "tiny")
        module = models.MODELS[model]
        cfg = config.from_dict(module.Config, stored.config)
        flags = [f"kimg={kimg}"] if kimg is not None else []
        cfg = config.apply_overrides(cfg, flags + list(set_))
        state, out = stored.state, out or ckpt_path.parent
    else:
        model = model or "progan"
        cfg = resolve(model, preset, kimg, batch_size, resolution, set_)
        module = models.MODELS[model]
    out = out or _default_out(model, preset)
    explicit_channels = any(s.split("=")[0].strip() == "channels" for s in set_)
    dataset = open_dataset(data, resolution=cfg.resolution,
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

    accelerator = Accelerator(
        mixed_precision=precision.value,
        dataloader_config=DataLoaderConfiguration(split_batches=True),
        kwargs_handlers=[DistributedDataParallelKwargs(
            find_unused_parameters=module.FIND_UNUSED_PARAMETERS)])
    main_process = accelerator.is_main_process
    world, rank = accelerator.num_processes, accelerator.process_index
    torch.manual_seed(seed)  # weight initialisation; identical on every process
    recipe = module.Recipe(cfg, seed=seed, rank=rank, world=world, device=accelerator.device,
                           backward=accelerator.backward)
    if state is not None:
        recipe.load_state_dict(state)
    per_step = recipe.batch_per_step
    if len(dataset) < per_step:
        raise typer.BadParameter(f"the dataset has {len(dataset)} images, fewer than one step's "
                                 f"batch of {per_step}", param_hint="--data")
    if per_step % world:
        raise typer.BadParameter(f"batch {per_step} does not split over {world} processes")

    sampler = InfiniteSampler(len(dataset), seed=seed, start=recipe.step * per_step)
    loader = torch.utils.data.DataLoader(dataset, batch_size=per_step, sampler=sampler,
                                         drop_last=True, num_workers=workers)
    recipe.G, recipe.D, recipe.opt_G, recipe.opt_D, loader = accelerator.prepare(
        recipe.G, recipe.D, recipe.opt_G, recipe.opt_D, loader)
    recipe.G_ema.to(accelerator.device)

    run_config = config.to_dict(cfg) | {"_preset": preset}
    grid_seeds, grid_labels = models.grid_inputs(module, cfg)
    if main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(
            {"model": model, "preset": preset, "seed": seed, "config": run_config,
             "world_size": world, "precision": precision.value, "data": dataset.name}, indent=2))
        reals = torch.stack([dataset[i][0] for i in range(min(len(dataset), len(grid_seeds)))])
        save_grid(out / "reals.png", to_float(reals), nrow=models.grid_columns(cfg, len(reals)))

    def write_grid() -> None:
        recipe.before_sampling()
        images = models.sample(module, recipe.G_ema, cfg, grid_seeds, grid_labels,
                               **recipe.sampling_view())
        save_grid(out / "grids" / f"grid-{recipe.images_seen // 1000:06d}kimg.png", images,
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

    total = round(cfg.kimg * 1000)
    log_file = (out / "log.jsonl").open("a") if main_process else None
    stop = StopFlag()
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                        TextColumn("{task.completed:.1f}/{task.total:.0f} kimg"),
                        TextColumn("{task.fields[speed]}"), TextColumn("{task.fields[info]}"),
                        TimeElapsedColumn(), TimeRemainingColumn(),
                        console=console, disable=not main_process)
    batches = iter(loader)
    sums: dict[str, torch.Tensor] = {}
    tick_time, tick_images, steps_in_tick = time.perf_counter(), recipe.images_seen, 0
    interrupted = failed = False
    try:
        with progress:
            task = progress.add_task(model, total=total / 1000, completed=recipe.images_seen / 1000,
                                     speed="", info="")
            if main_process and recipe.images_seen == 0:
                write_grid()
            while recipe.images_seen < total:
                reals, labels = next(batches)
                before = recipe.images_seen
                stats = recipe.train_step(to_float(reals), labels)
                for k, v in stats.items():
                    sums[k] = sums.get(k, 0) + v.float()
                steps_in_tick += 1
                progress.update(task, completed=recipe.images_seen / 1000)
                done = recipe.images_seen >= total
                if steps_in_tick == log_every or done:
                    means = {k: accelerator.reduce(v.to(accelerator.device), "mean").item() / steps_in_tick
                             for k, v in sums.items()}
                    now = time.perf_counter()
                    speed = (recipe.images_seen - tick_images) / (now - tick_time)
                    record = {"step": recipe.step, "kimg": recipe.images_seen / 1000,
                              "images_per_s": round(speed, 2), **{k: round(v, 5) for k, v in means.items()}}
                    bad = [k for k, v in means.items() if not math.isfinite(v)]
                    record |= {k: round(v, 5) for k, v in recipe.diagnostics().items()}
                    if main_process:
                        log_file.write(json.dumps(record) + "\n")
                        log_file.flush()
                        info = " ".join(f"{k} {v:.3g}" for k, v in means.items())
                        progress.update(task, speed=f"{speed:.1f} img/s", info=info)
                        if not console.is_terminal:
                            console.print(f"kimg {record['kimg']:.2f}  {speed:.1f} img/s  {info}")
                    if bad:
                        failed = True
                        console.print(f"[red]non-finite {', '.join(bad)} at step {recipe.step} "
                                      f"(kimg {recipe.images_seen / 1000:.2f}); stopping. The last "
                                      f"good checkpoint is {out / 'checkpoint.safetensors'}")
                        break
                    sums, tick_time, tick_images, steps_in_tick = {}, now, recipe.images_seen, 0
                if main_process and _crossed(before, recipe.images_seen, grid_kimg) and not done:
                    write_grid()
                if _crossed(before, recipe.images_seen, snapshot_kimg) and not done:
                    save()
                flag = torch.tensor(float(stop.requested), device=accelerator.device)
                if accelerator.reduce(flag, "sum").item() > 0:
                    interrupted = True
                    break
        if not failed:
            if main_process:
                write_grid()
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
    except (config.ConfigError, checkpoint.CheckpointError) as err:
        console.print(f"[red]error:[/] {err}")
        sys.exit(2)
