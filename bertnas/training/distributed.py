"""Data-parallel supernet training over the processes ``torchrun`` starts (one per GPU, or CPU
processes with the gloo backend).

    torchrun --standalone --nproc_per_node 8 -m bertnas.cli.main supernet train --task mnli \\
        --backbone bert-base-uncased --device cuda --batch-size 256

Every process runs the same sandwich on its share of each global batch (``--batch-size`` is
the global batch; process ``r`` of ``n`` takes examples ``r, r + n, ...`` of it). The subnets
of a step come from ``(seed, step)``, so every process trains the same ones. After the
sandwich's backward passes, gradients are summed across processes, each weighted by its share
of the batch: exactly the whole batch's gradient for the per-example losses (logits, labels).
The hidden-state and attention terms are means over each process's own tokens, weighted the
same way, so they differ slightly from one process's. Every process then takes the same
optimizer step. The weights are broadcast from process 0 once after setup, so extra
parameters and rewiring agree everywhere. Process 0 alone holds the directory's lock, writes
checkpoints and the finished supernet and shows progress; the others wait for it.

Without ``torchrun`` (no ``WORLD_SIZE`` in the environment) this is a world of one and every
call is a no-op.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from bertnas.errors import BertnasError


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this process writes files and shows progress (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def device(self, requested: torch.device) -> torch.device:
        """The device of this process: ``cuda`` becomes ``cuda:LOCAL_RANK`` (one GPU per process)."""
        if self.distributed and requested.type == "cuda" and requested.index is None:
            return torch.device("cuda", self.local_rank)
        return requested

    def shard(self, indices: Sequence[int]) -> list[int]:
        """This process's examples of one global batch."""
        return list(indices[self.rank :: self.size])

    def reduce_gradients(self, parameters: Iterable[torch.nn.Parameter], share: float) -> None:
        """Sum every gradient over the processes, each weighted by ``share`` (this process's fraction
        of the global batch): the whole batch's gradient when each process's loss is a mean over its
        shard. A parameter that no process's subnets touched keeps no gradient (the optimizer then
        skips it, as it does in one process); one touched elsewhere only counts as zero here."""
        if not self.distributed:
            return
        import torch.distributed as dist

        trainable = [parameter for parameter in parameters if parameter.requires_grad]
        touched = torch.tensor([parameter.grad is not None for parameter in trainable], dtype=torch.int32)
        touched = touched.to(trainable[0].device) if trainable else touched
        dist.all_reduce(touched)  # (parameters,): how many processes gave each one a gradient
        grads = []
        for parameter, count in zip(trainable, touched.tolist(), strict=True):
            if count == 0:
                continue
            if parameter.grad is None:
                parameter.grad = torch.zeros_like(parameter)
            grads.append(parameter.grad)
        if not grads:
            return
        flat = torch.cat([grad.reshape(-1) for grad in grads]) * share
        dist.all_reduce(flat)
        offset = 0
        for grad in grads:
            grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
            offset += grad.numel()

    def broadcast_module(self, module: torch.nn.Module) -> None:
        """Make every process hold process 0's parameters and buffers."""
        if not self.distributed:
            return
        import torch.distributed as dist

        with torch.no_grad():
            for tensor in [*module.parameters(), *module.buffers()]:
                dist.broadcast(tensor.data, src=0)

    def broadcast_object(self, value: object) -> object:
        """Process 0's ``value`` on every process (a small picklable object made by bertnas itself)."""
        if not self.distributed:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()


def world_size() -> int:
    """How many processes torchrun started (``WORLD_SIZE``; 1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def current_world(device: torch.device) -> World:
    """The world ``torchrun`` set up for this process (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``),
    joining its process group on first use (NCCL on CUDA, gloo on CPU); a world of one without it."""
    size = world_size()
    if size <= 1:
        return World()
    import torch.distributed as dist

    world = World(rank=int(os.environ.get("RANK", "0")), size=size, local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda" and torch.cuda.device_count() <= world.local_rank:
        raise BertnasError(
            f"torchrun started {size} processes but this machine has {torch.cuda.device_count()} GPUs; "
            "use --nproc_per_node at most the GPU count"
        )
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return world


def close(world: World) -> None:
    if world.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
