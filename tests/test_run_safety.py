"""train.py's run safety as a user meets it (issues 14 and 15): numbers are refused at the
boundary, a resumed run keeps its identity, numbered snapshots are exact training states,
`--resume auto` starts or continues, trackers and log.jsonl record what happened, a failing metric
never costs the weights, a stop request lands on a tick, precision follows Accelerate's settings,
and a torchrun group that loses a process restarts and ends where an uninterrupted group ends.

Refusals (which happen before any model is built) run in this process through typer's CliRunner,
train.py loaded as a module as test_distributed does; runs that train go through `python
train.py`, as a user's do. The runs are tiny ProGANs on 8×8 images (8 images a step).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from nanogan import checkpoint, evaluate, runs
from test_distributed import _train_module
from test_train import TINY, assert_same_state, env, folder, run_args, said, train  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import sample  # noqa: E402

script = _train_module()
runner = CliRunner()
STEP = 8  # images per step in every run below (TINY's --batch-size 8)


# ------------------------------------------------------------------------------------ helpers


@pytest.fixture(scope="module")
def plain_env(env) -> dict:  # noqa: F811 - the fixture imported from test_train
    """The subprocess environment without any precision setting of Accelerate's."""
    return {k: v for k, v in env.items() if k != "ACCELERATE_MIXED_PRECISION"}


def cli(args: list, plain_env: dict, **extra_env: str | None):
    """train.py's command line in this process (for what fails or ends before training)."""
    environ = {"XDG_CACHE_HOME": plain_env["XDG_CACHE_HOME"], "COLUMNS": "200",
               "ACCELERATE_MIXED_PRECISION": None, **extra_env}
    return runner.invoke(script.app, [str(a) for a in args], env=environ)


def stated(result) -> str:
    """What a CliRunner result wrote to stderr, with whitespace folded."""
    return " ".join(result.stderr.split())


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def ticks(out: Path) -> list[dict]:
    return [r for r in records(out) if "images_per_s" in r]


def images_seen(path: Path) -> int:
    return checkpoint.load(path, kind="training").state["progress"]["images_seen"]


