"""Training under ``torchrun``: which process this is, joining the process group, a folder all share.

Every process of a ``torchrun --nproc-per-node N clsrun train ...`` runs the same command; only the main
process (rank 0) writes the bundle, its logs and the lines on the terminal. Rank and world size come from
the variables torchrun sets, so they are known before torch is imported (``clsrun train`` decides who
prepares ``--out`` before loading torch).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def rank() -> int:
    """This process's rank (0 outside torchrun)."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """How many processes train together (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    """True on the one process that writes files and prints."""
    return rank() == 0


def join(device: str) -> None:
    """Join torchrun's process group once (gloo on CPU, NCCL on CUDA); nothing for a single process.

    Both training loops call it: the frozen-encoder path all-gathers features through it, and the Hugging
    Face Trainer (accelerate) uses a group that is already initialised rather than starting its own.
    """
    if world_size() <= 1:
        return
    import torch

    dist = torch.distributed
    if dist.is_initialized():
        return
    if device == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if device == "cuda" else "gloo")


def joined() -> tuple[int, int]:
    """(rank, world size) of the joined process group; (0, 1) when there is none."""
    import torch

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


@contextlib.contextmanager
def shared_temp_dir(prefix: str) -> Iterator[Path]:
    """A temporary folder, removed afterwards. Under torchrun every process of a node gets the same folder
    (each loads the best checkpoint from it), named after the run's rendezvous."""
    if world_size() <= 1:
        with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
            yield Path(tmp)
        return
    import torch

    run = "|".join(os.environ.get(k, "") for k in ("TORCHELASTIC_RUN_ID", "MASTER_ADDR", "MASTER_PORT"))
    path = Path(tempfile.gettempdir()) / f"{prefix}{hashlib.sha256(run.encode()).hexdigest()[:16]}"
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.barrier()
        if os.environ.get("LOCAL_RANK", "0") == "0":
            shutil.rmtree(path, ignore_errors=True)
