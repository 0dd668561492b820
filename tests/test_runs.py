"""The run folder: snapshot names, snapshots that keep their bytes, which file a folder means,
and config.json's identity kept across starts and crashes."""

import json
import os
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from nanogan import runs


def write(path: Path, data: bytes) -> Path:
    """Replace `path` the way checkpoint.save does: a new file renamed over the old one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".new")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# --------------------------------------------------------------------------------- names


@pytest.mark.parametrize("images, name", [
    (120_000, "snapshot-000120.safetensors"),
    (0, "snapshot-000000.safetensors"),
    (32, "snapshot-000000.032.safetensors"),
    (1_000_500, "snapshot-001000.500.safetensors"),
    (12_345_678_000, "snapshot-12345678.safetensors"),
])
def test_snapshot_names_are_kimg(images, name):
    """Whole kimg in six digits; other counts with three decimals."""
    assert runs.snapshot_name(images) == name


@given(st.lists(st.integers(0, 10**10), min_size=1, max_size=8, unique=True))
@example([999, 1000, 1001, 32, 120_000])
@example([999_999_999, 1_000_000_000])  # six digits of kimg run out
def test_snapshots_parse_their_names_and_sort_by_images_seen(tmp_path_factory, counts):
    """snapshots() reads back every images_seen from the names, in increasing order."""
    run = tmp_path_factory.mktemp("run")
    for n in counts:
        write(run / runs.SNAPSHOTS / runs.snapshot_name(n), str(n).encode())
    found = runs.snapshots(run)
    assert [n for n, _ in found] == sorted(counts)
    assert all(p.read_bytes() == str(n).encode() for n, p in found)


def test_snapshot_names_refuse_negative_counts():
    with pytest.raises(ValueError, match="images_seen must be an int >= 0, got -1"):
        runs.snapshot_name(-1)


def test_snapshots_ignore_other_files(tmp_path):
    folder = tmp_path / runs.SNAPSHOTS
    for name in ["snapshot-000001.safetensors", "snapshot-1.safetensors", "grid.png",
                 ".snapshot-000002.safetensors.abc.tmp", "snapshot-000003.safetensors.tmp",
                 "snapshot-000004.5.safetensors", "model.safetensors"]:
        write(folder / name, b"x")
    (folder / "snapshot-000009.safetensors").mkdir()
    assert runs.snapshots(tmp_path) == [(1000, folder / "snapshot-000001.safetensors")]
    assert runs.snapshots(tmp_path / "nowhere") == []


# ----------------------------------------------------------------------------- snapshots


def test_a_snapshot_keeps_its_bytes_when_the_checkpoint_is_replaced(tmp_path):
    """A snapshot holds the checkpoint's bytes of its moment, after the checkpoint moves on."""
    ckpt = write(tmp_path / "checkpoint.safetensors", b"state at 1 kimg")
    first = runs.add_snapshot(tmp_path, ckpt, 1000)
    assert first == tmp_path / "snapshots" / "snapshot-000001.safetensors"
    if hasattr(os.stat_result, "st_ino"):  # a hard link: the same file, no copy
        assert first.stat().st_ino == ckpt.stat().st_ino
    write(ckpt, b"state at 2 kimg")
    second = runs.add_snapshot(tmp_path, ckpt, 2000)
    write(ckpt, b"state at 3 kimg")
    assert first.read_bytes() == b"state at 1 kimg"
    assert second.read_bytes() == b"state at 2 kimg"
    assert [p for _, p in runs.snapshots(tmp_path)] == [first, second]
    assert leftovers(tmp_path / "snapshots") == []


def test_a_snapshot_of_the_same_name_is_replaced(tmp_path):
    ckpt = write(tmp_path / "checkpoint.safetensors", b"old")
    runs.add_snapshot(tmp_path, ckpt, 500)
    write(ckpt, b"new")
    path = runs.add_snapshot(tmp_path, ckpt, 500)
    assert path.read_bytes() == b"new" and len(runs.snapshots(tmp_path)) == 1


