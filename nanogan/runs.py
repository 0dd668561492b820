"""The run folder: where a training run keeps everything, and how to find the file you want in it.

A run folder, as train.py writes it:

    config.json                   the run's identity: the options of its first start, and
                                  "starts", one record per start (command line, kimg, host, ...)
    log.jsonl, metrics.jsonl      one JSON record per line
    checkpoint.safetensors        the newest full training state (what --resume continues)
    model.safetensors             the newest G_ema alone (what you share and sample from)
    grids/                        sample grids
    snapshots/snapshot-000120.safetensors   numbered training states, one per --snapshot-kimg

A snapshot is a full training checkpoint, so `--resume` and `sample.py` both take one: after a
BigGAN collapse you go back to the last snapshot before it. It costs no copy: the checkpoint is
always replaced by `os.replace` (a new file under the old name, see checkpoint.py), never written
in place, so a hard link to today's checkpoint keeps today's bytes when tomorrow's arrives.
Where links are not supported the snapshot is an atomic copy.

`Run` is what train.py decides before training (model, preset, config, folder, seed, precision,
data options); its `run_config` is the config with those options (`RUN_KEYS`) that checkpoints
and config.json store, so that `--resume` restores them.

Every file written here is written atomically (temporary file in the same folder, fsync,
`os.replace`, fsync of the folder): a crash leaves the old file or the new one, never half.

Lesson: lessons/00_reading_this_repo.md
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import re
import shutil
import socket
import stat
import sys
import tempfile
import uuid
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

from nanogan import config
from nanogan.checkpoint import fsync_folder

SNAPSHOTS = "snapshots"
CONFIG = "config.json"
CHECKPOINT = "checkpoint.safetensors"
MODEL = "model.safetensors"
_SNAPSHOT = re.compile(r"snapshot-(\d{6,})(?:\.(\d{3}))?\.safetensors")
# run options stored beside the config
RUN_KEYS = ("_preset", "_data", "_mirror", "_skip_bad", "_max_images")


class RunError(ValueError):
    """A run folder (or a file in one) that is missing, or lacks what was asked of it."""


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
        return config.to_dict(self.cfg) | {key: getattr(self, key[1:]) for key in RUN_KEYS}


# ---------------------------------------------------------------------------------- snapshots


def snapshot_name(images_seen: int) -> str:
    """`snapshot-000120.safetensors` at 120 kimg; `snapshot-000000.032.safetensors` at 32 images.

    Whole kimg get six digits; any other count gets three decimals too, so that tiny runs
    (a few hundred images) do not give two snapshots one name. Names sort by images seen.
    """
    if isinstance(images_seen, bool) or not isinstance(images_seen, int) or images_seen < 0:
        raise ValueError(f"images_seen must be an int >= 0, got {images_seen!r}")
    kimg, rest = divmod(images_seen, 1000)
    return f"snapshot-{kimg:06d}" + (f".{rest:03d}" if rest else "") + ".safetensors"


def _images_seen(name: str) -> int | None:
    """The inverse of snapshot_name; None for any other file name."""
    match = _SNAPSHOT.fullmatch(name)
    if match is None:
        return None
    return int(match[1]) * 1000 + int(match[2] or 0)


def snapshots(run: Path) -> list[tuple[int, Path]]:
    """(images_seen, path) of every snapshot in run/snapshots, oldest first; other files ignored."""
    folder = Path(run) / SNAPSHOTS
    if not folder.is_dir():
        return []
    found = [(n, p) for p in folder.iterdir()
             if (n := _images_seen(p.name)) is not None and p.is_file()]
    return sorted(found, key=lambda item: (item[0], item[1].name))


def add_snapshot(run: Path, checkpoint_file: Path, images_seen: int) -> Path:
    """Make run/snapshots/snapshot_name(images_seen) hold the bytes of `checkpoint_file` now.

    A hard link where the file system has them, else a copy; either way the snapshot appears
    at its final name in one `os.replace`, replacing a snapshot of the same name atomically.
    """
    source = Path(checkpoint_file)
    if not source.is_file():
        raise RunError(f"{source}: no such checkpoint file to snapshot")
    folder = Path(run) / SNAPSHOTS
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / snapshot_name(images_seen)
    tmp = folder / f".{final.name}.{uuid.uuid4().hex}.tmp"
    try:
        try:
            os.link(source, tmp)
        except OSError:  # no hard links here (some network and FAT file systems): copy
            _copy(source, tmp)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_folder(folder)
    return final


def prune_snapshots(run: Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` snapshots (0 keeps all); return the deleted paths."""
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
        raise ValueError(f"keep must be an int >= 0 (0 keeps every snapshot), got {keep!r}")
    found = snapshots(run)
    removed = [path for _, path in (found[:-keep] if keep else [])]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


