"""Checkpoints: trees round-trip exactly, and every kind of bad file is refused with its name."""

import json
import math
import pickle
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import save_file
from strategies import generator, seeds

from nanogan import checkpoint
from nanogan.checkpoint import CheckpointError, flatten, load, save, unflatten

DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.int64, torch.uint8, torch.bool]


@st.composite
def tensors(draw):
    shape = draw(st.lists(st.integers(0, 3), max_size=3))
    values = torch.randn(shape, generator=generator(draw(seeds))) * 10
    return values.to(draw(st.sampled_from(DTYPES)))


scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.text(max_size=5)
           | st.floats(allow_nan=True, allow_infinity=True))
keys = st.integers(-5, 5) | st.text(max_size=4)
trees = st.recursive(
    scalars | tensors(),
    lambda children: (st.lists(children, max_size=3) | st.tuples(children, children)
                      | st.dictionaries(keys, children, max_size=3)),
    max_leaves=12)


def same(a, b):
    """Equal values and equal types all the way down: tuple ≠ list, 1 ≠ 1.0 ≠ True, nan = nan."""
    if type(a) is not type(b):
        return False
    if isinstance(a, torch.Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, float):
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, dict):
        return (list(a) == list(b) and all(type(k) is type(j) for k, j in zip(a, b))
                and all(same(a[k], b[k]) for k in a))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


@given(tree=trees)
def test_flatten_round_trips(tree):
    """unflatten(flatten(tree)) rebuilds the tree with the same container, key and leaf types."""
    tensors_, skeleton = flatten(tree)
    skeleton = json.loads(json.dumps(skeleton, allow_nan=False))  # the skeleton is plain JSON
    assert same(unflatten(tensors_, skeleton), tree)


@given(tree=st.dictionaries(keys, trees, max_size=3))
def test_save_load_round_trips(tree):
    """A state saved and loaded is the state that was saved, bit for bit."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "sub" / "ckpt.safetensors"
        save(path, tree, kind="training", model="progan", config={"resolution": 32})
        ckpt = load(path, kind="training", model="progan")
    assert same(ckpt.state, tree)
    assert (ckpt.kind, ckpt.model, ckpt.config, ckpt.version) == (
        "training", "progan", {"resolution": 32}, checkpoint.VERSION)


def test_optimizer_and_module_states_resume_exactly(tmp_path):
    """An Adam state saved after two steps continues, once loaded, exactly as the original does."""
    def make():
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
        return net, torch.optim.Adam(net.parameters(), lr=0.1, betas=(0.0, 0.99))

    def step(net, opt, seed):
        opt.zero_grad()
        net(torch.randn(5, 3, generator=generator(seed))).square().sum().backward()
        opt.step()

    net, opt = make()
    step(net, opt, 1), step(net, opt, 2)
    save(tmp_path / "c.safetensors", {"net": net.state_dict(), "opt": opt.state_dict()},
         kind="training", model="progan", config={})
    state = load(tmp_path / "c.safetensors").state
    net2, opt2 = make()
    net2.load_state_dict(state["net"])
    opt2.load_state_dict(state["opt"])
    step(net, opt, 3), step(net2, opt2, 3)
    for a, b in zip(net.state_dict().values(), net2.state_dict().values()):
        assert torch.equal(a, b)


def test_aliased_and_strided_tensors_are_stored(tmp_path):
    w = torch.arange(12.0).reshape(3, 4)
    state = {"w": w, "same": w, "view": w[1], "t": w.t(), "grad": w.clone().requires_grad_()}
    save(tmp_path / "c.safetensors", state, kind="model", model="progan", config={})
    loaded = load(tmp_path / "c.safetensors").state
    for key in state:
        assert torch.equal(loaded[key], state[key].detach())


def test_rejects_unstorable_values():
    with pytest.raises(TypeError, match="at a/0"):
        flatten({"a": [object()]})
    with pytest.raises(TypeError, match="keys must be str or int"):
        flatten({(1, 2): 3})


# ---------------------------------------------------------------------------- bad files


@pytest.fixture
def good(tmp_path):
    path = tmp_path / "good.safetensors"
    save(path, {"w": torch.ones(64, 8), "step": 3}, kind="training", model="progan",
         config={"resolution": 32})
    return path


class Payload:
    """Unpickling this creates a marker file: proof that a loader ran code from the file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (Path(self.marker),)


