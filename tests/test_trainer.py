"""The loop of one process (nanogan/trainer.py): a tick logs each number's mean over the steps
that produced it, only the main process writes and shows anything, `finish` saves what each
outcome calls for, Ctrl-C asks once and aborts twice, and a non-finite loss never overwrites the
last good checkpoint (stop, or roll back with a new seed).

The in-process tests drive a real `Trainer` with a scripted recipe and a stand-in for the
Accelerator (the loop uses it duck-typed); the runs that reach a NaN go through `python
train.py`, as a user's do."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from test_distributed import _train_module
from test_recipe import SMALL, data, small_recipe
from test_train import env, folder, run_args, said, train  # noqa: F401

from nanogan import models, runs, trainer
from nanogan.data import InfiniteSampler
from nanogan.trainer import Display, Options, StopFlag, Trainer, finish

BATCH = 4


class ScriptedRecipe:
    """Steps that count images and return known numbers: `loss` = the step's number on every
    step (NaN at step `nan_at`), `r1` = ten times it on even steps only (a lazy regularizer)."""

    def __init__(self, start_step: int, nan_at: Optional[int] = None):
        self.seed, self.step, self.batch_per_step, self.nan_at = 0, start_step, BATCH, nan_at
        self.sampled: list[tuple[int, bool]] = []  # (step, final) of each before_sampling

    @property
    def images_seen(self) -> int:
        return self.step * BATCH

    def train_step(self, reals, labels) -> dict[str, torch.Tensor]:
        assert reals.dtype == torch.float32 and len(reals) == BATCH
        self.step += 1
        out = {"loss": torch.tensor(float("nan") if self.step == self.nan_at else self.step)}
        if self.step % 2 == 0:
            out["r1"] = torch.tensor(10.0 * self.step)
        return out

    def diagnostics(self) -> dict[str, float]:
        return {"alpha": 0.5, "sv/G": 2.0}

    def before_sampling(self, final: bool = False) -> None:
        self.sampled.append((self.step, final))

    def sampling_view(self) -> dict:
        return {}


class Accelerator(SimpleNamespace):
    """What the loop asks of Accelerate, for one process of `num_processes`."""

    def __init__(self, main: bool = True):
        super().__init__(is_main_process=main, device=torch.device("cpu"), num_processes=1,
                         process_index=0, trackers=[], logged=[], calls=[])

    def reduce(self, tensor, reduction):
        return tensor  # the mean over one process

    def log(self, values, step):
        self.logged.append((step, values))

    def set_trigger(self):
        self.calls.append("set_trigger")

    def check_trigger(self):
        return "set_trigger" in self.calls

    def prepare_data_loader(self, loader):
        return loader

    def wait_for_everyone(self):
        self.calls.append("wait")

    def free_memory(self):
        self.calls.append("free_memory")

    def end_training(self):
        self.calls.append("end_training")


class Recorder(Display):
    """A display that keeps what it was asked to show."""

    def __init__(self):
        self.shown = []

    def tick(self, kimg, speed, info):
        self.shown.append(("tick", kimg, info))

    def warn(self, message):
        self.shown.append(("warn", message))


class Images(torch.utils.data.Dataset):
    def __len__(self):
        return 16

    def __getitem__(self, i):
        return torch.full((1, 4, 4), i, dtype=torch.uint8), 0


def scripted(tmp_path: Path, *, main: bool, start_step: int = 1, steps: int = 8,
             log_every: int = 4, grid_kimg: float = 0, snapshot_kimg: float = 0,
             nan_at: Optional[int] = None) -> tuple[Trainer, Recorder]:
    """A Trainer resumed at `start_step` (so no first grid) that runs `steps` steps."""
    spec = models.MODELS["progan"]
    cfg = dataclasses.replace(spec.PRESETS["tiny"], kimg=(start_step + steps) * BATCH / 1000)
    run = runs.Run("progan", "tiny", spec, cfg, tmp_path, 0, "no", None, False, False)
    display = Recorder()
    opts = Options(log_every=log_every, grid_kimg=grid_kimg, snapshot_kimg=snapshot_kimg)
    return Trainer(run, ScriptedRecipe(start_step, nan_at), Accelerator(main), Images(), opts,
                   display), display


def recording(t: Trainer, name: str) -> list[int]:
    """Replace the trainer's method `name` by one that records the step of each call."""
    steps = []
    setattr(t, name, lambda *args, **kwargs: steps.append(t.recipe.step))
    return steps


