"""torch.distributed glue for runs launched by torchrun, plus progress-derived randomness.

We launch with torchrun (``torchrun --nproc_per_node=N -m ganforge train ...``) and never build our own
launcher. Gradients are averaged with one flat all-reduce per phase (as NVlabs StyleGAN2-ADA does) instead
of wrapping modules in DDP: a GAN phase backpropagates through a frozen module (G's loss through D), which
DDP's hooks and unused-parameter detection handle poorly, and the explicit reduce keeps the loop readable.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # this module created the process group, so it also destroys it

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group if torchrun started us (WORLD_SIZE > 1); otherwise a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    owns = not torch_dist.is_initialized()
    if owns:
        # On CUDA, NCCL for the gradients and gloo for the small CPU tensors (stats, stop flags, sync checks).
        backend = "cpu:gloo,cuda:nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            if local_rank >= torch.cuda.device_count():
                raise RuntimeError(
                    f"process {local_rank} has no GPU: this machine has {torch.cuda.device_count()} CUDA device(s) "
                    "but torchrun started more processes per node. Use --nproc_per_node "
                    f"{torch.cuda.device_count()}, or train on CPU processes with --device cpu.")
            torch.cuda.set_device(local_rank)
        torch_dist.init_process_group(backend=backend)
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, owns_group=owns)


def shutdown_distributed(info: DistInfo) -> None:
    """Wait for every rank, then destroy the process group if we created it. Exiting with a live gloo group
    can abort a process ("terminate called without an active exception") while another still finishes."""
    if info.owns_group and torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.barrier()
        torch_dist.destroy_process_group()


def broadcast_module(module: torch.nn.Module, info: DistInfo) -> None:
    """Make every rank start from rank 0's parameters and buffers."""
    if info.world_size == 1:
        return
    for t in list(module.parameters()) + list(module.buffers()):
        torch_dist.broadcast(t.data, src=0)


def all_reduce_grads(params: list[torch.nn.Parameter], info: DistInfo) -> None:
    """Average gradients over ranks with a single flat all-reduce."""
    if info.world_size == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    torch_dist.all_reduce(flat)
    flat /= info.world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def all_reduce_mean(values: dict[str, float], info: DistInfo) -> dict[str, float]:
    """Average a dict of scalars over ranks (keys must match on every rank)."""
    if info.world_size == 1 or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64)
    torch_dist.all_reduce(t)
    return {k: float(v) / info.world_size for k, v in zip(keys, t.tolist(), strict=True)}


def params_in_sync(modules: list[torch.nn.Module], info: DistInfo) -> bool:
    """True when every rank holds bit-identical parameters (compares min and max of a float64 checksum)."""
    if info.world_size == 1:
        return True
    flat = torch.cat([p.detach().reshape(-1).double().cpu() for m in modules for p in m.parameters()])
    checksum = torch.stack([flat.sum(), (flat * torch.arange(1, flat.numel() + 1, dtype=torch.float64)).sum()])
    lo, hi = checksum.clone(), checksum.clone()
    torch_dist.all_reduce(lo, op=torch_dist.ReduceOp.MIN)
    torch_dist.all_reduce(hi, op=torch_dist.ReduceOp.MAX)
    return bool(torch.equal(lo, hi))


def barrier(info: DistInfo) -> None:
    if info.world_size > 1:
        torch_dist.barrier()


def progress_seed(seed: int, rank: int, step: int) -> int:
    """Randomness is a function of (seed, rank, step): resume and multi-process runs stay deterministic."""
    digest = hashlib.sha256(f"ganforge:{seed}:{rank}:{step}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def step_generator(seed: int, rank: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(progress_seed(seed, rank, step))
