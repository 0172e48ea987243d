"""Process-group helpers: rank / world size without a process group, and an all-gather with grad.

A contrastive loss wants every negative in the global batch. ``all_gather_with_grad`` hands each
rank the concatenation of all ranks' tensors; its backward sums the incoming gradients over ranks
(each rank's loss used every rank's slice) and returns this rank's slice. With each rank
computing the mean loss of its own anchors and DDP averaging parameter gradients, the result is
the gradient of the global-batch loss.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from einops import rearrange

__all__ = ["all_gather_no_grad", "all_gather_with_grad", "rank_and_world_size"]


def rank_and_world_size() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` when torch.distributed is absent or not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _AllGather(torch.autograd.Function):
    """Forward: concatenate every rank's ``[n, ...]`` along dim 0. Backward: sum, take own slice."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        rank, world = rank_and_world_size()
        ctx.rank, ctx.world = rank, world
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return rearrange(grad, "(w n) ... -> w n ...", w=ctx.world)[ctx.rank]


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """``[world * n, ...]`` from every rank's ``[n, ...]`` (same shape on every rank), differentiable."""
    if rank_and_world_size()[1] == 1:
        return x
    return _AllGather.apply(x)


@torch.no_grad()
def all_gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """Like ``all_gather_with_grad`` for tensors that need no gradient (labels, ids)."""
    rank, world = rank_and_world_size()
    if world == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)
