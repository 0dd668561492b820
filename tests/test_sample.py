"""sample.py's sub-commands on tiny random checkpoints written with nanogan/checkpoint.py."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from typer.testing import CliRunner

from nanogan import checkpoint, config, models, progan, runs, stylegan2
from nanogan.projector import w_statistics

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import sample  # noqa: E402

runner = CliRunner()


def save_model(path, name, cfg, G):
    """A sampling file as train.py writes it: {"G_ema": state_dict}, kind "model"."""
    checkpoint.save(path, {"G_ema": G.state_dict()}, kind="model", model=name,
                    config=config.to_dict(cfg) | {"_preset": "test"})
    return path


def tiny_stylegan2(path, num_classes=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        cfg = stylegan2.Config(resolution=32, channels=1, num_classes=num_classes, z_dim=16,
                               w_dim=16, mapping_layers=2, channel_base=256, channel_max=16)
        G = stylegan2.Generator(cfg).eval()
    with torch.no_grad():  # a trained generator has noise strengths > 0 and a tracked w̄
        for layer in G.layers:
            layer.noise.strength.fill_(0.1)
        if not num_classes:
            G.mapping.w_avg.copy_(w_statistics(G.mapping, cfg.z_dim, 1000,
                                               generator=torch.Generator().manual_seed(0))[0])
    return save_model(path, "stylegan2", cfg, G)


def tiny_progan(path):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        cfg = progan.Config(resolution=32, z_dim=16, fmap_base=64, fmap_max=16)
        G = progan.Generator(cfg).eval()
    return save_model(path, "progan", cfg, G)


def tiny_biggan(path):
    biggan = models.MODELS["biggan"]
    cfg = biggan.PRESETS["tiny"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        G = biggan.Generator(cfg).eval()
    return save_model(path, "biggan", cfg, G)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    out = {"stylegan2": tiny_stylegan2(root / "sg" / "model.safetensors"),
           "conditional": tiny_stylegan2(root / "sgc" / "model.safetensors", num_classes=3),
           "progan": tiny_progan(root / "pg" / "model.safetensors"),
           "biggan": tiny_biggan(root / "bg" / "model.safetensors")}
    return out


@pytest.fixture(autouse=True)
def caches(tmp_path, monkeypatch):
    """Feature and dataset caches in the test's folder, not the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def folder_data(tmp_path_factory):
    """24 grey 32×32 PNGs (rectangles): a dataset that is not Fashion-MNIST and not generated."""
    folder = tmp_path_factory.mktemp("data")
    g = torch.Generator().manual_seed(0)
    for k in range(24):
        image = np.zeros((32, 32), np.uint8)
        x0, y0 = torch.randint(2, 12, (2,), generator=g).tolist()
        x1, y1 = torch.randint(20, 30, (2,), generator=g).tolist()
        image[y0:y1, x0:x1] = 255
        Image.fromarray(image).save(folder / f"{k:02d}.png")
    return folder