def test_pickles_are_refused_without_being_unpickled(tmp_path):
    """A torch.save file or a raw pickle is rejected without its code ever running."""
    witness = tmp_path / "witness"
    pickle.loads(pickle.dumps(Payload(witness)))
    assert witness.exists()  # the payload works when it is unpickled
    marker = tmp_path / "marker"
    torch.save({"w": torch.ones(2), "evil": Payload(marker)}, tmp_path / "zip.safetensors")
    (tmp_path / "raw.safetensors").write_bytes(pickle.dumps(Payload(marker), protocol=2))
    torch.save(Payload(marker), tmp_path / "legacy.safetensors",
               _use_new_zipfile_serialization=False)
    for name in ("zip", "raw", "legacy"):
        path = tmp_path / f"{name}.safetensors"
        with pytest.raises(CheckpointError, match="pickle or torch.save") as err:
            load(path)
        assert str(path) in str(err.value)
    assert not marker.exists()


def test_a_header_length_starting_with_0x80_is_not_taken_for_a_pickle(tmp_path):
    """A genuine checkpoint whose first byte happens to be the pickle opcode 0x80 still loads."""
    path = tmp_path / "c.safetensors"
    for pad in range(200):
        save(path, {"w": torch.ones(1)}, kind="model", model="progan", config={"pad": "x" * pad})
        if path.read_bytes()[0] == 0x80:
            break
    assert path.read_bytes()[0] == 0x80
    assert load(path).config["pad"] == "x" * pad


def test_truncated_files_are_refused(good):
    """A checkpoint cut short at any byte is refused with a CheckpointError naming it."""
    data = good.read_bytes()
    for cut in [0, 1, 7, 8, 9, 20, len(data) // 2, len(data) - 64 * 8 * 4, len(data) - 1]:
        good.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="truncated") as err:
            load(good)
        assert str(good) in str(err.value)


def test_other_bad_files_are_refused_with_a_reason(good, tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load(tmp_path / "missing.safetensors")
    text = tmp_path / "notes.safetensors"
    text.write_text("just some text that is long enough")
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load(text)
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.ones(2)}, plain)
    with pytest.raises(CheckpointError, match="not a nanogan checkpoint"):
        load(plain)
    with pytest.raises(CheckpointError, match="is a training checkpoint, not a model file"):
        load(good, kind="model")
    with pytest.raises(CheckpointError, match="is a progan checkpoint, not stylegan2"):
        load(good, model="stylegan2")
    model_file = tmp_path / "model.safetensors"
    save(model_file, {}, kind="model", model="stylegan2", config={})
    with pytest.raises(CheckpointError, match="is a model file, not a training checkpoint"):
        load(model_file, kind="training", model="stylegan2")


def test_newer_versions_are_refused(tmp_path):
    path = tmp_path / "future.safetensors"
    info = {"format": "nanogan", "version": checkpoint.VERSION + 1, "kind": "model",
            "model": "progan", "config": {}, "state": {"dict": []}}
    save_file({"w": torch.ones(2)}, path, metadata={"nanogan": json.dumps(info)})
    with pytest.raises(CheckpointError, match="newer nanogan"):
        load(path)


@pytest.mark.slow
def test_a_killed_save_never_leaves_a_broken_file(tmp_path):
    """SIGKILL at any moment of a save loop leaves a complete, consistent checkpoint in place."""
    path = tmp_path / "ckpt.safetensors"
    # The child writes through a slow disk (64 KiB chunks, 1 ms apart) so kills land mid-write.
    script = textwrap.dedent(f"""
        import time
        import torch
        from safetensors.torch import save
        from nanogan import checkpoint

        def slow_save_file(tensors, filename, metadata=None):
            data = save(tensors, metadata)
            with open(filename, "wb") as f:
                for i in range(0, len(data), 1 << 16):
                    f.write(data[i : i + (1 << 16)])
                    f.flush()
                    time.sleep(0.001)

        checkpoint.save_file = slow_save_file
        state = {{"w": torch.zeros(1 << 20), "i": 0}}
        while True:
            checkpoint.save({str(path)!r}, state, kind="training", model="progan", config={{}})
            if state["i"] == 0:
                print("saved", flush=True)
            state["i"] += 1
            state["w"].fill_(state["i"])
    """)
    for delay in (0.0, 0.05, 0.13):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "saved"
            time.sleep(delay)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        state = load(path).state
        assert torch.all(state["w"] == state["i"])


