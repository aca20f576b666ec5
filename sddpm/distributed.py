"""Processes started by ``torchrun``: their rank, and work shared out between them.

Training splits every global batch (:mod:`sddpm.train`); sampling and evaluation split the
image batches: batch ``i`` goes to rank ``i % world`` and is drawn from seed ``seed + i``
as in one process, so the images do not depend on how many processes made them. The
batches are gathered in order on every rank and only rank 0 measures and writes.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from sddpm.errors import SddpmError


def resolve_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise SddpmError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SddpmError(f"device {name!r} asked for, but no CUDA GPU is usable here; "
                         "use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise SddpmError(f"device {name!r} is not supported; use auto, cpu, cuda or cuda:N")
    return device


def init_distributed(device_name: str) -> tuple[int, int, torch.device]:
    """``(rank, world, device)``; joins torchrun's process group when there is one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if world <= 1:
        return 0, 1, device
    if device.type == "cuda":
        if device.index is not None:
            raise SddpmError(f"--device {device} under torchrun: each process takes "
                             "the GPU of its LOCAL_RANK; pass --device cuda (or auto)")
        device = torch.device(f"cuda:{local_rank}")
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # the backend follows the device the tensors live on, not what the machine has
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world, device


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def my_batches(count: int) -> list[int]:
    """The batch indices of ``range(count)`` this process makes (round robin)."""
    return list(range(rank(), count, world_size()))


def gather_batches(mine: list[torch.Tensor], count: int, shape: tuple,
                   device) -> list[torch.Tensor]:
    """Every rank's batches (``mine``: this rank's :func:`my_batches`, in order) -> all
    ``count`` float32 batches in index order, on every rank, on the CPU.

    Batches are padded to ``shape`` (the fullest batch's) so that one ``all_gather`` of
    equal tensors serves NCCL as well as gloo; the true sizes travel beside them.
    """
    world = world_size()
    if world == 1:
        return [b.cpu() for b in mine]
    slots = -(-count // world)
    block = torch.zeros((slots, *shape), dtype=torch.float32, device=device)
    sizes = torch.zeros(slots, dtype=torch.int64, device=device)
    for j, b in enumerate(mine):
        block[j, :len(b)] = b.to(device, torch.float32)
        sizes[j] = len(b)
    blocks = [torch.empty_like(block) for _ in range(world)]
    counts = [torch.empty_like(sizes) for _ in range(world)]
    dist.all_gather(blocks, block)
    dist.all_gather(counts, sizes)
    return [blocks[i % world][i // world, :int(counts[i % world][i // world])].cpu()
            for i in range(count)]


def leave_distributed() -> None:
    """Done with torchrun's process group (if joined): all ranks meet, then go on alone.

    Call it on success only (after a failure the peer never arrives; torchrun stops the
    other ranks when one fails). The group is not destroyed here: with gloo (torch 2.3)
    ``destroy_process_group`` sometimes waits forever, even when every rank calls it
    together after a barrier (pytorch/pytorch#75097); see :func:`exit_distributed`.
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def exit_distributed() -> None:
    """End a process of a torchrun group once its command has written everything.

    Neither way out of a gloo group is safe in torch 2.3: destroying it may hang (see
    :func:`leave_distributed`) and leaving it to the interpreter's exit sometimes aborts
    in its destructor ('terminate called without an active exception', exit code -6,
    which torchrun reports as a failure). So the process ends here, with its output
    flushed and its files already written atomically. Outside torchrun: nothing.
    """
    if dist.is_available() and dist.is_initialized():
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
