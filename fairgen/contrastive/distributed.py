"""Process-group helpers: start from torchrun's environment, rank / world size, all-gathers with
grad, and BatchNorm whose statistics span every rank on any backend.

A contrastive loss wants every negative in the global batch. ``all_gather_with_grad`` hands each
rank the concatenation of all ranks' tensors; its backward sums the incoming gradients over ranks
(each rank's loss used every rank's slice) and returns this rank's slice. With each rank
computing the mean loss of its own anchors and DDP averaging parameter gradients, the result is
the gradient of the global-batch loss.

BatchNorm: each rank normalising with its own batch statistics makes a 2-rank run differ from one
process on the same global batch (88% in parameter updates, measured). ``sync_batchnorm`` uses
torch's SyncBatchNorm on CUDA (NCCL) and ``AllReduceBatchNorm`` elsewhere (gloo on CPU), which
computes the global mean, then the global variance, with two differentiable all-reduces.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from einops import rearrange, reduce
from torch import nn

__all__ = [
    "AllReduceBatchNorm",
    "all_gather_no_grad",
    "all_gather_with_grad",
    "init_from_env",
    "rank_and_world_size",
    "sync_batchnorm",
]


def init_from_env(device: str) -> tuple[int, int, str]:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1): NCCL on CUDA, gloo otherwise.

    Returns ``(rank, world_size, device)``; on CUDA each process takes ``cuda:LOCAL_RANK``. Without
    torchrun's variables (or with one process) nothing is initialised and ``(0, 1, device)`` comes
    back.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device
    if not dist.is_available():
        raise ValueError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    cuda = torch.device(device).type == "cuda"
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise ValueError(
                f"LOCAL_RANK {local} but this node has {torch.cuda.device_count()} CUDA device(s)"
            )
        device = f"cuda:{local}"
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", init_method="env://")
    return dist.get_rank(), dist.get_world_size(), device


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
    """``[world * n, ...]`` from every rank's ``[n, ...]`` (same shape on every rank),
    differentiable."""
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


class AllReduceBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over the global batch of every rank, for any backend (gloo included).

    In training mode the mean and then the variance are summed over ranks with a differentiable
    all-gather, so the forward pass and the gradients equal one process holding the whole batch
    (up to float rounding). In eval mode, or without a process group, it is plain BatchNorm.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input, got {x.dim()}D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if not self.training or rank_and_world_size()[1] == 1:
            return super().forward(x)
        flat = rearrange(x, "n c ... -> c (n ...)")
        count = all_gather_no_grad(x.new_tensor([flat.shape[1]])).sum()
        mean = reduce(all_gather_with_grad(flat.sum(1)[None]), "w c -> c", "sum") / count
        centred = flat - mean[:, None]
        var = (
            reduce(all_gather_with_grad((centred * centred).sum(1)[None]), "w c -> c", "sum")
            / count
        )
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = (
                    1.0 / float(self.num_batches_tracked)
                    if self.momentum is None
                    else self.momentum
                )
                self.running_mean.lerp_(mean.detach(), momentum)
                self.running_var.lerp_(var.detach() * (count / (count - 1).clamp(min=1)), momentum)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        out = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


def sync_batchnorm(model: nn.Module, cuda: bool) -> nn.Module:
    """Every BatchNorm of ``model`` made global over ranks: SyncBatchNorm on CUDA, else
    AllReduceBatchNorm."""
    if cuda:
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _convert(model)


def _convert(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(
        module, AllReduceBatchNorm
    ):
        new = AllReduceBatchNorm(
            module.num_features,
            module.eps,
            module.momentum,
            module.affine,
            module.track_running_stats,
        )
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        return (
            new.to(next(iter(module.state_dict().values())).device) if module.state_dict() else new
        )
    for name, child in module.named_children():
        setattr(module, name, _convert(child))
    return module
