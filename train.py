"""Train a GAN: `python train.py --model stylegan2` (or progan, biggan).

The same script runs on a laptop CPU, one GPU, many GPUs, many nodes or a TPU through
HuggingFace Accelerate: `accelerate launch train.py ...` or `torchrun --nproc_per_node N train.py`.

`main` reads as the run's steps: settle the run (new, or resumed with its identity kept) -> open
the data -> check everything that could fail late (metrics setup, batch splits) -> build the
Accelerator and the model's recipe -> train, with a tick every `--log-every` steps (log, trackers,
stop requests), grids, numbered snapshots and metrics every few kimg -> save -> final metrics.
Only the main process writes files. Ctrl-C (or SIGTERM) stops at the next tick, saves, and
exits; `--resume RUN` continues exactly where the run stopped, and `--resume auto` (for
`torchrun --max-restarts N`) continues the run in `--out` if it has a checkpoint.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import math
import os
import resource
import signal
import socket
import sys
import time
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any, List, Optional

import numpy as np
import torch
import typer
from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
from accelerate.utils import ProjectConfiguration
from PIL import Image
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from nanogan import checkpoint, config, evaluate, models, runs
from nanogan.data import (DataError, DatasetNotFoundError, InfiniteSampler,
                          UnreadableImageError, has_test_split, open_dataset, subset, to_float)
from nanogan.images import save_grid
from nanogan.randomness import derive_seed
from nanogan.recipe import unwrap

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
console = Console()
errors = Console(stderr=True)
# run options stored beside the config
RUN_KEYS = ("_preset", "_data", "_mirror", "_skip_bad", "_max_images")
PRECISIONS = ("no", "fp16", "bf16")


class Precision(str, Enum):
    no = "no"
    fp16 = "fp16"
    bf16 = "bf16"


class OnNonFinite(str, Enum):
    stop = "stop"
    rollback = "rollback"


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


class StopFlag:
    """First Ctrl-C / SIGTERM asks the loop to stop at the next tick; a second one aborts."""

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


# ------------------------------------------------------------------------- settling the run


@dataclasses.dataclass
class Run:
    """Everything decided before training: what to train, where, and how it started."""

    model: str
    preset: str
    module: Any
    cfg: Any
    out: Path
    seed: int
    precision: str
    data: Optional[str]
    mirror: bool
    skip_bad: bool
    state: Optional[dict] = None  # the training state when resuming
    max_images: Optional[int] = None  # a fixed subset of the data (None: all of it)

    @property
    def run_config(self) -> dict:
        return config.to_dict(self.cfg) | {"_preset": self.preset, "_data": self.data,
                                          "_mirror": self.mirror, "_skip_bad": self.skip_bad,
                                          "_max_images": self.max_images}


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


def _several_nodes() -> bool:
    world = int(os.environ.get("WORLD_SIZE", 1))
    return world > int(os.environ.get("LOCAL_WORLD_SIZE", world))


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


def use_fast_kernels(device: torch.device) -> None:
    """On CUDA: TF32 matmuls and convolutions (Ampere and later), cuDNN autotuning (our shapes
    are fixed per resolution, so the search runs once per shape)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True


def build_recipe(module, cfg, accelerator: Accelerator, *, seed: int = 0, state=None,
                 grad_accum: int = 1):
    """The model's recipe on this process, its G, D and optimizers prepared by Accelerate.

    Accelerate wraps a prepared model's forward in autocast; `unwrap_model(...,
    keep_fp32_wrapper=False)` (its public way back) removes that wrapper again, because the
    recipes enter `recipe.autocast()` themselves around the main phases only, so that R1, path
    length and the gradient penalty run in fp32 (tested in test_precision.py on this path).
    """
    torch.manual_seed(seed)  # weight initialisation; identical on every process
    recipe = module.Recipe(cfg, seed=seed, rank=accelerator.process_index,
                           world=accelerator.num_processes, device=accelerator.device,
                           backward=accelerator.backward, autocast=accelerator.autocast,
                           accumulate=grad_accum)
    if state is not None:
        recipe.load_state_dict(state)
    recipe.G, recipe.D, recipe.opt_G, recipe.opt_D = accelerator.prepare(
        recipe.G, recipe.D, recipe.opt_G, recipe.opt_D)
    for net in (recipe.G, recipe.D):
        accelerator.unwrap_model(net, keep_fp32_wrapper=False)
    recipe.G_ema.to(accelerator.device)
    return recipe


