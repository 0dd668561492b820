"""Checkpoints that are safe to open: one safetensors file of tensors plus a JSON skeleton.

Format: safetensors (Hugging Face; an 8-byte little-endian header length, a JSON header naming
every tensor's dtype, shape and byte range, then the raw bytes). Nothing in the file is code, so
loading it cannot run anything — unlike `torch.save`, whose pickles execute whatever they name.
nanogan never unpickles a file.

A training state is a tree (dicts, lists, tuples) whose leaves are tensors or JSON scalars.
`flatten` pulls the tensors out under path-like names and leaves a JSON skeleton that says where
each one goes; the skeleton, the kind, the model and its config are stored as one JSON string in
the safetensors metadata under "nanogan":

    {"format": "nanogan", "version": 1, "kind": "training" | "model", "model": "progan",
     "config": {...}, "state": skeleton}

Skeleton nodes: a JSON scalar stands for itself; {"tensor": name}, {"dict": [[key, node], ...]}
(keys stay int or str), {"list": [...]}, {"tuple": [...]}, {"float": "inf" | "-inf" | "nan"}.

Writes are atomic: a temporary file in the same folder, fsync, `os.replace`, fsync of the folder,
so a crash at any moment leaves either the old file or the new one at the final path.

Lesson: lessons/00_reading_this_repo.md
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

VERSION = 1
MAX_HEADER = 100_000_000  # safetensors' own limit on the JSON header
KINDS = {"training": "a training checkpoint", "model": "a model file"}


class CheckpointError(ValueError):
    """A file that is not a readable nanogan checkpoint of the expected kind and model."""


@dataclasses.dataclass
class Checkpoint:
    kind: str
    model: str
    config: dict[str, Any]
    state: Any
    version: int


def flatten(tree: Any) -> tuple[dict[str, torch.Tensor], Any]:
    """(tensors by name, JSON skeleton) of a dict/list/tuple tree with tensor or scalar leaves."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, torch.Tensor):
            name, n = path or "tensor", 1
            while name in tensors:  # "a/b" as one key and as a nested path
                name, n = f"{path}#{n}", n + 1
            tensors[name] = node
            return {"tensor": name}
        if node is None or isinstance(node, (bool, int, str)):
            return node
        if isinstance(node, float):
            return float(node) if math.isfinite(node) else {"float": repr(float(node))}
        if isinstance(node, dict):
            for key in node:
                if isinstance(key, bool) or not isinstance(key, (int, str)):
                    raise TypeError(f"checkpoint dict keys must be str or int, got {key!r} "
                                    f"at {path or 'the root'}")
            return {"dict": [[key, walk(value, f"{path}/{key}" if path else str(key))]
                             for key, value in node.items()]}
        if isinstance(node, (list, tuple)):
            nodes = [walk(v, f"{path}/{i}" if path else str(i)) for i, v in enumerate(node)]
            return {"tuple" if isinstance(node, tuple) else "list": nodes}
        raise TypeError(f"cannot store a {type(node).__name__} in a checkpoint "
                        f"(at {path or 'the root'}): use tensors, dicts, lists, tuples and scalars")

    return tensors, walk(tree, "")


def unflatten(tensors: dict[str, torch.Tensor], skeleton: Any) -> Any:
    """The tree `flatten` took apart: the inverse of flatten."""
    if not isinstance(skeleton, dict):
        return skeleton
    (tag, value), = skeleton.items()
    if tag == "tensor":
        return tensors[value]
    if tag == "float":
        return float(value)
    if tag == "dict":
        return {key: unflatten(tensors, node) for key, node in value}
    if tag not in ("list", "tuple"):
        raise ValueError(f"unknown skeleton node {tag!r}")
    items = [unflatten(tensors, node) for node in value]
    return tuple(items) if tag == "tuple" else items