def test_without_hard_links_a_snapshot_is_an_atomic_copy(tmp_path, monkeypatch):
    """Where os.link fails the snapshot is a copy: the same bytes, no temporary file left."""
    def no_links(*args, **kwargs):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    data = bytes(range(256)) * 4099  # more than one copy buffer
    ckpt = write(tmp_path / "checkpoint.safetensors", data)
    path = runs.add_snapshot(tmp_path, ckpt, 7)
    assert path.read_bytes() == data
    assert path.stat().st_ino != ckpt.stat().st_ino
    write(ckpt, b"later")
    assert path.read_bytes() == data
    assert leftovers(tmp_path / "snapshots") == []


def test_a_failed_snapshot_leaves_no_temporary_file(tmp_path, monkeypatch):
    ckpt = write(tmp_path / "checkpoint.safetensors", b"x")

    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="No space"):
        runs.add_snapshot(tmp_path, ckpt, 1000)
    assert list((tmp_path / "snapshots").iterdir()) == []


def test_a_missing_checkpoint_cannot_be_snapshot(tmp_path):
    with pytest.raises(runs.RunError, match="checkpoint.safetensors: no such checkpoint file"):
        runs.add_snapshot(tmp_path, tmp_path / "checkpoint.safetensors", 1000)


ALL = [1000, 2000, 3000, 4000, 5000]


@pytest.mark.parametrize("keep, kept", [(2, ALL[3:]), (1, ALL[4:]), (0, ALL), (9, ALL)])
def test_prune_keeps_the_newest(tmp_path, keep, kept):
    """prune_snapshots keeps the newest `keep` snapshots (0: all) and returns the rest."""
    for n in [3000, 1000, 5000, 2000, 4000]:  # created out of order: names decide, not times
        write(tmp_path / "snapshots" / runs.snapshot_name(n), b"x")
    before = {n: p for n, p in runs.snapshots(tmp_path)}
    removed = runs.prune_snapshots(tmp_path, keep)
    assert [n for n, _ in runs.snapshots(tmp_path)] == kept
    assert sorted(removed) == sorted(p for n, p in before.items() if n not in kept)
    assert not any(p.exists() for p in removed)


def test_prune_refuses_a_negative_count(tmp_path):
    with pytest.raises(ValueError, match="keep must be an int >= 0"):
        runs.prune_snapshots(tmp_path, -1)


# ------------------------------------------------------------------------- which file?


def test_a_file_is_itself(tmp_path):
    snap = write(tmp_path / "snapshots" / "snapshot-000001.safetensors", b"x")
    assert runs.model_file(snap) == snap and runs.training_file(snap) == snap


def test_folder_precedence(tmp_path):
    """Sampling prefers model.safetensors, then the newest snapshot, then the checkpoint;
    resuming prefers the checkpoint, then the newest snapshot."""
    write(tmp_path / "snapshots" / runs.snapshot_name(2000), b"2")
    write(tmp_path / "snapshots" / runs.snapshot_name(10_000), b"10")
    write(tmp_path / "snapshots" / runs.snapshot_name(9_999), b"9.999")
    newest = tmp_path / "snapshots" / "snapshot-000010.safetensors"
    assert runs.model_file(tmp_path) == newest and runs.training_file(tmp_path) == newest
    write(tmp_path / "checkpoint.safetensors", b"c")
    assert runs.model_file(tmp_path) == newest
    assert runs.training_file(tmp_path) == tmp_path / "checkpoint.safetensors"
    write(tmp_path / "model.safetensors", b"m")
    assert runs.model_file(tmp_path) == tmp_path / "model.safetensors"
    assert runs.training_file(tmp_path) == tmp_path / "checkpoint.safetensors"
    for name in ["model.safetensors", "checkpoint.safetensors"]:
        (tmp_path / name).unlink()
    for _, path in runs.snapshots(tmp_path):
        path.unlink()
    write(tmp_path / "checkpoint.safetensors", b"c")
    assert runs.model_file(tmp_path) == tmp_path / "checkpoint.safetensors"