def listing(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder` with its size and modification time (to see that nothing moved)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _children(pid: int) -> list[int]:
    """The processes `pid` started (torchrun's workers run in sessions of their own)."""
    with contextlib.suppress(OSError):
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return []


@contextlib.contextmanager
def running(command: list[str], environ: dict, log: Path):
    """A process that trains in the background, its output in `log` (a file, not a pipe: a
    worker that outlives its launcher cannot block the test); it and every process it started
    are killed on the way out."""
    with log.open("w") as sink:
        proc = subprocess.Popen(command, env=environ, cwd=ROOT, stdout=sink,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        for pid in [*(_children(proc.pid) if proc.poll() is None else []), proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        proc.wait()


# -------------------------------------------------------------------- 1. numeric boundaries


@pytest.mark.parametrize("flag, value, allowed", [
    ("--kimg", "0", "> 0"), ("--kimg", "-1", "> 0"), ("--workers", "-1", ">= 0"),
    ("--log-every", "0", ">= 1"), ("--grid-kimg", "-1", ">= 0"), ("--snapshot-kimg", "-1", ">= 0"),
    ("--metrics-kimg", "-1", ">= 0"), ("--metrics-images", "1", ">= 2"), ("--threads", "0", ">= 1"),
    ("--keep-snapshots", "-1", ">= 0"), ("--batch-size", "0", ">= 1"), ("--grad-accum", "0", ">= 1"),
])
def test_a_number_out_of_range_is_refused_naming_the_range(flag, value, allowed, plain_env,
                                                           tmp_path):
    """A numeric option outside its range exits 2 before any work, naming the flag and the range on stderr."""
    done = cli(["--model", "progan", "--out", tmp_path / "run", flag, value], plain_env)
    assert done.exit_code == 2, done.output
    message = stated(done)
    assert flag in message and f"must be {allowed}" in message and value in message, message
    assert not (tmp_path / "run").exists()


def test_the_smallest_allowed_numbers_are_accepted(folder, plain_env, tmp_path):  # noqa: F811
    """Each range's own boundary passes (0 = never / all where 0 means that): no off-by-one."""
    threads = torch.get_num_threads()
    try:
        done = cli(run_args("progan", folder, tmp_path / "run", 0.001, "--workers", "0",
                            "--log-every", "1", "--grid-kimg", "0", "--snapshot-kimg", "0",
                            "--metrics-kimg", "0", "--metrics-images", "2", "--threads", "1",
                            "--keep-snapshots", "0", "--grad-accum", "1", "--dry-run"), plain_env)
    finally:
        torch.set_num_threads(threads)  # --threads 1 set it for this whole process
    assert done.exit_code == 0, done.output
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------- 2, 3. identity, snapshots, exactness

KIMG = 0.128  # 16 steps


@pytest.fixture(scope="module")
def straight(folder, plain_env, tmp_path_factory):  # noqa: F811
    """Seed 5, 16 steps in one go, a snapshot every 4 steps (all kept), TensorBoard on."""
    out = tmp_path_factory.mktemp("straight") / "run"
    began = time.time()
    train(run_args("progan", folder, out, KIMG, "--seed", "5", "--snapshot-kimg", "0.032",
                   "--keep-snapshots", "0", "--grid-kimg", "0.064", "--report-to", "tensorboard"),
          plain_env)
    return SimpleNamespace(out=out, began=began, ended=time.time())


@pytest.fixture(scope="module")
def split(folder, plain_env, tmp_path_factory):  # noqa: F811
    """Seed 5, 8 steps with a snapshot every 2 (newest 2 kept), then --resume from the older one."""
    out = tmp_path_factory.mktemp("split") / "run"
    train(run_args("progan", folder, out, KIMG / 2, "--seed", "5", "--snapshot-kimg", "0.016",
                   "--keep-snapshots", "2", "--grid-kimg", "0"), plain_env)
    first = SimpleNamespace(snapshots=runs.snapshots(out),
                            config=json.loads((out / "config.json").read_text()))
    shutil.copy(out / "checkpoint.safetensors", out.parent / "checkpoint-first.safetensors")
    older = first.snapshots[0][1]
    shutil.copy(older, out.parent / older.name)  # the resumed run writes a new one of this name
    train(["--resume", str(older), "--kimg", str(KIMG), "--log-every", "2",
           "--snapshot-kimg", "0.016", "--keep-snapshots", "2"], plain_env)
    return SimpleNamespace(out=out, first=first, first_checkpoint=out.parent /
                           "checkpoint-first.safetensors", older=out.parent / older.name)


def test_a_snapshot_every_snapshot_kimg_and_only_the_newest_kept(straight, split):
    """A numbered snapshot every --snapshot-kimg; --keep-snapshots 2 keeps the newest 2, 0 keeps all."""
    assert [n for n, _ in runs.snapshots(straight.out)] == [32, 64, 96, 128]
    assert [n for n, _ in split.first.snapshots] == [48, 64]
    assert [n for n, _ in runs.snapshots(split.out)] == [112, 128]


def test_a_snapshot_is_the_training_state_of_its_moment(straight, split):
    """A snapshot taken mid-run is bitwise the checkpoint of a run that stopped there."""
    assert images_seen(split.first_checkpoint) == 64
    assert_same_state(runs.snapshots(straight.out)[1][1], split.first_checkpoint)
    assert_same_state(runs.snapshots(split.out)[-1][1], split.out / "checkpoint.safetensors")


def test_resuming_an_older_snapshot_reaches_the_straight_run(straight, split):
    """--resume RUN/snapshots/<older> continues from there and ends bitwise where a straight run ends."""
    assert images_seen(split.older) == 48
    assert json.loads((split.out / "config.json").read_text())["starts"][1]["kimg"] == 0.048
    assert_same_state(straight.out / "checkpoint.safetensors",
                      split.out / "checkpoint.safetensors")


def test_resume_keeps_the_run_identity_and_records_each_start(split):
    """config.json keeps the first start's options (seed 5, kimg, precision, world size) and gains one record per start."""
    after = json.loads((split.out / "config.json").read_text())
    assert {k: v for k, v in after.items() if k != "starts"} == \
        {k: v for k, v in split.first.config.items() if k != "starts"}
    assert (after["seed"], after["config"]["kimg"], after["precision"], after["world_size"]) == \
        (5, KIMG / 2, "no", 1)
    starts = after["starts"]
    assert len(starts) == 2
    assert [s["kimg"] for s in starts] == [0, 0.048]
    assert "--seed" in starts[0]["command"] and "--resume" in starts[1]["command"]
    for start in starts:
        assert (start["world_size"], start["precision"]) == (1, "no")
        assert start["torch"] == torch.__version__ and start["accelerate"]
        assert start["host"] == socket.gethostname()


@pytest.mark.parametrize("flag, value, kept", [
    ("--seed", "6", "5"), ("--batch-size", "16", "8"), ("--resolution", "16", "8"),
    ("--set", "batch_size=16", "8"), ("--set", "resolution=16", "8")])
def test_resume_refuses_another_seed_or_batch_size(split, plain_env, flag, value, kept):
    """A --seed, --batch-size or --resolution on resume (as a flag or through --set) that differs
    from the run's exits 2 and writes nothing."""
    before = listing(split.out)
    done = cli(["--resume", split.out, flag, value], plain_env)
    assert done.exit_code == 2, done.output
    named = {"--set": "--batch-size" if "batch" in value else "--resolution"}.get(flag, flag)
    assert named in stated(done) and f"started with {named} {kept}" in stated(done)
    assert listing(split.out) == before
    same = f"{value.split('=')[0]}={kept}" if flag == "--set" else kept
    assert cli(["--resume", split.out, flag, same, "--dry-run"], plain_env).exit_code == 0


def test_sample_py_takes_a_run_folder(split, tmp_path):
    """`python sample.py RUN --seeds 0-3` draws from the run folder's model file."""
    grid = tmp_path / "seeds.png"
    try:
        sample.main([str(split.out), "--seeds", "0-3", "--out", str(grid)])
    except SystemExit as end:  # typer's standalone mode exits, 0 on success
        assert end.code in (0, None), end.code
    with Image.open(grid) as image:  # 4 images of 8×8 in one grid
        assert image.size[0] >= 2 * 8 and image.size[1] >= 2 * 8


# -------------------------------------------------------------- 5, 6. trackers and the log


def _tensorboard(out: Path) -> tuple[dict, dict]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    scalars, images = {}, {}
    for folder in sorted({p.parent for p in (out / "tensorboard").rglob("events.out.tfevents*")}):
        events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
        events.Reload()
        for tag in events.Tags()["scalars"]:
            scalars[tag] = [e.value for e in events.Scalars(tag)]
        for tag in events.Tags()["images"]:
            images[tag] = events.Images(tag)
    return scalars, images


def test_tensorboard_gets_the_losses_speed_and_grids(straight):
    """--report-to tensorboard writes event files with every tick's losses and speed, and the grids as images."""
    scalars, images = _tensorboard(straight.out)
    logged = ticks(straight.out)
    for key in ("loss_D", "loss_G", "images_per_s", "s_per_kimg", "alpha"):
        assert key in scalars, sorted(scalars)
        np.testing.assert_allclose(scalars[key], [r[key] for r in logged], rtol=1e-4)
    assert "grid" in images and len(images["grid"]) >= 2  # the first grid, the 64-image one, the end
    with Image.open(straight.out / "grid.png") as png:
        assert (images["grid"][-1].width, images["grid"][-1].height) == png.size


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed")
def test_report_to_wandb_without_wandb_says_how_to_install_it(plain_env, tmp_path):
    """--report-to wandb without wandb installed exits 2 before any work, naming `pip install wandb`."""
    done = cli(["--model", "progan", "--out", tmp_path / "run", "--report-to", "wandb"], plain_env)
    assert done.exit_code == 2 and "pip install wandb" in stated(done), done.output
    assert not (tmp_path / "run").exists()


def test_log_records_time_speed_and_memory(straight):
    """Every tick logs a unix time within the run, s/kimg = 1000 / (images/s) > 0 and peak memory > 0."""
    logged = ticks(straight.out)
    assert [r["kimg"] for r in logged] == pytest.approx([2 * STEP * i / 1000 for i in range(1, 9)])
    times = [r["time"] for r in logged]
    assert straight.began <= times[0] and times == sorted(times) and times[-1] <= straight.ended
    for r in logged:
        assert r["s_per_kimg"] > 0 and r["peak_mem_mib"] > 0
        assert r["s_per_kimg"] == pytest.approx(1000 / r["images_per_s"], rel=1e-2)


# ------------------------------------------------------------------------------ 7. metrics


def test_a_failing_metric_never_costs_the_run(folder, plain_env, tmp_path, monkeypatch,  # noqa: F811
                                              fresh_accelerate_state):
    """A metric that raises is logged as "metric-error" and training goes on; the final checkpoint
    and model file are on disk before the final metrics run, and stay when they fail."""
    out, seen = tmp_path / "run", []

    def failing(*args, **kwargs):
        seen.append((out / "checkpoint.safetensors").exists() and
                    images_seen(out / "checkpoint.safetensors"))
        raise RuntimeError("metric broke")

    monkeypatch.setattr(evaluate, "evaluate", failing)
    done = cli(run_args("progan", folder, out, 0.032, "--resolution", "16", "--metrics", "swd",
                        "--metrics-images", "16", "--metrics-kimg", "0.016", "--grid-kimg", "0"),
               plain_env)
    assert done.exit_code == 0, done.output
    errors = [r for r in records(out) if r.get("event") == "metric-error"]
    assert [r["kimg"] for r in errors] == [0.016, 0.032]
    assert all("metric broke" in r["error"] for r in errors)
    assert records(out)[-1]["kimg"] == 0.032  # the steps after the first failure ran
    assert seen == [False, 32]  # mid-run: no checkpoint yet; at the end: the final one
    assert (out / "model.safetensors").is_file()


@pytest.mark.parametrize("args, message", [
    (["--metrics", "fid", "--extractor", "inceptoin", "--metrics-images", "64"],
     "unknown extractor 'inceptoin'"),
    (["--metrics", "swd", "--resolution", "16", "--metrics-images", "100000"],
     "only 64 real images"),
])
def test_a_metrics_setup_that_cannot_work_fails_before_training(args, message, folder,  # noqa: F811
                                                                plain_env, tmp_path):
    """A misspelt extractor or more metric images than real ones exits 2 before the first step."""
    out = tmp_path / "run"
    done = cli(run_args("progan", folder, out, 0.032, *args), plain_env)
    assert done.exit_code == 2, done.output
    assert message in stated(done) and "--metrics" in stated(done)
    assert not out.exists()


# ------------------------------------------- 4, 8, 9. --resume auto, SIGTERM and precision


@pytest.fixture(scope="module")
def auto(folder, plain_env, tmp_path_factory):  # noqa: F811
    """`--resume auto --out RUN` under ACCELERATE_MIXED_PRECISION=bf16, SIGTERM after two ticks,
    then the same command again (without the variable) to 2 ticks beyond the stop."""
    out = tmp_path_factory.mktemp("auto") / "run"
    args = run_args("progan", folder, out, 1.0, "--resume", "auto", "--grid-kimg", "0")
    printed = out.parent / "printed.txt"
    with running([sys.executable, str(ROOT / "train.py"), *args],
                 plain_env | {"ACCELERATE_MIXED_PRECISION": "bf16"}, printed) as proc:
        log, deadline = out / "log.jsonl", time.monotonic() + 120
        while not (log.exists() and log.read_text().count("\n") >= 2):
            assert proc.poll() is None and time.monotonic() < deadline, printed.read_text()
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    output = printed.read_text()
    stopped = SimpleNamespace(code=proc.returncode, output=" ".join(output.split()),
                              last=records(out)[-1],
                              images=images_seen(out / "checkpoint.safetensors"))
    target = stopped.images + 2 * 2 * STEP
    args[args.index("--kimg") + 1] = str(target / 1000)
    train(args, plain_env)
    return SimpleNamespace(out=out, stopped=stopped, target=target,
                           config=json.loads((out / "config.json").read_text()))


def test_sigterm_stops_at_a_tick_saves_and_exits_130(auto):
    """SIGTERM stops at the next tick (a multiple of --log-every steps), saves there and exits 130."""
    assert auto.stopped.code == 130, auto.stopped.output
    assert "Interrupted at kimg" in auto.stopped.output
    assert auto.stopped.images == round(auto.stopped.last["kimg"] * 1000)
    assert auto.stopped.images % (2 * STEP) == 0 and 0 < auto.stopped.images < 1000


def test_resume_auto_starts_then_continues(auto):
    """--resume auto --out RUN starts a run where there is no checkpoint and continues it where there is."""
    starts = auto.config["starts"]
    assert [s["kimg"] for s in starts] == [0, auto.stopped.images / 1000]
    assert records(auto.out)[-1]["kimg"] == auto.target / 1000
    assert images_seen(auto.out / "checkpoint.safetensors") == auto.target


def test_resume_auto_needs_out(plain_env):
    """--resume auto without --out exits 2 and says that it needs --out."""
    done = cli(["--resume", "auto"], plain_env)
    assert done.exit_code == 2 and "--out" in stated(done), done.output


def test_precision_comes_from_accelerate_then_from_the_run(auto):
    """Without --precision a run takes ACCELERATE_MIXED_PRECISION, records it, and keeps it on resume."""
    assert auto.config["precision"] == "bf16"
    assert [s["precision"] for s in auto.config["starts"]] == ["bf16", "bf16"]


def _shown_precision(result) -> str:
    return re.search(r"precision\s*│\s*(\w+)", result.stdout)[1]


def test_dry_run_shows_accelerates_precision_unless_told(folder, plain_env, tmp_path):  # noqa: F811
    """--dry-run shows ACCELERATE_MIXED_PRECISION's precision; --precision overrides it."""
    args = run_args("progan", folder, tmp_path / "run", 0.016, "--dry-run")
    told = cli(args, plain_env, ACCELERATE_MIXED_PRECISION="bf16")
    assert told.exit_code == 0, told.output
    assert _shown_precision(told) == "bf16"
    overridden = cli([*args, "--precision", "no"], plain_env, ACCELERATE_MIXED_PRECISION="bf16")
    assert _shown_precision(overridden) == "no"
    assert _shown_precision(cli(args, plain_env)) == "no"


# ------------------------------------------------------------------ 10. elastic restarts


class WorkersHungAtExit(AssertionError):
    """A torchrun worker that finished training but never exited: DDP's Reducer freed after the
    process group was destroyed and rank 0 had left (trainer.release frees it while all are alive)."""


def _finish(proc: subprocess.Popen, out: Path, printed: Path, grace: float = 60.0) -> bool:
    """Wait for torchrun; True if it exited, False if its run was done (the final checkpoint
    saved, "Done:" printed) but a worker still had not exited `grace` s later."""
    deadline, done_at = time.monotonic() + 300, None
    while proc.poll() is None:
        assert time.monotonic() < deadline, printed.read_text()[-3000:]
        if done_at is None and "Done:" in printed.read_text():
            done_at = time.monotonic()
        if done_at is not None and time.monotonic() - done_at > grace:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.slow  # two 2-process torchrun runs, one of them restarted: 20-50 s on 2 cores
@pytest.mark.skipif(shutil.which("torchrun") is None or not Path("/proc").is_dir(),
                    reason="needs torchrun and /proc")
def test_torchrun_restarts_a_killed_group_and_ends_exactly(folder, plain_env, tmp_path):  # noqa: F811
    """SIGKILL one of two torchrun workers: the group restarts with --resume auto, finishes, and
    its final state is bitwise that of an uninterrupted 2-process run.

    TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1: torch 2.13's torchrun otherwise hands the restarted
    workers the rendezvous store of the first attempt, which still holds the dead workers' gloo
    addresses; about half the restarts then fail ("Gloo connectFullMesh failed ... Connection
    refused") or hang, with or without nanogan (a 15-line all_reduce script does the same).
    """
    environ = plain_env | {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}

    def torchrun(out: Path, *extra: str) -> list[str]:
        return ["torchrun", "--standalone", "--nproc_per_node", "2", *extra,
                str(ROOT / "train.py"), *run_args("progan", folder, out, 0.256, "--seed", "5",
                                                  "--resume", "auto", "--snapshot-kimg", "0.032",
                                                  "--grid-kimg", "0")]

    whole, killed = tmp_path / "whole", tmp_path / "killed"
    with running(torchrun(whole), environ, tmp_path / "whole.txt") as proc:
        exited = [_finish(proc, whole, tmp_path / "whole.txt")]
        assert not exited[0] or proc.returncode == 0, (tmp_path / "whole.txt").read_text()
    printed = tmp_path / "killed.txt"
    with running(torchrun(killed, "--max-restarts", "1"), environ, printed) as proc:
        deadline = time.monotonic() + 120
        while not runs.snapshots(killed):
            assert proc.poll() is None and time.monotonic() < deadline, printed.read_text()
            time.sleep(0.01)
        workers = _children(proc.pid)
        assert len(workers) == 2, workers
        os.kill(workers[-1], signal.SIGKILL)
        exited.append(_finish(proc, killed, printed))
        assert not exited[1] or proc.returncode == 0, printed.read_text()[-3000:]
    starts = json.loads((killed / "config.json").read_text())["starts"]
    assert len(starts) == 2 and starts[1]["kimg"] > 0, starts  # restarted, and continued
    assert all(s["world_size"] == 2 for s in starts)
    assert images_seen(killed / "checkpoint.safetensors") == 256
    assert_same_state(whole / "checkpoint.safetensors", killed / "checkpoint.safetensors")
    if not all(exited):
        raise WorkersHungAtExit("training finished and saved, but a worker never exited")


def test_a_checkpoint_missing_on_another_node_is_refused(tmp_path, monkeypatch):
    """On several nodes every process reads rank 0's checkpoint: one that is not on this node's
    disk is refused with the shared-filesystem requirement; on one node the missing file is left
    to the ordinary resume errors."""
    missing = tmp_path / "checkpoint.safetensors"
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # two nodes of two processes
    with pytest.raises(checkpoint.CheckpointError, match="must be on a filesystem they share"):
        script._check_shared(missing)
    missing.write_bytes(b"")
    script._check_shared(missing)  # present: fine
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # one node
    script._check_shared(tmp_path / "other.safetensors")


def test_processes_that_found_different_checkpoints_are_stopped(tmp_path):
    """Each process reads its own disk: if they found different steps (or some none), the run
    stops before training instead of diverging silently."""
    class Gathers:  # accelerator.gather on a 3-process run: this process's step, then the others'
        device = torch.device("cpu")

        def __init__(self, *others):
            self.others = others

        def gather(self, t):
            return torch.cat([t, torch.tensor(self.others)])

    run = SimpleNamespace(state={"progress": {"step": 40}}, out=tmp_path)
    script.check_same_start(run, Gathers(40, 40))
    with pytest.raises(checkpoint.CheckpointError, match=r"steps \[40, 40, -1\]; -1: none"):
        script.check_same_start(run, Gathers(40, -1))
    fresh = SimpleNamespace(state=None, out=tmp_path)
    script.check_same_start(fresh, Gathers(-1, -1))
    with pytest.raises(checkpoint.CheckpointError, match=r"steps \[-1, 40, 40\]"):
        script.check_same_start(fresh, Gathers(40, 40))


def test_processes_share_a_process_group_or_the_run_is_refused(monkeypatch):
    """The models reduce their statistics with torch.distributed. Accelerate starts no group on
    a TPU: there train.py starts XLA's ("xla", init_method "xla://", after importing the module
    that registers the backend); several processes without a group anywhere else are refused;
    one process needs none; and bf16 on a TPU, where Accelerate sets XLA_USE_BF16=1 (every
    tensor bf16), is refused before anything starts. (The accelerator and torch_xla are faked:
    no TPU here.)"""
    from accelerate.utils import DistributedType
    import typer

    started = []
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.distributed, "init_process_group",
                        lambda *a, **k: started.append((a, k)))
    xla_backend = SimpleNamespace(registered="xla")  # what the import brings in
    for name, module in (("torch_xla", SimpleNamespace()),
                         ("torch_xla.distributed", SimpleNamespace(xla_backend=xla_backend)),
                         ("torch_xla.distributed.xla_backend", xla_backend)):
        monkeypatch.setitem(sys.modules, name, module)

    def accelerator(kind, processes, precision="no"):
        return SimpleNamespace(distributed_type=kind, num_processes=processes,
                               mixed_precision=precision)

    script.connect_processes(accelerator(DistributedType.XLA, 8))
    assert started == [(("xla",), {"init_method": "xla://"})]
    with pytest.raises(RuntimeError, match="2 processes .* but no torch.distributed process group"):
        script.connect_processes(accelerator(DistributedType.MULTI_CPU, 2))
    script.connect_processes(accelerator(DistributedType.NO, 1))
    script.connect_processes(accelerator(DistributedType.XLA, 1))
    assert len(started) == 1
    monkeypatch.delenv("XLA_USE_BF16", raising=False)
    monkeypatch.delenv("XLA_DOWNCAST_BF16", raising=False)
    script.connect_processes(accelerator(DistributedType.XLA, 1, "bf16"))  # XLA on a GPU: autocast
    monkeypatch.setenv("XLA_USE_BF16", "1")  # what Accelerate sets for bf16 on a TPU
    with pytest.raises(typer.BadParameter, match="XLA_USE_BF16.*--precision no"):
        script.connect_processes(accelerator(DistributedType.XLA, 8, "bf16"))
    monkeypatch.setenv("XLA_USE_BF16", "0")  # Accelerate's ACCELERATE_DOWNCAST_BF16 variant
    monkeypatch.setenv("XLA_DOWNCAST_BF16", "1")
    with pytest.raises(typer.BadParameter, match="XLA_USE_BF16"):
        script.connect_processes(accelerator(DistributedType.XLA, 8, "bf16"))
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)  # torchrun's group
    script.connect_processes(accelerator(DistributedType.MULTI_GPU, 8, "bf16"))
    assert len(started) == 1


def test_train_connects_the_processes_and_sizes_the_loader_per_node(  # noqa: F811
        folder, plain_env, tmp_path, monkeypatch):
    """train.py's main calls connect_processes on its Accelerator before building the recipe,
    and asks default_workers for this node's process count (LOCAL_WORLD_SIZE), not the job's.
    Stopped right after, before any training."""
    calls = []
    monkeypatch.setattr(script, "connect_processes", lambda acc: calls.append("connect"))
    real_build = script.build

    def build(*args, **kwargs):
        calls.append("build")
        return real_build(*args, **kwargs)

    def workers(device, local_processes):
        calls.append(("workers", local_processes))
        raise RuntimeError("stop before training")

    monkeypatch.setattr(script, "build", build)
    monkeypatch.setattr(script, "default_workers", workers)
    done = cli(run_args("stylegan2", folder, tmp_path / "run", 0.016), plain_env,
               LOCAL_WORLD_SIZE="3")
    assert isinstance(done.exception, RuntimeError), done.output
    assert "stop before training" in str(done.exception)
    assert calls == ["connect", "build", ("workers", 3)]
