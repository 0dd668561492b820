"""evaluate() in two real processes (gloo on loopback): each draws and featurises its share, an
all-gather brings the features together, and both processes get one process's numbers.

The processes are spawned (not forked: see tests/test_distributed.py) with torch.multiprocessing
and joined with `torch.distributed.init_process_group("gloo")`; `gather` is all_gather + cat,
what `accelerator.gather` does; evaluate itself imports neither torch.distributed nor accelerate.
"""

from __future__ import annotations

import json
import socket

import pytest
import torch
import torch.distributed as dist
from test_evaluate import Tiny, Toy, noise, values
from torch.multiprocessing import start_processes

from nanogan.evaluate import evaluate
from nanogan.features import EXTRACTORS, Extractor

pytestmark = pytest.mark.skipif(not dist.is_available(),
                                reason="torch.distributed is not available")
METRICS = ["fid", "kid", "pr", "swd", "is"]
# 26 images in batches of 5: ranks take batches 0-1 and 2-5, 10 and 16 images (uneven shares)
SETTINGS = {"num_images": 26, "batch_size": 5, "extractor": "tiny", "seed": 7}


def free_port() -> int:
    """A TCP port nobody listens on now, so that concurrent test runs do not collide."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def all_gather(tensor: torch.Tensor) -> torch.Tensor:
    """What accelerator.gather does: every rank's tensor, concatenated in rank order."""
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor)
    return torch.cat(parts)


def _tiny_extractor() -> Extractor:
    return Extractor(Tiny(), resize=None, fingerprint="tiny")


def _worker(rank: int, world: int, port: int, folder: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    try:
        EXTRACTORS["tiny"] = _tiny_extractor  # this process's registry (spawned: a fresh one)
        results = evaluate(METRICS, generate=noise, dataset=Toy(n=30), cache_dir=folder,
                           rank=rank, world=world, gather=all_gather, **SETTINGS)
        with open(f"{folder}/rank{rank}.json", "w") as f:
            json.dump(values(results), f)
    finally:
        dist.destroy_process_group()


def test_two_processes_give_the_one_process_numbers(tmp_path, monkeypatch):
    """fid, kid, pr, swd and is of 2 processes (shares of 10 and 16 images) equal 1 process's."""
    start_processes(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2,
                    start_method="spawn")
    monkeypatch.setitem(EXTRACTORS, "tiny", _tiny_extractor)
    one = values(evaluate(METRICS, generate=noise, dataset=Toy(n=30),
                          cache_dir=tmp_path / "one", **SETTINGS))
    for rank in range(2):
        two = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert two.keys() == one.keys()
        assert two == pytest.approx(one, rel=1e-6, abs=1e-9), f"rank {rank}"
    assert len(list(tmp_path.glob("*.safetensors"))) == 1  # rank 0 alone wrote the real features