def test_a_folder_without_a_model_names_what_was_looked_for(tmp_path):
    (tmp_path / "grids").mkdir()
    with pytest.raises(runs.RunError) as err:
        runs.model_file(tmp_path)
    assert str(err.value) == (f"{tmp_path} holds no model to sample from: looked for "
                              f"model.safetensors, snapshots/snapshot-*.safetensors and "
                              f"checkpoint.safetensors in it")
    (tmp_path / "model.safetensors").write_bytes(b"m")  # a model file cannot be resumed
    with pytest.raises(runs.RunError, match="looked for checkpoint.safetensors and "
                                            "snapshots/snapshot-"):
        runs.training_file(tmp_path)


def test_a_missing_path_is_named(tmp_path):
    with pytest.raises(runs.RunError, match="nowhere: no such file or folder"):
        runs.model_file(tmp_path / "nowhere")
    with pytest.raises(runs.RunError, match="nowhere: no such file or folder"):
        runs.training_file(tmp_path / "nowhere")


# ---------------------------------------------------------------------------- config.json


INFO = {"model": "stylegan2", "preset": "tiny", "seed": 5, "kimg": 120.0, "batch_size": 32,
        "precision": "no", "world_size": 2, "config": {"resolution": 32, "gamma": 10.0}}


def test_config_round_trip(tmp_path):
    runs.create_config(tmp_path, INFO)
    assert runs.read_config(tmp_path) == INFO | {"starts": []}
    assert leftovers(tmp_path) == []


def test_add_start_appends_and_keeps_the_identity(tmp_path):
    """Each start adds a record; the options of the first start stay as they were written."""
    runs.create_config(tmp_path, INFO)
    first = {"argv": ["train.py", "--seed", "5"], "kimg": 0.0} | runs.environment()
    runs.add_start(tmp_path, first)
    runs.add_start(tmp_path, {"argv": ["train.py", "--resume", "out"], "kimg": 60.5})
    info = runs.read_config(tmp_path)
    assert {k: v for k, v in info.items() if k != "starts"} == INFO
    assert list(info) == list(INFO) + ["starts"]
    assert info["starts"] == [first, {"argv": ["train.py", "--resume", "out"], "kimg": 60.5}]
    assert leftovers(tmp_path) == []


def test_a_crash_while_writing_keeps_the_old_config(tmp_path, monkeypatch):
    """If the process dies before the rename, config.json is the old one and no temp is left."""
    runs.create_config(tmp_path, INFO)
    before = (tmp_path / "config.json").read_bytes()

    def crash(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        runs.add_start(tmp_path, {"kimg": 1.0})
    assert (tmp_path / "config.json").read_bytes() == before
    assert leftovers(tmp_path) == []


def test_an_unstorable_start_leaves_the_config_alone(tmp_path):
    runs.create_config(tmp_path, INFO)
    before = (tmp_path / "config.json").read_bytes()
    with pytest.raises(TypeError):
        runs.add_start(tmp_path, {"path": Path("x")})
    assert (tmp_path / "config.json").read_bytes() == before and leftovers(tmp_path) == []


def test_read_config_names_the_file(tmp_path):
    with pytest.raises(runs.RunError, match="config.json: no such file; is .* a run folder"):
        runs.read_config(tmp_path)
    (tmp_path / "config.json").write_text('{"seed": 5,')
    with pytest.raises(runs.RunError, match="config.json is not valid JSON"):
        runs.read_config(tmp_path)
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(runs.RunError, match="config.json should hold a JSON object"):
        runs.read_config(tmp_path)


def test_environment_names_versions_and_host():
    """The record of a start: JSON-storable, with this interpreter's and torch's versions."""
    import platform

    import torch

    env = runs.environment()
    assert json.loads(json.dumps(env)) == env
    assert env["python"] == platform.python_version() and env["torch"] == torch.__version__
    assert env["host"] and env["platform"] and isinstance(env["devices"], list)
    devices = range(torch.cuda.device_count()) if torch.cuda.is_available() else []
    assert env["devices"] == [torch.cuda.get_device_name(i) for i in devices]