def test_a_tick_logs_each_numbers_mean_over_the_steps_that_produced_it(tmp_path):
    """Each logged number is averaged over the steps of its tick that returned it (every step's
    loss, every other step's R1), in log.jsonl, in the trackers and on the display."""
    t, display = scripted(tmp_path, main=True)
    assert t.train(SimpleNamespace(requested=False)) == "done"
    t.log_file.close()
    ticks = [[2, 3, 4, 5], [6, 7, 8, 9]]  # steps 2..9 after resuming at step 1, 4 per tick
    losses = [sum(s) / len(s) for s in ticks]
    r1s = [sum(10.0 * k for k in s if k % 2 == 0) / len([k for k in s if k % 2 == 0])
           for s in ticks]
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [(r["step"], r["kimg"], r["loss"], r["r1"], r["alpha"], r["sv/G"]) for r in records] \
        == [(s[-1], s[-1] * BATCH / 1000, loss, r1, 0.5, 2.0)
            for s, loss, r1 in zip(ticks, losses, r1s)]
    assert [(step, v["loss"], v["r1"]) for step, v in t.accelerator.logged] == \
        [(s[-1], loss, r1) for s, loss, r1 in zip(ticks, losses, r1s)]
    assert display.shown == [("tick", 0.02, "loss 3.5 r1 30 alpha 0.5"),  # "sv/G": logs only
                             ("tick", 0.036, "loss 7.5 r1 70 alpha 0.5")]


def test_only_the_main_process_writes_and_shows(tmp_path):
    """Only the main process draws grids, writes files and shows anything: another trains, logs
    to the trackers (Accelerate keeps the main one's) and joins each snapshot, whatever display
    it was given."""
    for main in (True, False):
        out = tmp_path / ("main" if main else "other")
        out.mkdir()
        # a grid every 2 steps; a snapshot at step 6, between the ticks at steps 5 and 9
        t, display = scripted(out, main=main, grid_kimg=2 * BATCH / 1000,
                              snapshot_kimg=6 * BATCH / 1000)
        grids = recording(t, "write_grid")
        saved = recording(t, "save") if main else None  # the other runs the real one
        assert t.train(SimpleNamespace(requested=False)) == "done"
        assert [step for step, _ in t.accelerator.logged] == [5, 6, 9]
        if main:
            t.log_file.close()
            assert grids == [2, 4, 6, 8] and saved == [6]  # the last grid is finish's
            assert [p.name for p in out.iterdir()] == ["log.jsonl"]
            assert display.shown
        else:
            assert grids == [] and t.accelerator.calls == ["wait"]  # in save, at step 6
            assert t.recipe.sampled == [(6, False)]  # a snapshot on the way: preview statistics
            assert list(out.iterdir()) == []
            assert display.shown == [] and type(t.display) is Display


def test_grids_and_metrics_prepare_g_ema_as_asked(tmp_path, monkeypatch):
    """write_grid and measure call recipe.before_sampling with the `final` they are given (False
    on the way, True from `finish`), so BigGAN's last grid and final metrics see the standing
    statistics of its model file."""
    t, _ = scripted(tmp_path, main=True)
    t.opts = dataclasses.replace(t.opts, metric_names=["swd"])
    t.recipe.G_ema = torch.nn.Identity()
    monkeypatch.setattr(trainer.models, "sample",
                        lambda module, G, cfg, seeds, labels, **kw: torch.zeros(len(seeds), 1, 4, 4))
    monkeypatch.setattr(trainer.evaluate, "evaluate", lambda *args, **kwargs: {})
    t.write_grid()
    t.measure()
    t.write_grid(final=True)
    t.measure(final=True)
    t.log_file.close()
    assert t.recipe.sampled == [(1, False), (1, False), (1, True), (1, True)]


