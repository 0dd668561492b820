"""The training loop of one process: steps, ticks, grids, snapshots, metrics, and how it ends.

train.py decides the run (`runs.Run`), builds the Accelerator and hands both here; this module
never imports Accelerate, so the Accelerator arrives as an argument and is used through its
public methods only (`prepare`, `backward`, `autocast`, `reduce`, `gather`, `log`, triggers).

One step is `recipe.train_step(reals, labels)` on this process's share of the global batch; it
returns device tensors and the loop adds them up without reading them, so a step never waits
for the device (except in fp16, where the GradScaler reads its overflow check at every
optimizer step). Every `log_every` steps (and at a snapshot, and at the end) a tick averages each
logged number over the steps that produced it (one all-reduce and one host read per tick),
stops on a NaN/inf before anything is saved (or rolls back to the last checkpoint with a new
seed), writes one log record and checks for a stop request. Grids, numbered snapshots and
metrics follow every so many kimg.

Every process trains and computes metrics on its share; only the main process writes files
(log.jsonl, metrics.jsonl, grids, checkpoints) and shows anything (`Display`: train.py's rich
progress bar and messages; this module's base class shows nothing).

Ctrl-C or SIGTERM (`StopFlag`) asks the loop to stop at the next tick, where every process sees
the request together; `finish` then saves the checkpoint (no numbered snapshot) and returns
"interrupted". A second Ctrl-C aborts at once. A resumed run continues exactly.

Lesson: lessons/00_reading_this_repo.md
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import math
import os
import resource
import signal
import time
from typing import Any, ContextManager, Optional

import torch

from nanogan import checkpoint, evaluate, models
from nanogan.data import InfiniteSampler, to_float
from nanogan.images import save_grid, save_image
from nanogan.randomness import derive_seed
from nanogan.recipe import step_counts_on_host, unwrap
from nanogan.runs import CHECKPOINT, MODEL, Run, add_snapshot, prune_snapshots

ON_NONFINITE = ("stop", "rollback")


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


class Display:
    """What the loop shows a person; this base shows nothing (tests use it, and so does every
    process but the main one). train.py's subclass draws a rich progress bar.

    `progress(name, total_kimg, done_kimg)` is a context manager around the steps; inside it
    `advance(done_kimg)` follows every step and `tick(kimg, speed, info)` every log tick (speed
    in images/s, info the tick's numbers as text). `say` prints a result, `warn` a problem the
    run survives, `error` the one that ends it.
    """

    def progress(self, name: str, total_kimg: float, done_kimg: float) -> ContextManager[Any]:
        return contextlib.nullcontext()

    def advance(self, done_kimg: float) -> None:
        pass

    def tick(self, kimg: float, speed: float, info: str) -> None:
        pass

    def say(self, message: str) -> None:
        pass

    def warn(self, message: str) -> None:
        pass

    def error(self, message: str) -> None:
        pass


@dataclasses.dataclass
class Options:
    """How the loop runs. train.py translates its flags into these and takes the flags' defaults
    from here, except for `workers`: its default there is `default_workers(...)`, 0 on a CPU and
    up to 4 on a GPU."""

    log_every: int = 20  # steps per tick: log, trackers, non-finite check, stop requests
    grid_kimg: float = 4.0  # a sample grid every this many kimg (0: never)
    snapshot_kimg: float = 10.0  # checkpoint and numbered snapshot (0: only at the end)
    keep_snapshots: int = 10  # numbered snapshots kept (0: all)
    metric_names: list[str] = dataclasses.field(default_factory=list)  # none: no metrics
    metrics_kimg: float = 50.0  # metrics every this many kimg and at the end
    metrics_images: int = 2000  # generated and real images per evaluation
    extractor: str = "fashion"  # features for fid/kid/pr/dc/is
    reference: Any = None  # the dataset the metrics compare against
    split: Optional[str] = None  # its split, recorded with the results
    on_nonfinite: str = "stop"  # after a NaN/inf: "stop", or "rollback" to the last checkpoint
    workers: int = 0  # DataLoader worker processes

    def __post_init__(self):
        if self.on_nonfinite not in ON_NONFINITE:
            raise ValueError(f"on_nonfinite must be one of {', '.join(ON_NONFINITE)}, got "
                             f"{self.on_nonfinite!r}")


# ---------------------------------------------------------------------------- building


def use_fast_kernels(device: torch.device) -> None:
    """On CUDA: TF32 matmuls and convolutions (Ampere and later), cuDNN autotuning (our shapes
    are fixed per resolution, so the search runs once per shape)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True


def build_recipe(module, cfg, accelerator, *, seed: int = 0, state=None, grad_accum: int = 1):
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
    for opt in (recipe.opt_G, recipe.opt_D):  # prepare moved a loaded state to the device
        step_counts_on_host(opt)
    recipe.G_ema.to(accelerator.device)
    return recipe


def data_stream(dataset, recipe, accelerator, workers: int):
    """The data from this step on; its order is a function of (seed, step) alone. Each process
    loads (and, streaming, decodes) only its own contiguous share of every global batch."""
    per_step = recipe.batch_per_step
    sampler = InfiniteSampler(len(dataset), seed=recipe.seed, start=recipe.step * per_step)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=per_step, sampler=sampler, drop_last=True, num_workers=workers,
        pin_memory=accelerator.device.type == "cuda", persistent_workers=workers > 0)
    return iter(accelerator.prepare_data_loader(loader))


