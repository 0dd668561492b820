"""Data parallelism on CPUs (gloo): two processes stay in lockstep, and split one batch exactly.

Two launchers are used, as a user would: Accelerate's debug launcher runs the recipes in two
CPU processes (parameters gathered across ranks must be identical; BigGAN's BatchNorm must see
the global batch), and `torchrun --nproc_per_node 2 train.py` runs the real script (only rank 0
writes, and 2 processes × b/2 end where 1 process × b ends).

`accelerate.debug_launcher` forks, and a child forked from a process whose OpenMP thread pool
is already running (any earlier test's convolution) can hang in its first parallel kernel; so
`launch` below is the same launcher with the "spawn" start method.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from accelerate.utils import PrepareForLaunch, patch_environment
from safetensors.torch import load_file, save_file
from torch.multiprocessing import start_processes
from test_recipe import MODELS, SMALL, data
from test_train import run_args

from nanogan import models, trainer
from nanogan.recipe import unwrap

ROOT = Path(__file__).resolve().parent.parent
STEPS = 3
pytestmark = pytest.mark.skipif(not torch.distributed.is_available(),
                                reason="torch.distributed is not available")


def _train_module():
    spec = importlib.util.spec_from_file_location("nanogan_train_script", ROOT / "train.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


def _config(model: str):
    return dataclasses.replace(models.MODELS[model].PRESETS["tiny"], **SMALL[model])


def _flat(net: torch.nn.Module, buffers: bool = False) -> torch.Tensor:
    tensors = list(net.buffers()) if buffers else list(net.parameters())
    return torch.cat([t.detach().float().flatten() for t in tensors] + [torch.zeros(0)])


def _worker(model: str, folder: str) -> None:
    """Train STEPS steps on this rank's contiguous share of each global batch, then gather."""
    torch.set_num_threads(1)
    train, module = _train_module(), models.MODELS[model]
    accelerator = train.make_accelerator(module)
    recipe = trainer.build_recipe(module, _config(model), accelerator, seed=3)
    world, rank = accelerator.num_processes, accelerator.process_index
    for step in range(STEPS):
        reals, labels = data(recipe, step)
        n = len(reals) // world
        recipe.train_step(reals[rank * n:(rank + 1) * n], labels[rank * n:(rank + 1) * n])
    G, D = unwrap(recipe.G), unwrap(recipe.D)
    out = {"G": _flat(G), "D": _flat(D), "G_buffers": _flat(G, buffers=True),
           "D_buffers": _flat(D, buffers=True), "G_ema": _flat(recipe.G_ema)}
    gathered = {k: accelerator.gather(v[None].contiguous()) for k, v in out.items()}
    if accelerator.is_main_process:
        save_file({k: v.contiguous() for k, v in gathered.items()},
                  os.path.join(folder, "gathered.safetensors"))
    # As train.py ends: DDP freed while both ranks live, then the process group destroyed (left
    # to interpreter exit, gloo's teardown can abort one rank: "terminate called without an
    # active exception").
    trainer.release(SimpleNamespace(accelerator=accelerator, recipe=recipe))


def free_port() -> int:
    """A TCP port nobody listens on now, so that concurrent test runs do not collide."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(function, args: tuple, num_processes: int = 2) -> None:
    """accelerate.debug_launcher with fresh (spawned) processes: CPU, gloo on loopback."""
    with tempfile.TemporaryDirectory() as folder, patch_environment(
            world_size=num_processes, master_addr="127.0.0.1", master_port=str(free_port()),
            accelerate_mixed_precision="no",
            accelerate_debug_rdv_file=os.path.join(folder, "rendezvous"),
            accelerate_use_cpu="yes", gloo_socket_ifname="lo"):
        start_processes(PrepareForLaunch(function, debug=True), args=args,
                        nprocs=num_processes, start_method="spawn")


def _single_process(model: str) -> dict[str, torch.Tensor]:
    torch.manual_seed(3)
    recipe = models.MODELS[model].Recipe(_config(model), seed=3)
    for step in range(STEPS):
        recipe.train_step(*data(recipe, step))
    return {"G": _flat(recipe.G), "D": _flat(recipe.D), "G_buffers": _flat(recipe.G, True),
            "G_ema": _flat(recipe.G_ema)}


@pytest.fixture(scope="module", params=MODELS)
def two_processes(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"ddp-{request.param}")
    launch(_worker, (request.param, str(folder)))
    return request.param, load_file(str(folder / "gathered.safetensors"))


def test_parameters_stay_identical_across_ranks(two_processes):
    """After several steps, every parameter, buffer and EMA weight is bitwise the same on both
    ranks — with DDP's buffer broadcast off (train.make_accelerator): equal by construction."""
    model, gathered = two_processes
    for name, per_rank in gathered.items():
        assert per_rank.shape[0] == 2
        assert torch.equal(per_rank[0], per_rank[1]), f"{model}: {name} differs between ranks"


def test_two_halves_make_the_whole_batch_update(two_processes):
    """2 processes × batch b/2 give the weights of 1 process × batch b (BigGAN: with
    cross-replica BatchNorm)."""
    model, gathered = two_processes
    single = _single_process(model)
    for name in ("G", "D", "G_ema", "G_buffers"):
        torch.testing.assert_close(gathered[name][0], single[name], rtol=1e-4, atol=1e-5,
                                   msg=f"{model}: {name}")


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun is not on PATH")
@pytest.mark.parametrize("cache", [("--cache", "auto"), ("--cache", "stream", "--workers", "1")],
                         ids=["auto", "stream"])
def test_torchrun_train_py_only_rank_zero_writes_and_matches_one_process(tmp_path, cache):
    """`torchrun --nproc_per_node 2 train.py` writes one log and one set of files, equal to a
    1-process run: with the decoded data (auto) and streamed by a loader worker (stream)."""
    root = tmp_path / "shapes"
    _make_folder(root)
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    two, one = tmp_path / "two", tmp_path / "one"
    cmd = ["torchrun", "--nproc_per_node", "2", "--master_port", str(free_port()),
           str(ROOT / "train.py"), *run_args("progan", root, two, 0.048, *cache)]
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("Done:") == 1
    assert json.loads((two / "config.json").read_text())["world_size"] == 2
    decoded = list((tmp_path / "cache").rglob("*.images.npy"))
    assert len(decoded) == (0 if "stream" in cache else 1)  # the path the test means to take
    done = subprocess.run([sys.executable, str(ROOT / "train.py"),
                           *run_args("progan", root, one, 0.048, *cache)],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    logs = [(d / "log.jsonl").read_text().splitlines() for d in (two, one)]
    assert len(logs[0]) == len(logs[1])  # rank 1 wrote nothing
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    a, b = (load_file(str(d / "checkpoint.safetensors")) for d in (two, one))
    # up to rounding, which Adam turns into a fraction of lr where a gradient nearly cancels
    # (the critic's output bias; test_recipe's accumulation test): atol is 1% of lr
    lr = json.loads((one / "config.json").read_text())["config"]["lr"]
    for key in a:
        if a[key].is_floating_point():
            torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=max(1e-5, 0.01 * lr),
                                       msg=key)


def _make_folder(root: Path) -> None:
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(32):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(
                root / c / f"{i:02d}.png")