def data_stream(dataset, recipe, accelerator: Accelerator, workers: int):
    """The data from this step on; its order is a function of (seed, step) alone. Each process
    loads (and, streaming, decodes) only its own contiguous share of every global batch."""
    per_step = recipe.batch_per_step
    sampler = InfiniteSampler(len(dataset), seed=recipe.seed, start=recipe.step * per_step)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=per_step, sampler=sampler, drop_last=True, num_workers=workers,
        pin_memory=accelerator.device.type == "cuda", persistent_workers=workers > 0)
    return iter(accelerator.prepare_data_loader(loader))


def default_workers(device: torch.device, world: int) -> int:
    """0 on a CPU (the cores train); on an accelerator up to 4 loader processes per process."""
    return 0 if device.type == "cpu" else max(1, min(4, (os.cpu_count() or 2) // max(world, 1) - 1))


# ---------------------------------------------------------------------------- the loop


class Trainer:
    """The training loop of one process and what it writes at ticks, grids and snapshots."""

    def __init__(self, run: Run, recipe, accelerator: Accelerator, dataset, opts: dict):
        self.run, self.recipe, self.accelerator, self.dataset = run, recipe, accelerator, dataset
        self.opts, self.out, self.main = opts, run.out, accelerator.is_main_process
        self.grid_seeds, self.grid_labels = models.grid_inputs(run.module, run.cfg)
        self.log_file = (self.out / "log.jsonl").open("a") if self.main else None
        self.sums: dict[str, torch.Tensor] = {}  # per logged number: its sum and its count
        self.counts: dict[str, int] = {}
        self.rollbacks, self.started = 0, time.time()
        self.reset_tick()

    def reset_tick(self) -> None:
        self.sums, self.counts, self.steps_in_tick = {}, {}, 0
        self.tick_time, self.tick_images = time.perf_counter(), self.recipe.images_seen

    def log(self, record: dict) -> None:
        if self.main:
            self.log_file.write(json.dumps(record) + "\n")
            self.log_file.flush()

    def here(self) -> dict:
        return {"step": self.recipe.step, "kimg": self.recipe.images_seen / 1000}

    # -- outputs ------------------------------------------------------------------------------
    def write_reals(self) -> None:
        n = min(len(self.dataset), len(self.grid_seeds))
        reals = torch.stack([self.dataset[i][0] for i in range(n)])
        save_grid(self.out / "reals.png", to_float(reals),
                  nrow=models.grid_columns(self.run.cfg, len(reals)))

    def write_grid(self) -> None:
        recipe, cfg = self.recipe, self.run.cfg
        recipe.before_sampling()
        images = models.sample(self.run.module, recipe.G_ema, cfg, self.grid_seeds,
                               self.grid_labels, **recipe.sampling_view())
        path = self.out / "grids" / f"grid-{recipe.images_seen / 1000:09.3f}kimg.png"
        save_grid(path, images, nrow=models.grid_columns(cfg, len(images)))
        save_grid(self.out / "grid.png", images, nrow=models.grid_columns(cfg, len(images)))
        grid = np.asarray(Image.open(path))
        grid = grid[..., None] if grid.ndim == 2 else grid
        for tracker in self.accelerator.trackers:
            if tracker.name == "tensorboard":
                tracker.log_images({"grid": grid[None]}, step=recipe.step, dataformats="NHWC")
            elif hasattr(tracker, "log_images"):
                tracker.log_images({"grid": [grid]}, step=recipe.step)

    def save(self, snapshot: bool = True) -> None:
        """Checkpoint, model file and (at --snapshot-kimg and at the end, not when interrupted,
        so that preemptions do not push regular snapshots out) a numbered snapshot, pruned to
        --keep-snapshots."""
        recipe, run = self.recipe, self.run
        recipe.before_sampling()
        if self.main:
            last = self.out / "checkpoint.safetensors"
            checkpoint.save(last, recipe.state_dict(), kind="training", model=run.model,
                            config=run.run_config)
            checkpoint.save(self.out / "model.safetensors", {"G_ema": recipe.G_ema.state_dict()},
                            kind="model", model=run.model, config=run.run_config)
            if snapshot:
                runs.add_snapshot(self.out, last, recipe.images_seen)
                runs.prune_snapshots(self.out, self.opts["keep_snapshots"])
        self.accelerator.wait_for_everyone()

    def measure(self, final: bool = False) -> None:
        """The chosen metrics of G_ema against the reference split, computed by every process on
        its share; a failure is logged and training goes on (the weights are never at stake)."""
        names = self.opts["metric_names"]
        if not names:
            return
        recipe, run, acc = self.recipe, self.run, self.accelerator
        recipe.before_sampling()
        try:
            results = evaluate.evaluate(
                names, dataset=self.opts["reference"], num_images=self.opts["metrics_images"],
                extractor=self.opts["extractor"], split=self.opts["split"], seed=run.seed,
                generate=models.random_sampler(run.module, recipe.G_ema, run.cfg),
                device=acc.device, rank=acc.process_index, world=acc.num_processes,
                gather=acc.gather)
        except Exception as err:  # noqa: BLE001 - a metric must never end a run
            self.log(self.here() | {"event": "metric-error", "error": f"{type(err).__name__}: "
                                                                      f"{err}"})
            if self.main:
                errors.print(f"[yellow]metrics failed at kimg {recipe.images_seen / 1000:.2f} "
                             f"({type(err).__name__}: {err}); training goes on")
            return
        values = {f"metric/{k}": r.value for k, r in results.items()}
        if self.main:
            with (self.out / "metrics.jsonl").open("a") as f:
                f.write(json.dumps(self.here() | {"metrics": {k: r.to_dict() for k, r in
                                                              results.items()}}) + "\n")
            if final:
                console.print(" ".join(f"{k} {v}" for k, v in values.items()))
        self.log(self.here() | values)
        acc.log(values, step=recipe.step)

    # -- ticks ----------------------------------------------------------------------------------
    def tick(self, progress, task) -> Optional[str]:
        """Mean of every logged number over the tick's steps (one all-reduce and one read on the
        host per tick, none per step), the non-finite check, the log line; returns "rollback",
        "failed" or None."""
        recipe, acc = self.recipe, self.accelerator
        keys = list(self.sums)  # the same keys in the same order on every rank
        totals = acc.reduce(torch.stack([self.sums[k].to(acc.device) for k in keys]), "mean")
        means = {k: t / self.counts[k] for k, t in zip(keys, totals.tolist())}  # R1/PL: every k
        bad = [k for k, v in means.items() if not math.isfinite(v)]
        if bad:  # never save a broken state: check before any checkpoint
            return self.non_finite(bad)
        now = time.perf_counter()
        images = recipe.images_seen - self.tick_images
        speed = images / (now - self.tick_time)
        diag = recipe.diagnostics()
        record = self.here() | {
            "time": round(time.time(), 3), "images_per_s": round(speed, 2),
            "s_per_kimg": round((now - self.tick_time) / max(images, 1) * 1000, 3),
            "peak_mem_mib": round(_peak_memory_mib(acc.device), 1),
            **{k: round(v, 5) for k, v in means.items()},
            **{k: round(v, 5) for k, v in diag.items()}}
        self.log(record)
        acc.log({k: v for k, v in record.items() if k not in ("step", "time")}, step=recipe.step)
        if self.main:
            shown = means | {k: v for k, v in diag.items() if "/" not in k}
            info = " ".join(f"{k} {v:.3g}" for k, v in shown.items())
            progress.update(task, speed=f"{speed:.1f} img/s", info=info)
            if not console.is_terminal:
                console.print(f"kimg {record['kimg']:.2f}  {speed:.1f} img/s  {info}")
        self.reset_tick()
        return None

    def non_finite(self, bad: list[str]) -> str:
        recipe = self.recipe
        message = (f"non-finite {', '.join(bad)} at step {recipe.step} (kimg "
                   f"{recipe.images_seen / 1000:.2f})")
        self.log(self.here() | {"event": "non-finite", "losses": bad})
        last = self.out / "checkpoint.safetensors"
        if self.opts["on_nonfinite"] == OnNonFinite.rollback and last.exists() and \
                self.rollbacks < 3:
            self.rollbacks += 1
            recipe.load_state_dict(checkpoint.load(last, kind="training").state)
            recipe.seed = derive_seed(recipe.seed, "rollback", self.rollbacks) % 2**31
            if self.main:
                errors.print(f"[yellow]{message}; rolled back to kimg "
                             f"{recipe.images_seen / 1000:.2f} with seed {recipe.seed}")
            self.log({"step": recipe.step, "event": "rollback", "seed": recipe.seed})
            self.reset_tick()
            return "rollback"
        if self.main:
            errors.print(f"[red]{message}; stopping. The last good checkpoint is "
                         f"{last if last.exists() else '(none yet)'}")
        return "failed"

    # -- the loop -------------------------------------------------------------------------------
    def train(self, stop: StopFlag) -> str:
        """Steps until the kimg target; returns "done", "interrupted" or "failed"."""
        recipe, acc, opts = self.recipe, self.accelerator, self.opts
        total = round(self.run.cfg.kimg * 1000)
        progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                            TextColumn("{task.completed:.1f}/{task.total:.0f} kimg"),
                            TextColumn("{task.fields[speed]}"), TextColumn("{task.fields[info]}"),
                            TimeElapsedColumn(), TimeRemainingColumn(),
                            console=console, disable=not self.main)
        stream = data_stream(self.dataset, recipe, acc, opts["workers"])
        with progress:
            task = progress.add_task(self.run.model, total=total / 1000,
                                     completed=recipe.images_seen / 1000, speed="", info="")
            if self.main and recipe.images_seen == 0:
                self.write_grid()
            while recipe.images_seen < total:
                reals, labels = next(stream)
                before = recipe.images_seen
                for k, v in recipe.train_step(to_float(reals), labels).items():
                    self.sums[k] = self.sums.get(k, 0) + v.float()
                    self.counts[k] = self.counts.get(k, 0) + 1
                self.steps_in_tick += 1
                progress.update(task, completed=recipe.images_seen / 1000)
                done = recipe.images_seen >= total
                snapshot = _crossed(before, recipe.images_seen, opts["snapshot_kimg"]) and not done
                if self.steps_in_tick == opts["log_every"] or done or snapshot:
                    outcome = self.tick(progress, task)
                    if outcome == "rollback":
                        stream = data_stream(self.dataset, recipe, acc, opts["workers"])
                        continue
                    if outcome == "failed":
                        return "failed"
                    if stop.requested:  # checked only at ticks: no host sync in the step
                        acc.set_trigger()
                    if acc.check_trigger() and not done:  # every rank checks at every tick
                        return "interrupted"
                if self.main and _crossed(before, recipe.images_seen, opts["grid_kimg"]) and \
                        not done:
                    self.write_grid()
                if _crossed(before, recipe.images_seen, opts["metrics_kimg"]) and not done:
                    self.measure()
                if snapshot:
                    self.save()
        return "done"


def _peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _crossed(before: int, after: int, every_kimg: float) -> bool:
    every = round(every_kimg * 1000)
    return every > 0 and before // every != after // every


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
    grid_kimg: float = typer.Option(4.0, help="Write a sample grid every this many kimg (0 = never)."),
    snapshot_kimg: float = typer.Option(10.0, help="Write a checkpoint and a numbered snapshot every this many kimg."),
    keep_snapshots: int = typer.Option(10, help="Numbered snapshots kept in RUN/snapshots (0 = all)."),
    metrics: str = typer.Option("", help="Metrics to compute while training, e.g. fid,kid,pr (off by default)."),
    metrics_kimg: float = typer.Option(50.0, help="Compute --metrics every this many kimg and at the end."),
    metrics_images: int = typer.Option(2000, help="Generated and real images per metric evaluation."),
    extractor: str = typer.Option("fashion", help="Features for fid/kid/pr/is: fashion (offline, 32² grey) or inception."),
    on_nonfinite: OnNonFinite = typer.Option(OnNonFinite.stop, help="After a NaN/inf loss: stop, or roll back to the last checkpoint with a new seed."),
    report_to: ReportTo = typer.Option(ReportTo.none, help="Also log to trackers through Accelerate."),
    log_every: int = typer.Option(20, help="Log losses and speed (and check for Ctrl-C) every this many steps."),
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
    run.cfg.validate()  # before touching any data: a bad resolution or batch fails at once
    explicit_channels = any(s.split("=")[0].strip() == "channels" for s in set_)
    dataset = open_dataset(run.data, resolution=run.cfg.resolution, xflip=run.mirror,
                           skip_bad=run.skip_bad, cache=cache.value,
                           channels=run.cfg.channels if explicit_channels or run.state else None)
    dataset = subset(dataset, run.max_images)  # the subset first, then its mirrored copies
    run.cfg = models.fit_to_dataset(run.cfg, dataset)
    run.cfg.validate()
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
    check_same_start(run, accelerator)
    use_fast_kernels(accelerator.device)
    recipe = build_recipe(run.module, run.cfg, accelerator, seed=run.seed, state=run.state,
                          grad_accum=grad_accum)
    if len(dataset) < recipe.batch_per_step:
        raise typer.BadParameter(f"the dataset has {len(dataset)} images, fewer than one step's "
                                 f"batch of {recipe.batch_per_step}", param_hint="--data")
    opts = dict(measured, metric_names=metric_names, metrics_images=metrics_images,
                extractor=extractor, on_nonfinite=on_nonfinite, log_every=log_every,
                grid_kimg=grid_kimg, snapshot_kimg=snapshot_kimg, metrics_kimg=metrics_kimg,
                keep_snapshots=keep_snapshots,
                workers=default_workers(accelerator.device, accelerator.num_processes)
                if workers is None else workers)
    if accelerator.is_main_process:
        run.out.mkdir(parents=True, exist_ok=True)
        record_start(run, dataset, accelerator.num_processes, grad_accum, recipe.images_seen)
        if dataset.skipped:
            errors.print(f"[yellow]skipped {len(dataset.skipped)} unreadable images "
                         f"(first: {dataset.skipped[0][0]})")
    accelerator.wait_for_everyone()
    if trackers:
        accelerator.init_trackers("nanogan", config=_scalars(run.run_config | {"seed": run.seed}))
    trainer = Trainer(run, recipe, accelerator, dataset, opts)
    if accelerator.is_main_process:
        trainer.write_reals()
    finish(trainer)


def finish(trainer: Trainer) -> None:
    """Train, then save before anything that could fail (grids, final metrics)."""
    stop = StopFlag()
    try:
        outcome = trainer.train(stop)
        if outcome != "failed":
            trainer.save(snapshot=outcome == "done")
            if trainer.main:
                trainer.write_grid()
            if outcome == "done":
                trainer.measure(final=True)
    finally:
        stop.restore()
        if trainer.log_file:
            trainer.log_file.close()
    recipe, out = trainer.recipe, trainer.out
    release(trainer)
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


def release(trainer: Trainer) -> None:
    """Free DDP while every rank is alive, then close trackers and the process group.

    DDP's Reducer holds the process group; freed only at interpreter exit, after a faster rank
    had already left, gloo's teardown can wait for it for ever (seen as a rank that prints
    nothing and never exits, about one torchrun run in eight)."""
    acc, recipe = trainer.accelerator, trainer.recipe
    acc.wait_for_everyone()
    recipe.G, recipe.D = unwrap(recipe.G), unwrap(recipe.D)
    acc.free_memory()  # Accelerate's own references to the prepared models and optimizers
    gc.collect()
    acc.wait_for_everyone()
    acc.end_training()  # trackers closed, process group destroyed on every rank


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