def default_workers(device: torch.device, local_processes: int) -> int:
    """0 on a CPU (the cores train); on an accelerator up to 4 loader processes per process,
    sharing this node's cores with the `local_processes` training processes on it."""
    if device.type == "cpu":
        return 0
    return max(1, min(4, (os.cpu_count() or 2) // max(local_processes, 1) - 1))


# ---------------------------------------------------------------------------- the loop


class Trainer:
    """The training loop of one process and what it writes at ticks, grids and snapshots."""

    def __init__(self, run: Run, recipe, accelerator, dataset, opts: Options,
                 display: Optional[Display] = None):
        self.run, self.recipe, self.accelerator, self.dataset = run, recipe, accelerator, dataset
        self.opts, self.out, self.main = opts, run.out, accelerator.is_main_process
        self.display = display if display is not None and self.main else Display()
        self.grid_seeds, self.grid_labels = models.grid_inputs(run.module, run.cfg)
        self.log_file = (self.out / "log.jsonl").open("a") if self.main else None
        self.sums: dict[str, torch.Tensor] = {}  # per logged number: its sum and its count
        self.counts: dict[str, int] = {}
        self.rollbacks = 0
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

    def write_grid(self, final: bool = False) -> None:
        recipe, cfg = self.recipe, self.run.cfg
        recipe.before_sampling(final)
        images = models.sample(self.run.module, recipe.G_ema, cfg, self.grid_seeds,
                               self.grid_labels, **recipe.sampling_view())
        path = self.out / "grids" / f"grid-{recipe.images_seen / 1000:09.3f}kimg.png"
        grid = save_grid(path, images, nrow=models.grid_columns(cfg, len(images)))
        save_image(self.out / "grid.png", grid)  # the latest grid, under a fixed name
        grid = grid[..., None] if grid.ndim == 2 else grid
        for tracker in self.accelerator.trackers:
            if tracker.name == "tensorboard":
                tracker.log_images({"grid": grid[None]}, step=recipe.step, dataformats="NHWC")
            elif hasattr(tracker, "log_images"):
                tracker.log_images({"grid": [grid]}, step=recipe.step)

    def save(self, snapshot: bool = True, final: bool = False) -> None:
        """Checkpoint, model file and (at --snapshot-kimg and at the end, not when interrupted,
        so that preemptions do not push regular snapshots out) a numbered snapshot, pruned to
        --keep-snapshots. `final`: the files a run ends with, done or interrupted (BigGAN:
        standing statistics over all their passes)."""
        recipe, run = self.recipe, self.run
        recipe.before_sampling(final)
        if self.main:
            last = self.out / CHECKPOINT
            checkpoint.save(last, recipe.state_dict(), kind="training", model=run.model,
                            config=run.run_config)
            checkpoint.save(self.out / MODEL, {"G_ema": recipe.G_ema.state_dict()},
                            kind="model", model=run.model, config=run.run_config)
            if snapshot:
                add_snapshot(self.out, last, recipe.images_seen)
                prune_snapshots(self.out, self.opts.keep_snapshots)
        self.accelerator.wait_for_everyone()

    def measure(self, final: bool = False) -> None:
        """The chosen metrics of G_ema against the reference split, computed by every process on
        its share; a failure is logged and training goes on (the weights are never at stake)."""
        names = self.opts.metric_names
        if not names:
            return
        recipe, run, acc = self.recipe, self.run, self.accelerator
        recipe.before_sampling(final)
        try:
            results = evaluate.evaluate(
                names, dataset=self.opts.reference, num_images=self.opts.metrics_images,
                extractor=self.opts.extractor, split=self.opts.split, seed=run.seed,
                generate=models.random_sampler(run.module, recipe.G_ema, run.cfg),
                device=acc.device, rank=acc.process_index, world=acc.num_processes,
                gather=acc.gather)
        except Exception as err:  # noqa: BLE001 - a metric must never end a run
            self.log(self.here() | {"event": "metric-error", "error": f"{type(err).__name__}: "
                                                                      f"{err}"})
            self.display.warn(f"metrics failed at kimg {recipe.images_seen / 1000:.2f} "
                              f"({type(err).__name__}: {err}); training goes on")
            return
        values = {f"metric/{k}": r.value for k, r in results.items()}
        if self.main:
            with (self.out / "metrics.jsonl").open("a") as f:
                f.write(json.dumps(self.here() | {"metrics": {k: r.to_dict() for k, r in
                                                              results.items()}}) + "\n")
            if final:
                self.display.say(" ".join(f"{k} {v}" for k, v in values.items()))
        self.log(self.here() | values)
        acc.log(values, step=recipe.step)

    # -- ticks ----------------------------------------------------------------------------------
    def tick(self) -> Optional[str]:
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
            self.display.tick(record["kimg"], speed, info)
        self.reset_tick()
        return None

    def non_finite(self, bad: list[str]) -> str:
        recipe = self.recipe
        message = (f"non-finite {', '.join(bad)} at step {recipe.step} (kimg "
                   f"{recipe.images_seen / 1000:.2f})")
        self.log(self.here() | {"event": "non-finite", "losses": bad})
        last = self.out / CHECKPOINT
        if self.opts.on_nonfinite == "rollback" and last.exists() and self.rollbacks < 3:
            self.rollbacks += 1
            recipe.load_state_dict(checkpoint.load(last, kind="training").state)
            recipe.seed = derive_seed(recipe.seed, "rollback", self.rollbacks) % 2**31
            self.display.warn(f"{message}; rolled back to kimg {recipe.images_seen / 1000:.2f} "
                              f"with seed {recipe.seed}")
            self.log({"step": recipe.step, "event": "rollback", "seed": recipe.seed})
            self.reset_tick()
            return "rollback"
        self.display.error(f"{message}; stopping. The last good checkpoint is "
                           f"{last if last.exists() else '(none yet)'}")
        return "failed"

    # -- the loop -------------------------------------------------------------------------------
    def train(self, stop: StopFlag) -> str:
        """Steps until the kimg target; returns "done", "interrupted" or "failed"."""
        recipe, acc, opts = self.recipe, self.accelerator, self.opts
        total = round(self.run.cfg.kimg * 1000)
        stream = data_stream(self.dataset, recipe, acc, opts.workers)
        with self.display.progress(self.run.model, total / 1000, recipe.images_seen / 1000):
            if self.main and recipe.images_seen == 0:
                self.write_grid()
            while recipe.images_seen < total:
                reals, labels = next(stream)
                before = recipe.images_seen
                for k, v in recipe.train_step(to_float(reals), labels).items():
                    self.sums[k] = self.sums.get(k, 0) + v.float()
                    self.counts[k] = self.counts.get(k, 0) + 1
                self.steps_in_tick += 1
                self.display.advance(recipe.images_seen / 1000)
                done = recipe.images_seen >= total
                snapshot = _crossed(before, recipe.images_seen, opts.snapshot_kimg) and not done
                if self.steps_in_tick == opts.log_every or done or snapshot:
                    outcome = self.tick()
                    if outcome == "rollback":
                        stream = data_stream(self.dataset, recipe, acc, opts.workers)
                        continue
                    if outcome == "failed":
                        return "failed"
                    if stop.requested:  # checked only at ticks: no host sync in the step
                        acc.set_trigger()
                    if acc.check_trigger() and not done:  # every rank checks at every tick
                        return "interrupted"
                if self.main and _crossed(before, recipe.images_seen, opts.grid_kimg) and \
                        not done:
                    self.write_grid()
                if _crossed(before, recipe.images_seen, opts.metrics_kimg) and not done:
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


# ---------------------------------------------------------------------------- the end


def finish(trainer: Trainer) -> str:
    """Train, then save before anything that could fail (grids, final metrics); release the
    processes' shared resources; returns "done", "interrupted" or "failed" (nothing saved)."""
    stop = StopFlag()
    try:
        outcome = trainer.train(stop)
        if outcome != "failed":
            trainer.save(snapshot=outcome == "done", final=True)
            if trainer.main:
                trainer.write_grid(final=True)
            if outcome == "done":
                trainer.measure(final=True)
    finally:
        stop.restore()
        if trainer.log_file:
            trainer.log_file.close()
    release(trainer)
    return outcome


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