# ------------------------------------------------------------------------------ which file?


def model_file(path: Path) -> Path:
    """The file to sample from: a file is itself (a model file, a checkpoint or a snapshot);
    in a run folder model.safetensors, else the newest snapshot, else checkpoint.safetensors."""
    return _pick(Path(path), [MODEL, SNAPSHOTS, CHECKPOINT], "model to sample from")


def training_file(path: Path) -> Path:
    """The file to resume from: a file is itself; in a run folder checkpoint.safetensors, else
    the newest snapshot."""
    return _pick(Path(path), [CHECKPOINT, SNAPSHOTS], "training checkpoint to resume from")


def _pick(path: Path, order: list[str], what: str) -> Path:
    if path.is_file():
        return path
    if not path.is_dir():
        raise RunError(f"{path}: no such file or folder (expected a nanogan checkpoint file or "
                       f"a run folder written by train.py)")
    for name in order:
        if name == SNAPSHOTS:
            if found := snapshots(path):
                return found[-1][1]
        elif (path / name).is_file():
            return path / name
    looked = [f"{SNAPSHOTS}/snapshot-*.safetensors" if n == SNAPSHOTS else n for n in order]
    raise RunError(f"{path} holds no {what}: looked for {', '.join(looked[:-1])} and "
                   f"{looked[-1]} in it")


# ---------------------------------------------------------------------------- config.json


def create_config(run: Path, info: dict) -> None:
    """Write run/config.json: the run's identity `info` and an empty list of starts."""
    _write_json(Path(run) / CONFIG, dict(info) | {"starts": []})


def read_config(run: Path) -> dict:
    """The run's config.json as a dict."""
    path = Path(run) / CONFIG
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunError(f"{path}: no such file; is {run} a run folder written by "
                       f"train.py?") from None
    except OSError as err:
        raise RunError(f"{path}: cannot read ({err})") from None
    try:
        info = json.loads(text)
    except ValueError as err:
        raise RunError(f"{path} is not valid JSON ({err})") from None
    if not isinstance(info, dict):
        raise RunError(f"{path} should hold a JSON object, holds a {type(info).__name__}")
    return info


def add_start(run: Path, start: dict) -> None:
    """Append one start record to config.json's "starts"; every other key stays as written."""
    info = read_config(run)
    starts = info.setdefault("starts", [])
    if not isinstance(starts, list):
        raise RunError(f"{Path(run) / CONFIG}: 'starts' should be a list, is a "
                       f"{type(starts).__name__}")
    starts.append(dict(start))
    _write_json(Path(run) / CONFIG, info)


def environment() -> dict[str, Any]:
    """Where this start runs: library versions, host, platform and CUDA devices."""
    import torch

    def version(package: str) -> str | None:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    import nanogan

    cuda = torch.cuda.is_available()
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "accelerate": version("accelerate"),
        "nanogan": version("nanogan") or nanogan.__version__,
        "numpy": version("numpy"),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "executable": sys.executable,
        "cuda": torch.version.cuda if cuda else None,
        "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if cuda else [],
    }


# ---------------------------------------------------------------------------- atomic writes


def _write_json(path: Path, value: Any) -> None:
    text = json.dumps(value, indent=2) + "\n"  # before the temp file: an unstorable value
    path.parent.mkdir(parents=True, exist_ok=True)  # leaves nothing behind
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; config.json is meant to be read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


def _copy(source: Path, target: Path) -> None:
    """Copy `source` to the new file `target`, its bytes on disk before this returns."""
    with source.open("rb") as src, target.open("xb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
        dst.flush()
        os.fsync(dst.fileno())
    os.chmod(target, stat.S_IMODE(source.stat().st_mode))


