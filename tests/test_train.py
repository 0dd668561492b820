"""train.py as a user meets it: a run writes grids, a log and checkpoints; bad input fails fast
with a message naming the problem; Ctrl-C saves; a resumed run ends exactly where an
uninterrupted one does; what it prints, on a terminal or not, and how it exits. The loop itself
(ticks, a non-finite loss) is tested in test_trainer.py, snapshot timing and pruning in
test_run_safety.py."""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from rich.console import Console
from safetensors.torch import load_file
from test_recipe import SG2_REGULARIZED

ROOT = Path(__file__).resolve().parent.parent

# CPU-second configurations of each model on 8×8 images (BigGAN's smallest is 32×32).
TINY = {
    "progan": ["--set", "z_dim=8", "--set", "fmap_base=32", "--set", "fmap_max=8",
               "--set", "stabilize_kimg=0.016", "--set", "fade_kimg=0.016",
               "--batch-size", "8", "--resolution", "8"],
    "stylegan2": ["--set", "z_dim=8", "--set", "w_dim=8", "--set", "mapping_layers=2",
                  "--set", "channel_base=64", "--set", "channel_max=8", "--set", "r1_interval=2",
                  "--set", "pl_interval=3", "--batch-size", "8", "--resolution", "8",
                  *[a for k, v in SG2_REGULARIZED.items() for a in ("--set", f"{k}={v}")]],
    "biggan": ["--set", "ch=4", "--set", "z_dim=16", "--set", "shared_dim=4",
               "--set", "standing_batches=2", "--set", "preview_batches=1",
               "--set", "standing_batch_size=8",
               "--batch-size", "8", "--resolution", "32"],
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """64 8×8 RGB images in two class folders, drawn from a seeded generator."""
    root = tmp_path_factory.mktemp("data") / "shapes"
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(32):
            pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            pixels[:, : 4 if c == "a" else 8] //= 4
            Image.fromarray(pixels).save(root / c / f"{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    cache = tmp_path_factory.mktemp("cache")
    return {**os.environ, "XDG_CACHE_HOME": str(cache), "OMP_NUM_THREADS": "1",
            "COLUMNS": "200"}


def train(args: list[str], env: dict, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, str(ROOT / "train.py"), *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    if check and done.returncode != 0:
        raise AssertionError(f"train.py {' '.join(args)} exited {done.returncode}:\n"
                             f"{done.stdout}\n{done.stderr}")
    return done


def run_args(model: str, folder: Path, out: Path, kimg: float, *extra: str) -> list[str]:
    return ["--model", model, "--data", str(folder), "--out", str(out), "--kimg", str(kimg),
            "--grid-kimg", "0.032", "--snapshot-kimg", "1", "--log-every", "2",
            *TINY[model], *extra]


def said(done: subprocess.CompletedProcess) -> str:
    """Everything a run printed, on both streams, with whitespace folded."""
    return " ".join((done.stdout + done.stderr).split())


def tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def assert_same_state(a: Path, b: Path) -> None:
    ta, tb = tensors(a), tensors(b)
    assert ta.keys() == tb.keys()
    different = [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


@pytest.fixture(scope="module")
def script():
    """train.py loaded as a module (as test_distributed loads it), for what it prints."""
    from test_distributed import _train_module  # it imports this file: not at the top
    return _train_module()


def test_off_a_terminal_every_tick_prints_one_line(script):
    """Where stdout is not a terminal (a log file, a scheduler), each tick also prints
    `kimg K  S img/s  INFO`; warnings and errors go to stderr, without their colour markup."""
    out, err = io.StringIO(), io.StringIO()
    display = script.RichDisplay(Console(file=out, force_terminal=False, width=200),
                                 Console(file=err, force_terminal=False, width=200))
    with display.progress("progan", 0.4, 0.0):
        display.advance(0.128)
        display.tick(0.128, 250.84, "loss_D -0.224 loss_G -0.275")
        display.warn("metrics failed at kimg 0.13")
        display.error("non-finite loss_D at step 5")
    assert "kimg 0.13  250.8 img/s  loss_D -0.224 loss_G -0.275\n" in out.getvalue()
    assert err.getvalue() == "metrics failed at kimg 0.13\nnon-finite loss_D at step 5\n"
    terminal = io.StringIO()
    display = script.RichDisplay(Console(file=terminal, force_terminal=True, width=200))
    with display.progress("progan", 0.4, 0.0):
        display.tick(0.128, 250.84, "loss_D -0.224")
    assert "kimg 0.13  250.8 img/s" not in terminal.getvalue()
    assert "250.8 img/s" in terminal.getvalue()  # in the bar


@pytest.mark.parametrize("outcome, code, message", [
    ("done", None, "Done: 0.1 kimg. Samples: RUN/grid.png model: RUN/model.safetensors"),
    ("interrupted", 130, "Interrupted at kimg 0.13; saved. Continue with: python train.py "
                         "--resume RUN"),
    ("failed", 1, ""),  # the loop already named the non-finite loss
])
def test_each_outcome_ends_with_its_exit_code_and_line(script, outcome, code, message, capsys):
    """A finished run says where its samples and model are (exit 0), an interrupted one how to
    continue (exit 130), a failed one exits 1; only the main process prints."""
    import typer

    for main in (True, False):
        trainer = SimpleNamespace(recipe=SimpleNamespace(images_seen=128), out=Path("RUN"),
                                  main=main)  # a short path: rich wraps at the terminal width
        if code is None:
            script.report(trainer, outcome)
        else:
            with pytest.raises(typer.Exit) as exited:
                script.report(trainer, outcome)
            assert exited.value.exit_code == code
        printed = " ".join(capsys.readouterr().out.split())
        assert printed == (message if main else "")


def test_dry_run_prints_the_config_and_writes_nothing(folder, env, tmp_path):
    """--dry-run shows the resolved configuration, with --set applied, and creates no files."""
    done = train(run_args("progan", folder, tmp_path / "run", 0.064, "--dry-run"), env)
    assert "fmap_max" in done.stdout and "│ 8 " in done.stdout.replace("│ 8│", "│ 8 │")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, message", [
    (["--model", "stylegan3"], "unknown model 'stylegan3'; did you mean 'stylegan2'"),
    (["--preset", "huge"], "unknown preset for stylegan2 'huge'"),
    (["--model", "progan", "--resolution", "48"], "power of two"),
    (["--model", "progan", "--set", "fmap_mx=8"], "did you mean 'fmap_max'"),
    (["--model", "progan", "--set", "lr=fast"], "lr must be a number"),
    (["--model", "progan", "--batch-size", "6"], "multiple of the minibatch-std group size 4"),
    (["--metrics", "fid,ifd"], "unknown metrics ['ifd']"),
    (["--data", "/no/such/folder"], "no such file or folder"),
])
def test_bad_input_fails_fast_with_a_clear_message(env, args, message, tmp_path):
    """Unknown models, presets and keys, bad resolutions, batches and paths stop before any work."""
    done = train([*args, "--out", str(tmp_path / "run")], env, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in " ".join((done.stdout + done.stderr).split())
    assert not (tmp_path / "run").exists()


def test_a_dataset_smaller_than_a_batch_is_refused(folder, env, tmp_path):
    """A dataset with fewer images than one step's batch is an error naming both numbers."""
    done = train(run_args("progan", folder, tmp_path / "run", 0.064, "--batch-size", "128"),
                 env, check=False)
    assert done.returncode == 2
    assert "the dataset has 64 images, fewer than one step's batch of 128" in " ".join(
        (done.stdout + done.stderr).split())


def test_ada_on_a_subset_logs_p_and_rt_and_bad_subsets_are_refused(folder, env, tmp_path):
    """--augment ada --max-images 32 trains on 32 of the 64 images, logs ada_p and ada_rt and
    keeps the subset in config.json; --max-images 0 or 65 (of 64) exits 2 naming the numbers."""
    out = tmp_path / "run"
    train(run_args("stylegan2", folder, out, 0.032, "--augment", "ada", "--max-images", "32",
                   "--set", "ada_interval=1", "--set", "ada_kimg=0.05"), env)
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert all("ada_p" in r and "ada_rt" in r for r in records), records
    assert records[-1]["ada_rt"] != 0  # the controller ran (r_t is 0 only before its first update)
    stored = json.loads((out / "config.json").read_text())
    assert stored["images"] == 32 and stored["config"]["_max_images"] == 32
    assert stored["config"]["augment"] == "ada"
    for n, message in (("0", "Invalid value for --max-images: must be >= 1, got 0"),
                       ("65", "max_images must be between 1 and the 64 images of")):
        done = train(run_args("stylegan2", folder, tmp_path / f"bad{n}", 0.032, "--max-images",
                              n), env, check=False)
        assert done.returncode == 2, done.stdout + done.stderr
        assert message in " ".join((done.stdout + done.stderr).split())
        assert not (tmp_path / f"bad{n}").exists()


def test_a_subset_is_fixed_and_mirrored_after_it_is_taken():
    """subset(ds, n) picks the same n images whatever the torch seed, in the dataset's order;
    with xflip the subset's mirrored copies follow it (ADA's --subset, then --mirror)."""
    from nanogan.data import ImageDataset
    from nanogan.streaming import subset

    images = np.arange(10, dtype=np.uint8).repeat(4).reshape(10, 1, 2, 2)
    images[:, :, :, 1] += 100  # left and right columns differ: a flip shows
    plain = ImageDataset(images, np.arange(10), name="t")
    mirrored = ImageDataset(images, np.arange(10), name="t+xflip", xflip=True)
    torch.manual_seed(1)
    a = subset(plain, 4)
    torch.manual_seed(2)
    b = subset(mirrored, 4)
    assert len(a) == 4 and len(b) == 8 and subset(plain, None) is plain
    labels = a.labels()
    assert torch.equal(labels, labels.sort().values) and len(set(labels.tolist())) == 4
    assert torch.equal(b.labels(), labels.repeat(2))
    assert torch.equal(b.images_uint8(range(4)), a.images_uint8(range(4)))
    assert torch.equal(b.images_uint8(range(4, 8)), a.images_uint8(range(4)).flip(-1))
    assert torch.equal(a[2][0], a.images_uint8([2])[0]) and a[2][1] == labels[2]


@pytest.mark.parametrize("model", sorted(TINY))
def test_a_run_writes_grids_log_and_checkpoints(model, folder, env, tmp_path):
    """A run leaves reals, grids per kimg, a JSONL log with speed and losses, and both files;
    BigGAN's model file holds standing statistics over all its passes."""
    out = tmp_path / "run"
    train(run_args(model, folder, out, 0.064), env)
    for name in ("reals.png", "grid.png", "log.jsonl", "config.json", "checkpoint.safetensors",
                 "model.safetensors"):
        assert (out / name).is_file(), name
    assert len(list((out / "grids").glob("grid-*.png"))) >= 2
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert records[-1]["kimg"] == pytest.approx(0.064)
    assert all("images_per_s" in r and "loss_D" in r for r in records)
    assert json.loads((out / "config.json").read_text())["data"].startswith(str(folder))
    if model == "biggan":  # the model file's standing statistics: all passes, not the preview's
        from nanogan import biggan, models
        _, cfg, G = models.load_generator(out / "model.safetensors")
        stored = {k: v.clone() for k, v in G.state_dict().items() if "running" in k}
        for passes, same in ((cfg.preview_batches, False), (cfg.standing_batches, True)):
            biggan.standing_statistics(G, cfg, seed=0, passes=passes)
            close = all(torch.allclose(v, G.state_dict()[k], rtol=1e-4, atol=1e-6)  # threads
                        for k, v in stored.items())
            assert close == same, passes


@pytest.mark.parametrize("model", sorted(TINY))
def test_resume_ends_exactly_where_a_straight_run_ends(model, folder, env, tmp_path):
    """k kimg, stop, --resume to k + m kimg gives bitwise the weights of k + m kimg straight."""
    train(run_args(model, folder, tmp_path / "straight", 0.096), env)
    train(run_args(model, folder, tmp_path / "split", 0.048), env)
    train(["--resume", str(tmp_path / "split"), "--kimg", "0.096", "--log-every", "2"], env)
    assert_same_state(tmp_path / "straight" / "checkpoint.safetensors",
                      tmp_path / "split" / "checkpoint.safetensors")


def test_ctrl_c_saves_and_the_resumed_run_matches(folder, env, tmp_path):
    """SIGINT saves and exits 130; resuming reaches the images, resolution, alpha and weights of an uninterrupted run."""
    args = run_args("progan", folder, tmp_path / "run", 0.4, "--grid-kimg", "0")
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = tmp_path / "run" / "log.jsonl"
    deadline = time.monotonic() + 120
    while not (log.exists() and log.read_text().count("\n") >= 2):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, output
    assert "Interrupted at kimg" in output and "--resume" in output
    stopped = json.loads(log.read_text().splitlines()[-1])["kimg"]
    assert stopped < 0.4

    train(["--resume", str(tmp_path / "run"), "--log-every", "2"], env)
    train(run_args("progan", folder, tmp_path / "straight", 0.4, "--grid-kimg", "0"), env)
    last = [json.loads(line) for line in log.read_text().splitlines()][-1]
    straight = [json.loads(line) for line in
                (tmp_path / "straight" / "log.jsonl").read_text().splitlines()][-1]
    assert (last["kimg"], last["resolution"], last["alpha"]) == (
        straight["kimg"], straight["resolution"], straight["alpha"])
    assert_same_state(tmp_path / "straight" / "checkpoint.safetensors",
                      tmp_path / "run" / "checkpoint.safetensors")


def test_resume_refuses_a_pickle_and_another_models_checkpoint(folder, env, tmp_path):
    """--resume never unpickles: a pickle named like a checkpoint, or another model's, is refused."""
    fake = tmp_path / "checkpoint.safetensors"
    fake.write_bytes(pickle.dumps({"G": torch.zeros(1)}))
    done = train(["--resume", str(fake)], env, check=False)
    assert done.returncode == 2 and "pickle" in done.stderr
    out = tmp_path / "run"
    train(run_args("progan", folder, out, 0.016), env)
    done = train(["--model", "stylegan2", "--resume", str(out)], env, check=False)
    assert done.returncode == 2
    assert "is a progan checkpoint, not stylegan2" in " ".join(done.stderr.split())


def test_an_existing_run_is_not_overwritten(folder, env, tmp_path):
    """Starting a new run in a folder that holds one asks for --resume instead."""
    out = tmp_path / "run"
    train(run_args("progan", folder, out, 0.016), env)
    done = train(run_args("progan", folder, out, 0.016), env, check=False)
    assert done.returncode == 2 and "--resume" in done.stdout + done.stderr


def test_a_corrupt_image_is_named_or_skipped_and_counted(folder, env, tmp_path):
    """A corrupt image stops the run before training, naming the file; --skip-bad skips and counts it."""
    bad = tmp_path / "data"
    shutil.copytree(folder, bad)
    (bad / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    done = train(run_args("progan", bad, tmp_path / "run", 0.016), env, check=False)
    assert done.returncode == 2
    message = " ".join(done.stderr.split())
    assert str(bad / "a" / "broken.png") in message and "--skip-bad" in message
    assert not (tmp_path / "run").exists()
    done = train(run_args("progan", bad, tmp_path / "run", 0.016, "--skip-bad"), env)
    assert "skipped 1 unreadable images" in said(done)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["skipped"] == 1


@pytest.mark.parametrize("model", sorted(TINY))
def test_bf16_and_gradient_accumulation_run_from_the_command_line(model, folder, env, tmp_path):
    """--precision bf16 with --grad-accum 2 trains, regularizers included, to finite losses."""
    out = tmp_path / "run"
    train(run_args(model, folder, out, 0.032, "--precision", "bf16", "--grad-accum", "2"), env)
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert all(all(v == v and abs(v) != float("inf") for v in r.values()
                   if isinstance(v, float)) for r in records)
    logged = set().union(*records)
    regularizers = {"progan": {"gp"}, "stylegan2": {"r1", "pl"}, "biggan": {"ortho"}}
    assert regularizers[model] <= logged
    saved = json.loads((out / "config.json").read_text())
    assert (saved["precision"], saved["grad_accum"]) == ("bf16", 2)