# ---------------------------------------------------------------------------- durability


def _record_disk_calls(monkeypatch, events):
    """Spy on checkpoint's os.open/os.fsync/os.replace: events gets ("fsync", path, size) and
    ("replace", src, dst); the real calls still happen."""
    os_ = checkpoint.os
    real_open, real_fsync, real_replace = os_.open, os_.fsync, os_.replace
    paths = {}

    def open_spy(path, flags, *args, **kwargs):
        fd = real_open(path, flags, *args, **kwargs)
        paths[fd] = Path(path)
        return fd

    def fsync_spy(fd):
        path = paths[fd]
        events.append(("fsync", path, None if path.is_dir() else path.stat().st_size))
        return real_fsync(fd)

    def replace_spy(src, dst, *args, **kwargs):
        events.append(("replace", Path(src), Path(dst)))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os_, "open", open_spy)
    monkeypatch.setattr(os_, "fsync", fsync_spy)
    monkeypatch.setattr(os_, "replace", replace_spy)


def test_save_fsyncs_the_file_then_renames_then_fsyncs_the_folder(tmp_path, monkeypatch):
    """fsync(complete temp file in the folder) → replace(temp, final) → fsync(folder): after a
    crash the folder holds the old file or the whole new one, never a name without its data."""
    path = tmp_path / "run" / "ckpt.safetensors"
    save(path, {"w": torch.zeros(3)}, kind="training", model="progan", config={})
    events = []
    _record_disk_calls(monkeypatch, events)
    save(path, {"w": torch.ones(1000)}, kind="training", model="progan", config={})
    assert [e[0] for e in events] == ["fsync", "replace", "fsync"], events
    (_, synced, size), (_, src, dst), (_, folder, _) = events
    assert synced == src and src.parent == path.parent and src != path
    assert size == path.stat().st_size  # the temp file was complete when it was synced
    assert dst == path and folder == path.parent
    assert list(path.parent.iterdir()) == [path]
    assert torch.equal(load(path).state["w"], torch.ones(1000))


@pytest.mark.parametrize("failing", [
    "write", "replace",
    "fsync",
])
def test_a_failed_save_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch, failing):
    """An error while writing, syncing or renaming propagates, removes the temp file and
    leaves the previous checkpoint loadable and unchanged."""
    path = tmp_path / "ckpt.safetensors"
    save(path, {"w": torch.zeros(3)}, kind="training", model="progan", config={})
    old = path.read_bytes()
    real_save_file = checkpoint.save_file

    def half_then_fail(tensors, filename, metadata=None):
        real_save_file(tensors, filename, metadata=metadata)
        Path(filename).write_bytes(Path(filename).read_bytes()[:50])
        raise OSError("disk full")

    def fail(*args, **kwargs):
        raise OSError("disk full")

    if failing == "write":
        monkeypatch.setattr(checkpoint, "save_file", half_then_fail)
    else:
        monkeypatch.setattr(checkpoint.os, failing, fail)
    with pytest.raises(OSError, match="disk full"):
        save(path, {"w": torch.ones(1000)}, kind="training", model="progan", config={})
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == [path]
    assert path.read_bytes() == old
    assert torch.equal(load(path).state["w"], torch.zeros(3))


def test_a_folder_that_cannot_be_fsynced_is_tolerated(tmp_path, monkeypatch):
    """Some file systems refuse fsync on a folder (EINVAL): the rename is done, the save works."""
    path = tmp_path / "ckpt.safetensors"
    real_open, real_fsync = checkpoint.os.open, checkpoint.os.fsync
    folders = set()

    def open_spy(p, flags, *args, **kwargs):
        fd = real_open(p, flags, *args, **kwargs)
        if Path(p).is_dir():
            folders.add(fd)
        return fd

    def fsync_spy(fd):
        if fd in folders:
            raise OSError(22, "Invalid argument")
        return real_fsync(fd)

    monkeypatch.setattr(checkpoint.os, "open", open_spy)
    monkeypatch.setattr(checkpoint.os, "fsync", fsync_spy)
    save(path, {"w": torch.ones(2)}, kind="model", model="progan", config={})
    assert folders and torch.equal(load(path).state["w"], torch.ones(2))