def test_a_non_finite_loss_is_caught_before_a_snapshot_between_ticks(tmp_path):
    """A snapshot boundary forces a tick, so a NaN in the step that reaches it ends the run
    before anything is saved."""
    t, _ = scripted(tmp_path, main=True, log_every=4, snapshot_kimg=6 * BATCH / 1000, nan_at=6)
    saved = recording(t, "save")
    assert t.train(SimpleNamespace(requested=False)) == "failed"
    assert saved == [] and t.recipe.step == 6


def test_a_stop_request_ends_the_loop_at_the_next_tick(tmp_path):
    """A stop request is acted on at a tick, by every process through Accelerate's trigger."""
    t, _ = scripted(tmp_path, main=False, steps=12, log_every=4)
    assert t.train(SimpleNamespace(requested=True)) == "interrupted"
    assert t.recipe.step == 5 and t.accelerator.calls == ["set_trigger"]


class Finishing(SimpleNamespace):
    """A trainer whose loop ends with `outcome`, recording what `finish` asks of it."""

    def __init__(self, outcome: str, tmp_path: Path):
        super().__init__(main=True, log_file=(tmp_path / "log.jsonl").open("a"), done=[],
                         accelerator=Accelerator(), recipe=SimpleNamespace(
                             G=torch.nn.Identity(), D=torch.nn.Identity()))
        self.outcome = outcome

    def train(self, stop):
        assert signal.getsignal(signal.SIGINT) == stop._handle
        return self.outcome

    def save(self, snapshot=True, final=False):
        self.done.append(("save", snapshot, final))

    def write_grid(self, final=False):
        self.done.append(("grid", final))

    def measure(self, final=False):
        self.done.append(("measure", final))


@pytest.mark.parametrize("outcome, done", [
    ("done", [("save", True, True), ("grid", True), ("measure", True)]),
    ("interrupted", [("save", False, True), ("grid", True)]),
    ("failed", []),
])
def test_finish_saves_what_each_outcome_calls_for(outcome, done, tmp_path):
    """A finished run saves a numbered snapshot, its grid and final metrics; an interrupted one
    its checkpoint and grid; a failed one nothing. What a run ends with is `final` (BigGAN: all
    its standing-statistics passes, not the preview's). Every way, the log is closed, the signal
    handlers restored and the processes' resources released; the outcome is returned."""
    before = signal.getsignal(signal.SIGINT)
    t = Finishing(outcome, tmp_path)
    assert finish(t) == outcome
    assert t.done == done and t.log_file.closed and signal.getsignal(signal.SIGINT) == before
    assert t.accelerator.calls[-1] == "end_training" and "free_memory" in t.accelerator.calls


def test_ctrl_c_asks_once_and_aborts_the_second_time():
    """The first SIGINT only sets the request; the second raises KeyboardInterrupt; restore()
    puts the previous handlers back."""
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    stop = StopFlag()
    try:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    finally:
        stop.restore()
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


@given(st.integers(0, 10_000), st.integers(1, 64), st.sampled_from([0.0, 0.001, 0.008, 0.01, 0.5]))
@example(before=7, step=1, every_kimg=0.008)  # lands exactly on the boundary
@example(before=8, step=8, every_kimg=0.008)  # leaves it
@example(before=0, step=64, every_kimg=0.0)  # 0: never
def test_a_boundary_is_crossed_when_a_multiple_falls_in_the_step(before, step, every_kimg):
    """Grids, snapshots and metrics come due when a multiple of their interval lies in
    (before, after] of a step; an interval of 0 never comes due."""
    every = round(every_kimg * 1000)
    due = every > 0 and any(before < m <= before + step for m in range(every, before + step + 1,
                                                                       every))
    assert trainer._crossed(before, before + step, every_kimg) == due