def save(path: str | Path, state: dict[str, Any], *, kind: str, model: str,
         config: dict[str, Any]) -> None:
    """Write `state` atomically as one safetensors file; tensors are copied to the CPU."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    tensors, skeleton = flatten(state)
    header = {"format": "nanogan", "version": VERSION, "kind": kind, "model": model,
              "config": config, "state": skeleton}
    metadata = {"nanogan": json.dumps(header)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(_storable(tensors), tmp, metadata=metadata)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a model file is meant to be shared
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


def load(path: str | Path, *, kind: str | None = None, model: str | None = None) -> Checkpoint:
    """Read a checkpoint without unpickling anything; check its kind and model when given."""
    path = Path(path)
    header = _read_header(path)
    meta = header.get("__metadata__") or {}
    if "nanogan" not in meta:
        raise CheckpointError(f"{path} is a safetensors file but not a nanogan checkpoint "
                              "(no 'nanogan' metadata)")
    try:
        info = json.loads(meta["nanogan"])
        version, stored_kind, stored_model = info["version"], info["kind"], info["model"]
        if info["format"] != "nanogan" or not isinstance(version, int):
            raise ValueError(info["format"])
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path}: not a nanogan checkpoint (bad 'nanogan' metadata: "
                              f"{err!r})") from None
    if version > VERSION:
        raise CheckpointError(f"{path} was written by a newer nanogan (format version {version}; "
                              f"this one reads up to {VERSION}); upgrade nanogan")
    if kind is not None and stored_kind != kind:
        raise CheckpointError(f"{path} is {KINDS.get(stored_kind, repr(stored_kind))}, "
                              f"not {KINDS.get(kind, repr(kind))}")
    if model is not None and stored_model != model:
        raise CheckpointError(f"{path} is a {stored_model} checkpoint, not {model}")
    try:
        with safe_open(path, framework="pt") as f:
            tensors = {name: f.get_tensor(name) for name in f.keys()}
        state = unflatten(tensors, info["state"])
    except (SafetensorError, KeyError, ValueError, TypeError) as err:
        raise CheckpointError(f"{path} is damaged: {err}") from None
    return Checkpoint(stored_kind, stored_model, info.get("config", {}), state, version)


def _read_header(path: Path) -> dict[str, Any]:
    """The safetensors JSON header, after checking the file is complete and not a pickle."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            start = f.read(8)
            n = struct.unpack("<Q", start)[0] if len(start) == 8 else 0
            body = f.read(min(n, MAX_HEADER))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint file") from None
    except OSError as err:
        raise CheckpointError(f"{path}: cannot read ({err})") from None
    # A safetensors header is JSON right after its length; pickle and zip magic are only
    # looked for once that structure is ruled out (a header length may start with 0x80).
    if not body.startswith(b"{") or n > MAX_HEADER:
        if start[:1] == b"\x80" or start[:4] == b"PK\x03\x04":
            raise CheckpointError(f"{path} looks like a pickle or torch.save file; nanogan never "
                                  "unpickles files (they can run code). Use a checkpoint written "
                                  "by nanogan")
        if size <= 8:
            raise CheckpointError(f"{path} is truncated or empty ({size} bytes)")
        raise CheckpointError(f"{path} is not a safetensors file")
    if len(body) < n:
        raise CheckpointError(f"{path} is truncated: {size} bytes, its header alone needs {8 + n}")
    try:
        header = json.loads(body)
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"),
                  default=0)
    except (ValueError, KeyError, TypeError, IndexError):
        raise CheckpointError(f"{path} is not a safetensors file (unreadable header)") from None
    if 8 + n + end != size:
        raise CheckpointError(f"{path} is truncated or damaged: {size} bytes, the header "
                              f"describes {8 + n + end}")
    return header


def _storable(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU tensors, no two sharing memory (safetensors refuses aliases)."""
    seen: set[tuple[int, int]] = set()
    out = {}
    for name, t in tensors.items():
        t = t.detach().cpu().contiguous()
        key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        if key in seen or t.numel() != t.untyped_storage().nbytes() // max(t.element_size(), 1):
            t = t.clone()  # a view into a bigger storage, or the same storage seen before
        seen.add((t.untyped_storage().data_ptr(), t.untyped_storage().nbytes()))
        out[name] = t
    return out


def _fsync(path: str | Path) -> None:
    """Put a file's bytes on disk; an error propagates (its data may not be there)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_folder(folder: str | Path) -> None:
    """Make a rename in `folder` durable; file systems that cannot fsync a folder are skipped
    (the rename is still atomic)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