def run(*args):
    result = runner.invoke(sample.app, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def ok(*args):
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result


def fails(*args, match):
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert match in " ".join(result.output.split()), result.output
    return result


def png(path):
    return np.asarray(Image.open(path))


def cells(grid, rows, columns, size=32, padding=1):
    """The (rows, columns, size, size) images of a grid written with save_grid."""
    out = np.empty((rows, columns, size, size), grid.dtype)
    for r in range(rows):
        for c in range(columns):
            top, left = padding + r * (size + padding), padding + c * (size + padding)
            out[r, c] = grid[top : top + size, left : left + size]
    return out


def test_default_command_is_grid(files, tmp_path):
    """`python sample.py MODEL --seeds …` is the grid command, run as a script."""
    out = tmp_path / "grid.png"
    done = subprocess.run([sys.executable, "sample.py", str(files["stylegan2"]), "--seeds", "0-3",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert png(out).shape == (2 * 33 + 1, 2 * 33 + 1)


@pytest.mark.parametrize("model", ["stylegan2", "progan"])
def test_same_seed_same_image_in_any_batch(files, tmp_path, model):
    """A seed's image does not depend on the other seeds in the grid or on the run."""
    ok("grid", files[model], "--seeds", "0-3", "--out", tmp_path / "a.png", "--per-seed")
    ok("grid", files[model], "--seeds", "7,2", "--out", tmp_path / "b" / "b.png", "--columns", 2)
    a, b = cells(png(tmp_path / "a.png"), 2, 2), cells(png(tmp_path / "b" / "b.png"), 1, 2)
    assert np.array_equal(a[1, 0], b[0, 1])  # seed 2
    assert np.array_equal(png(tmp_path / "seed0002.png"), a[1, 0])
    assert not np.array_equal(a[0, 0], a[0, 1])
    ok("grid", files[model], "--seeds", "0-3", "--out", tmp_path / "c.png")
    assert np.array_equal(png(tmp_path / "c.png"), png(tmp_path / "a.png"))


def test_psi_zero_gives_one_image_for_every_seed(files, tmp_path):
    """At ψ = 0 every w is w̄, so all seeds give the same image (const noise); ψ = 1 does not."""
    ok("truncation", files["stylegan2"], "--values", "1,0", "--seeds", "0-4", "--out", tmp_path)
    rows = cells(png(tmp_path / "truncation.png"), 2, 5)
    assert all(np.array_equal(rows[1, 0], rows[1, c]) for c in range(5))
    assert not np.array_equal(rows[0, 0], rows[0, 1])
    ok("grid", files["stylegan2"], "--seeds", "0-4", "--truncation", "1", "--out", tmp_path / "g.png")
    assert np.array_equal(cells(png(tmp_path / "g.png"), 2, 3)[0], rows[0, :3])


def test_noise_modes(files, tmp_path):
    """Const noise repeats, random noise changes the image, and ProGAN has no noise inputs."""
    m = files["stylegan2"]
    for i, mode in enumerate(["const", "const", "random", "none"]):
        ok("grid", m, "--seeds", "0", "--noise-mode", mode, "--out", tmp_path / f"{i}.png")
    img = [png(tmp_path / f"{i}.png") for i in range(4)]
    assert np.array_equal(img[0], img[1])
    assert not np.array_equal(img[0], img[2]) and not np.array_equal(img[0], img[3])
    fails("grid", files["progan"], "--noise-mode", "random",
          match="--noise-mode applies to models with noise inputs (stylegan2)")


def test_classes_one_row_per_class(files, tmp_path):
    """Row k of the class grid is what grid --class k draws for the same seeds."""
    m = files["conditional"]
    ok("classes", m, "--classes", "2,0", "--seeds", "0-2", "--out", tmp_path / "c.png")
    ok("grid", m, "--seeds", "0-2", "--class", "2", "--columns", 3, "--out", tmp_path / "g.png")
    rows = cells(png(tmp_path / "c.png"), 2, 3)
    assert np.array_equal(rows[0], cells(png(tmp_path / "g.png"), 1, 3)[0])
    assert not np.array_equal(rows[0], rows[1])
    ok("classes", m, "--seeds", "0", "--out", tmp_path / "all.png")
    assert png(tmp_path / "all.png").shape == (3 * 33 + 1, 34)
    fails("classes", files["stylegan2"], match="classes applies to class-conditional models")
    fails("classes", m, "--classes", "5", match="--classes must be in [0, 3), got [5]")
    fails("grid", files["stylegan2"], "--class", "1", match="--class applies to class-conditional")


def test_truncation_applies_only_to_models_with_the_trick(files):
    fails("truncation", files["progan"], match="truncation applies to models with a truncation "
          "trick (biggan, stylegan2)")
    fails("grid", files["progan"], "--truncation", "0.5", match="--truncation applies")


def test_truncation_curve(files, folder_data, tmp_path):
    """The curve writes one CSV row per value, a PNG plot and the protocol of its metrics."""
    ok("truncation", files["stylegan2"], "--curve", "--curve-values", "1,0.5,0", "--data",
       folder_data, "--num-images", 24, "--out", tmp_path, "--seeds", "0-1")
    lines = (tmp_path / "truncation-curve.csv").read_text().splitlines()
    assert lines[0] == "truncation,fid,precision,recall"
    rows = [list(map(float, line.split(","))) for line in lines[1:]]
    assert [r[0] for r in rows] == [1.0, 0.5, 0.0]
    assert all(r[1] >= 0 and 0 <= r[2] <= 1 and 0 <= r[3] <= 1 for r in rows)
    assert rows[2][3] <= 1 / 24 + 1e-9  # ψ = 0: one image, so at most one real is recalled
    report = json.loads((tmp_path / "truncation-curve.json").read_text())
    assert report["protocol"]["extractor"] == "fashion"
    assert report["protocol"]["num_images"] == 24 and report["protocol"]["split"] == "train"
    assert Image.open(tmp_path / "truncation-curve.png").size[0] > 500


@pytest.mark.parametrize("path, frames", [("slerp", 2 * 4 + 1), ("lerp-w", 2 * 4 + 1),
                                          ("walk", 12)])
def test_interpolate_writes_a_video_through_the_keys(files, tmp_path, path, frames):
    """The video has the path's frames, and its first key frame is the first seed's image."""
    out = tmp_path / "v.gif"
    ok("interpolate", files["stylegan2"], "--path", path, "--seeds", "0,1,2", "--frames", 4,
       "--no-loop", "--seconds", 1, "--fps", 12, "--sigma", 0.25, "--scale", 1, "--out", out)
    video = Image.open(out)
    assert video.n_frames == frames
    if path != "walk":
        ok("grid", files["stylegan2"], "--seeds", "0", "--out", tmp_path / "s.png")
        first = np.asarray(video.convert("L"))
        assert np.abs(first.astype(int) - cells(png(tmp_path / "s.png"), 1, 1)[0, 0]).max() <= 1


def test_interpolate_on_other_models(files, tmp_path):
    ok("interpolate", files["progan"], "--seeds", "0,1", "--frames", 3, "--scale", 2,
       "--out", tmp_path / "p.gif")
    assert Image.open(tmp_path / "p.gif").size == (64, 64)
    fails("interpolate", files["progan"], "--path", "lerp-w", match="--path lerp-w applies to "
          "style-based generators with a mapping network (stylegan2)")
    fails("interpolate", files["stylegan2"], "--seeds", "3", match="needs at least two seeds")


def test_mix_grid_layout(files, tmp_path):
    """Top row: column sources; left column: row sources; with every layer from B a cell is B's image, with none it is A's."""
    m = files["stylegan2"]
    ok("mix", m, "--rows", "0,1", "--columns", "2-4", "--layers", "0-7", "--out", tmp_path / "all.png")
    ok("grid", m, "--seeds", "0-4", "--columns", 5, "--out", tmp_path / "src.png")
    grid, src = cells(png(tmp_path / "all.png"), 3, 4), cells(png(tmp_path / "src.png"), 1, 5)[0]
    assert (grid[0, 0] == 255).all()
    assert np.array_equal(grid[0, 1:], src[2:]) and np.array_equal(grid[1:, 0], src[:2])
    assert all(np.array_equal(grid[r, c + 1], src[2 + c]) for r in (1, 2) for c in range(3))
    ok("mix", m, "--rows", "0,1", "--columns", "2-4", "--layers", "coarse", "--out", tmp_path / "c.png")
    coarse = cells(png(tmp_path / "c.png"), 3, 4)
    assert not np.array_equal(coarse[1, 1], src[0]) and not np.array_equal(coarse[1, 1], src[2])
    fails("mix", m, "--layers", "fine", match="selects no styles of this 32×32 model")
    fails("mix", files["progan"], match="mix applies to style-based generators")


def test_project_writes_latents_reconstruction_and_video(files, folder_data, tmp_path):
    out = tmp_path / "proj"
    ok("project", files["stylegan2"], folder_data / "00.png", "--seeds", "3", "--steps", 12,
       "--w-samples", 200, "--space", "w+", "--out", out)
    with safe_open(str(out / "projected.safetensors"), "pt") as f:
        ws, distance = f.get_tensor("ws"), f.get_tensor("distance")
        assert json.loads(f.metadata()["targets"]) == [str(folder_data / "00.png"), "seed 3"]
        noise = [k for k in f.keys() if k.startswith("noise.")]
    assert ws.shape == (2, 8, 16) and distance.shape == (2,) and len(noise) == 7
    assert png(out / "projection.png").shape == (2 * 33 + 1, 2 * 33 + 1)
    assert Image.open(out / "projection.gif").n_frames > 2
    fails("project", files["progan"], "--seeds", "0", match="project applies to style-based")
    fails("project", files["stylegan2"], match="nothing to project")


def test_project_detect_calls_generated_and_real(files, folder_data, tmp_path):
    """--detect projects calibration images, sets a threshold between them and labels every target."""
    out = tmp_path / "det"
    ok("project", files["stylegan2"], "--seeds", "5,6", "--data", folder_data, "--indices",
       "0,1", "--steps", 60, "--w-samples", 500, "--detect", "--calibrate", 2, "--out", out)
    report = json.loads((out / "detection.json").read_text())
    verdicts = [t["verdict"] for t in report["targets"]]
    assert [t["target"] for t in report["targets"]][2:] == ["seed 5", "seed 6"]
    assert verdicts == ["real", "real", "generated", "generated"], report
    cal = report["calibration"]
    assert max(cal["generated"]) <= report["threshold"] < min(cal["real"])
    ok("project", files["stylegan2"], "--seeds", "5", "--steps", 5, "--w-samples", 100,
       "--detect", "--threshold", "1e9", "--out", out)
    assert json.loads((out / "detection.json").read_text())["targets"][0]["verdict"] == "generated"


def test_project_detect_refuses_a_calibration_the_data_cannot_fill(files, folder_data, tmp_path):
    """--calibrate larger than the real images there are: exit 2 naming the flag, the count and
    the way out, before anything is projected."""
    out = tmp_path / "det"
    result = fails("project", files["stylegan2"], "--seeds", "5", "--data", folder_data,
                   "--steps", 2, "--w-samples", 100, "--detect", "--calibrate", 30, "--out", out,
                   match="--calibrate: the calibration needs 30 real images and ")
    assert "has 24; lower it to at most 24 or give a threshold" in " ".join(result.output.split())
    assert not out.exists() and "Traceback" not in result.output


def test_score_writes_metrics_with_protocol(files, folder_data, tmp_path):
    out = tmp_path / "s.json"
    result = ok("score", files["stylegan2"], "--metrics", "fid,pr,swd", "--data", folder_data,
                "--num-images", 24, "--out", out)
    report = json.loads(out.read_text())
    by_name = {r["metric"]: r for r in report["results"]}
    assert set(by_name) == {"fid", "pr", "swd"}
    assert by_name["fid"]["extractor"] == "fashion" and by_name["swd"]["extractor"] == "pixels"
    assert by_name["fid"]["num_images"] == 24 and by_name["fid"]["value"] > 0
    assert set(by_name["pr"]["value"]) == {"precision", "recall"}
    assert "fid" in result.output and "fashion" in result.output
    fails("score", files["stylegan2"], "--metrics", "fidd", "--data", folder_data,
          "--num-images", 4, match="unknown metrics")


def test_errors_name_the_problem(files, tmp_path):
    fails("grid", files["stylegan2"], "--seeds", "a-b", match="seeds look like 0-63")
    fails("grid", tmp_path / "missing.safetensors", match="missing.safetensors")
    a_file = tmp_path / "taken.png"
    a_file.write_bytes(b"")
    fails("truncation", files["stylegan2"], "--out", a_file, match="taken.png is a file")


def test_biggan_classes_and_threshold_rows(files, folder_data, tmp_path):
    """BigGAN: a row per class, and threshold rows (Fig. 2a) whose variety across seeds shrinks with the threshold."""
    m = files["biggan"]
    ok("classes", m, "--classes", "3,1", "--seeds", "0-2", "--out", tmp_path / "c.png")
    ok("grid", m, "--seeds", "0-2", "--class", "1", "--columns", 3, "--out", tmp_path / "g.png")
    # The same seeds and class in batches of 6 and 3: equal up to float rounding (~5e-7), which
    # can move a pixel across an 8-bit level (the tiny preset's clamp does not squeeze it as tanh did).
    in_classes = cells(png(tmp_path / "c.png"), 2, 3)[1].astype(int)
    in_grid = cells(png(tmp_path / "g.png"), 1, 3)[0].astype(int)
    assert np.abs(in_classes - in_grid).max() <= 1 and (in_classes == in_grid).mean() > 0.99
    ok("truncation", m, "--seeds", "0-5", "--class", "2", "--out", tmp_path)
    rows = cells(png(tmp_path / "truncation.png"), 5, 6).astype(float)  # τ = 2, 1.5, 1, 0.5, 0.04
    spread = rows.std(axis=1).mean(axis=(1, 2))
    assert spread[-1] < 0.25 * spread[0], spread
    ok("truncation", m, "--curve", "--curve-values", "2,0.5", "--data", folder_data,
       "--num-images", 24, "--out", tmp_path, "--seeds", "0")
    assert len((tmp_path / "truncation-curve.csv").read_text().splitlines()) == 3
    ok("interpolate", m, "--seeds", "0,1", "--frames", 2, "--out", tmp_path / "v.gif")
    fails("mix", m, match="mix applies to style-based generators")
    fails("interpolate", m, "--path", "walk", "--truncation", "0.5", match="--truncation with "
          "--path walk applies to models that truncate in W (stylegan2); biggan's threshold "
          "resamples z")


def test_score_per_class_reports_the_classifier_accuracy_of_each_class(files, folder_data,
                                                                      tmp_path, monkeypatch):
    """--per-class classifies each class's generated images: one accuracy per class and their mean."""
    out = tmp_path / "s.json"
    result = ok("score", files["biggan"], "--metrics", "fid", "--data", folder_data,
                "--num-images", 20, "--per-class", "--out", out)
    accuracy = json.loads(out.read_text())["class_accuracy"]
    classes = [accuracy[f"acc_{k}"] for k in range(10)]
    assert accuracy["images_per_class"] == 2 and all(0 <= a <= 1 for a in classes)
    assert accuracy["acc_mean"] == pytest.approx(sum(classes) / 10)
    assert "Ankle boot" in result.output
    monkeypatch.setattr(sample.sampling, "open_data",  # refused before the data is opened
                        lambda *args: pytest.fail("the data was opened before the refusal"))
    refused = fails("score", files["stylegan2"], "--metrics", "fid", "--data", folder_data,
                    "--num-images", 4, "--per-class", match="--per-class applies to "
                    "class-conditional models (stylegan2 (trained with labels), biggan)")
    assert "metric" not in refused.output and "fashion" not in refused.output  # refused first
    fails("score", files["biggan"], "--metrics", "fid", "--data", folder_data, "--num-images", 4,
          "--per-class", "--extractor", "pixels", match="--extractor: --per-class needs a "
          "classifier of the model's classes")


def test_extractor_refusals_come_before_the_data_and_the_images(files, folder_data, tmp_path,
                                                                monkeypatch):
    """An extractor that cannot serve the metrics is refused before any data is opened (score)
    or any image is written (truncation --curve)."""
    monkeypatch.setattr(sample.sampling, "open_data",
                        lambda *args: pytest.fail("the data was opened before the refusal"))
    fails("score", files["stylegan2"], "--metrics", "is", "--extractor", "pixels", "--data",
          folder_data, "--num-images", 4, match="is needs class probabilities; the 'pixels' "
          "extractor has none")
    fails("truncation", files["stylegan2"], "--curve", "--extractor", "pixel", "--data",
          folder_data, "--out", tmp_path, match="unknown extractor 'pixel'; choose from "
          "fashion, inception, pixels; did you mean 'pixels'?")
    assert not (tmp_path / "truncation.png").exists()
    monkeypatch.undo()  # an extractor that serves the curve's metrics is accepted
    ok("truncation", files["stylegan2"], "--curve", "--extractor", "pixels", "--curve-values",
       "1", "--data", folder_data, "--num-images", 8, "--out", tmp_path, "--seeds", "0-1")
    assert (tmp_path / "truncation-curve.csv").exists()


# ----------------------------------------------------------------- run folders and snapshots


def progan_state(seed):
    """A tiny ProGAN's (config dict, state_dict) whose weights depend on `seed`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        cfg = progan.Config(resolution=32, z_dim=16, fmap_base=64, fmap_max=16)
        G = progan.Generator(cfg).eval()
    return config.to_dict(cfg) | {"_preset": "test"}, G.state_dict()


def save_training(path, seed, images_seen):
    """A training checkpoint as train.py writes one: G, G_ema and the progress, kind "training"."""
    cfg, state = progan_state(seed)
    checkpoint.save(path, {"G": progan_state(seed + 100)[1], "G_ema": state,
                           "progress": {"step": 1, "images_seen": images_seen, "seed": 0}},
                    kind="training", model="progan", config=cfg)
    return path


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A run with snapshots at 1 and 2 kimg (G_ema seeds 1, 2), then a newer checkpoint (seed 3)
    and no model.safetensors."""
    run = tmp_path_factory.mktemp("run")
    ckpt = run / "checkpoint.safetensors"
    for kimg in (1, 2):
        runs.add_snapshot(run, save_training(ckpt, kimg, kimg * 1000), kimg * 1000)
    save_training(ckpt, 3, 2500)
    return run


def test_a_run_folder_or_a_snapshot_works_where_a_model_file_does(run_folder, tmp_path):
    """A run folder means its newest snapshot (no model.safetensors here): the same images as
    that snapshot's file, not the older snapshot's or the checkpoint's; outputs go in the folder."""
    snaps = [path for _, path in runs.snapshots(run_folder)]
    for i, path in enumerate(snaps + [run_folder / "checkpoint.safetensors"]):
        ok("grid", path, "--seeds", "0-3", "--out", tmp_path / f"{i}.png")
    result = ok("grid", run_folder, "--seeds", "0-3")
    assert "snapshot-000002.safetensors" in result.output  # says which file it read
    from_folder = png(run_folder / "seeds-0-3.png")
    assert np.array_equal(from_folder, png(tmp_path / "1.png"))
    assert not np.array_equal(from_folder, png(tmp_path / "0.png"))
    assert not np.array_equal(from_folder, png(tmp_path / "2.png"))
    ok("interpolate", run_folder, "--seeds", "0,1", "--frames", 2, "--scale", 1)
    assert Image.open(run_folder / "interpolate-slerp-0.gif").n_frames == 2 * 2  # keys × frames


def test_a_run_folder_prefers_its_model_file(files, tmp_path):
    """With model.safetensors in the folder, every command reads it (here: truncation rows)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.safetensors").write_bytes(files["stylegan2"].read_bytes())
    save_training(run / "checkpoint.safetensors", 0, 1000)  # a ProGAN: would be refused below
    ok("truncation", run, "--values", "1,0.5", "--seeds", "0-2")
    ok("truncation", run / "model.safetensors", "--values", "1,0.5", "--seeds", "0-2",
       "--out", tmp_path)
    assert np.array_equal(png(run / "truncation.png"), png(tmp_path / "truncation.png"))


def test_a_folder_without_a_model_names_what_was_looked_for(tmp_path):
    fails("grid", tmp_path, match=f"{tmp_path} holds no model to sample from: looked for "
          "model.safetensors, snapshots/snapshot-*.safetensors and checkpoint.safetensors")


# ----------------------------------------------------------------------- ranges of options


@pytest.mark.parametrize("seeds, message", [
    ("3-1", "seed range 3-1 is reversed; write 1-3"),
    ("0,7-2", "seed range 7-2 is reversed; write 2-7"),
    ("-2", "seeds are whole numbers >= 0; got '-2'"),
    ("1--3", "seeds are whole numbers >= 0; got '1--3'"),
    ("0-x", "seeds look like 0-63 or 1,5,9; got '0-x'"),
    ("1.5", "seeds look like 0-63 or 1,5,9"),
    ("0-18446744073709551616", "seeds must be in [0, 2^64)"),
    (",", "no seeds given"),
])
def test_seed_lists_are_checked(files, seeds, message):
    """Reversed ranges, negative numbers and garbage are refused on stderr, exit 2."""
    result = fails("grid", files["progan"], "--seeds", seeds, match=message)
    assert message in " ".join(result.stderr.split()) and not result.stdout


def test_other_number_lists_name_themselves(files):
    fails("mix", files["stylegan2"], "--rows", "4-2", match="row seed range 4-2 is reversed; "
          "write 2-4")
    fails("classes", files["conditional"], "--classes", "2-0", match="class range 2-0 is "
          "reversed; write 0-2")


def test_library_parsers_name_their_parameters_and_the_cli_its_options(files):
    """nanogan.sampling's parsers raise a ValueError naming the parameter; sample.py names the flag."""
    from nanogan import sampling

    with pytest.raises(ValueError, match=r"^indices: index range 5-2 is reversed; write 2-5$"):
        sampling.parse_seeds("5-2", "indices")
    with pytest.raises(sampling.SamplingError, match=r"^values: no values given$") as err:
        sampling.parse_floats(" , ", "values")
    assert err.value.parameter == "values"
    fails("mix", files["stylegan2"], "--layers", "9-12", match="--layers: 9-12 selects no styles")
    fails("mix", files["stylegan2"], "--layers", "top", match="--layers: looks like coarse")
    fails("truncation", files["stylegan2"], "--values", "1,x", match="--values: truncation "
          "values look like 1,0.7,0.5")


def refused(*args, option, allowed):
    """Exit 2, and the error on stderr names the option and its allowed values."""
    result = run(*args)
    assert result.exit_code == 2, result.output
    text = " ".join(result.stderr.replace("│", " ").split())
    assert option in text and allowed in text, result.stderr


@pytest.mark.parametrize("args, option, allowed", [
    (["grid", "--columns", "0"], "--columns", "greater than or equal to 1"),  # counts
    (["interpolate", "--fps", "101"], "--fps", "less than or equal to 100"),  # bounded counts
    (["score", "--num-images", "1"], "--num-images", "greater than or equal to 2"),
    (["score", "--seed", "-1"], "--seed", "greater than or equal to 0"),  # seeds
    (["interpolate", "--seconds", "0"], "--seconds", "must be a number > 0, got 0"),  # (0, ∞)
    (["interpolate", "--sigma", "nan"], "--sigma", "must be a number > 0, got nan"),
    (["project", "--noise-weight", "-1"], "--noise-weight", "must be a number >= 0, got -1"),
    (["project", "--threshold", "inf"], "--threshold", "must be a finite number, got inf"),
])
def test_numeric_options_are_checked_before_anything_is_loaded(files, args, option, allowed):
    """Each kind of numeric option (count, bounded count, seed, positive and non-negative
    float, unbounded float) refuses values outside its range with exit 2, naming the range."""
    refused(args[0], files["stylegan2"], *args[1:], option=option, allowed=allowed)


def test_truncation_values_are_checked_per_model(files):
    """A BigGAN threshold must be positive; a StyleGAN2 ψ may be any finite number."""
    fails("grid", files["biggan"], "--truncation", "0", match="--truncation 0: biggan's "
          "threshold must be > 0")
    fails("truncation", files["biggan"], "--values", "1,-0.5", match="--values -0.5: biggan's "
          "threshold must be > 0")
    fails("truncation", files["stylegan2"], "--values", "1,nan", match="--values nan: "
          "stylegan2's ψ must be a finite number")
    fails("truncation", files["stylegan2"], "--curve", "--curve-values", "inf", match=
          "--curve-values inf: stylegan2's ψ must be a finite number")
    fails("mix", files["stylegan2"], "--truncation", "nan", match="--truncation nan")