def test_options_refuse_an_unknown_non_finite_policy():
    """on_nonfinite is "stop" or "rollback"; anything else is refused naming both."""
    with pytest.raises(ValueError, match="on_nonfinite must be one of stop, rollback, got 'retry'"):
        Options(on_nonfinite="retry")


def test_a_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(folder, env, tmp_path):
    """A NaN loss stops the run naming the step, and the checkpoint on disk stays the good one."""
    out = tmp_path / "run"
    train(run_args("progan", folder, out, 0.032), env)
    good = (out / "checkpoint.safetensors").read_bytes()
    done = train(["--resume", str(out), "--kimg", "0.064", "--set", "gp_weight=nan",
                  "--snapshot-kimg", "0.008", "--log-every", "1"], env, check=False)
    assert done.returncode == 1
    assert "non-finite loss_D" in done.stderr and "at step 5" in done.stderr
    assert (out / "checkpoint.safetensors").read_bytes() == good


def test_rollback_reloads_the_checkpoint_with_new_seeds(folder, env, tmp_path):
    """--on-nonfinite rollback reloads the last checkpoint with a new seed, up to three times."""
    out = tmp_path / "run"
    train(run_args("progan", folder, out, 0.032), env)
    done = train(["--resume", str(out), "--kimg", "0.064", "--set", "gp_weight=nan",
                  "--on-nonfinite", "rollback", "--log-every", "1"], env, check=False)
    assert done.returncode == 1  # the NaN comes from the config, so every retry fails too
    events = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    seeds = [e["seed"] for e in events if e.get("event") == "rollback"]
    assert len(seeds) == 3 and len(set(seeds)) == 3
    assert "rolled back to kimg 0.03" in said(done)


def test_fast_kernels_only_on_cuda(monkeypatch):
    """use_fast_kernels turns on TF32 (matmul, cuDNN) and cuDNN autotuning for a CUDA device and
    leaves a CPU run's flags alone (setting the flags needs no GPU)."""
    flags = [(torch.backends.cuda.matmul, "allow_tf32"), (torch.backends.cudnn, "allow_tf32"),
             (torch.backends.cudnn, "benchmark")]
    for owner, name in flags:  # restored after the test
        monkeypatch.setattr(owner, name, False)
    trainer.use_fast_kernels(torch.device("cpu"))
    assert [getattr(owner, name) for owner, name in flags] == [False, False, False]
    trainer.use_fast_kernels(torch.device("cuda", 0))
    assert [getattr(owner, name) for owner, name in flags] == [True, True, True]


def test_default_workers_per_device(monkeypatch):
    """No loader processes on a CPU (the cores train); on an accelerator 1 to 4 per process,
    sharing the cores among the processes of a node — the node's, not the job's: 4 nodes of 8
    GPUs with 64 cores each give every process 4 loaders (64 // 8 − 1 = 7, capped), not 1."""
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert trainer.default_workers(torch.device("cpu"), 1) == 0
    assert trainer.default_workers(torch.device("cuda", 0), 1) == 4  # capped at 4
    assert trainer.default_workers(torch.device("cuda", 0), 4) == 3  # 16 // 4 − 1
    assert trainer.default_workers(torch.device("cuda", 0), 8) == 1  # 16 // 8 − 1
    assert trainer.default_workers(torch.device("cuda", 0), 32) == 1  # at least one
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # unknown: counted as 2
    assert trainer.default_workers(torch.device("cuda", 0), 1) == 1
    script = _train_module()
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")  # torchrun's (and accelerate launch's)
    assert script._processes_per_node(32) == 8
    assert trainer.default_workers(torch.device("cuda", 0), script._processes_per_node(32)) == 4
    monkeypatch.delenv("LOCAL_WORLD_SIZE")  # a launcher that does not say: all on this node
    assert script._processes_per_node(32) == 32


@pytest.mark.parametrize("device, workers, pinned", [("cpu", 0, False), ("cpu", 2, False),
                                                     ("cuda", 0, True), ("cuda", 2, True)])
def test_the_data_stream_pins_memory_on_cuda_and_resumes_at_the_step(device, workers, pinned):
    """data_stream builds its loader for the device — pinned host memory (for asynchronous
    copies) only on CUDA, worker processes kept alive between epochs whenever there are any
    (on a CPU train.py asks for none) — and starts where the step counter
    says: step t of a run with batch b reads the sampler's stream from index t·b. The loader is
    inspected, not iterated, so no GPU is needed."""
    dataset = torch.utils.data.TensorDataset(torch.arange(40.0))
    prepared = []
    accelerator = SimpleNamespace(device=torch.device(device),
                                  prepare_data_loader=lambda l: prepared.append(l) or [])
    recipe = SimpleNamespace(batch_per_step=8, seed=5, step=3)
    trainer.data_stream(dataset, recipe, accelerator, workers)
    (loader,) = prepared
    assert (loader.pin_memory, loader.num_workers, loader.persistent_workers) == (
        pinned, workers, workers > 0)
    assert loader.batch_size == 8 and loader.drop_last
    resumed, from_start = iter(loader.sampler), iter(InfiniteSampler(40, seed=5))
    for _ in range(3 * 8):  # the three steps already taken
        next(from_start)
    assert [next(resumed) for _ in range(50)] == [next(from_start) for _ in range(50)]


class OnDevice(torch.Tensor):
    """A CPU tensor that reports a GPU as its device: where Accelerate's device placement puts an
    optimizer's state on a GPU machine (this one has none)."""

    @property
    def device(self):
        return torch.device("cuda", 0)

    def cpu(self, *args, **kwargs):
        return self.as_subclass(torch.Tensor)


@pytest.mark.parametrize("model", ["stylegan2", "biggan"])
def test_a_resumed_runs_adam_step_counts_stay_on_the_host(model, monkeypatch,
                                                          fresh_accelerate_state):
    """Resuming builds the recipe from a checkpoint, and Accelerate's `prepare` moves the loaded
    optimizer state to the device — step counts too, which torch's Adam then reads back at every
    update (a device sync per parameter per step). On train.py's path (make_accelerator +
    build_recipe, the device placement faked), every count ends on the host as a plain tensor
    with its value."""
    import accelerate.optimizer

    placed = []

    def to_device(state, device, *args, **kwargs):  # what prepare does on a GPU
        state = move(state, device, *args, **kwargs)
        if isinstance(state, dict) and "param_groups" in state:  # (it recurses through here)
            for per_param in state["state"].values():
                per_param["step"] = OnDevice(per_param["step"])
                placed.append(per_param["step"])
        return state

    move = accelerate.optimizer.move_to_device
    monkeypatch.setattr(accelerate.optimizer, "move_to_device", to_device)
    trained = small_recipe(model)
    for step in range(2):
        trained.train_step(*data(trained, step))
    state = trained.state_dict()
    module = models.MODELS[model]
    cfg = dataclasses.replace(module.PRESETS["tiny"], **SMALL[model])
    accelerator = _train_module().make_accelerator(module, "no")
    resumed = trainer.build_recipe(module, cfg, accelerator, seed=0, state=state)
    assert placed, "prepare did not place the optimizer state (the fake missed the path)"

    def counts(r):
        return [s["step"] for opt in (r.opt_G, r.opt_D) for s in opt.state.values()]

    assert counts(resumed) and all(type(c) is torch.Tensor and c.device.type == "cpu"
                                   for c in counts(resumed))
    assert [c.item() for c in counts(resumed)] == [c.item() for c in counts(trained)]
