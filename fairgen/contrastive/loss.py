"""One contrastive loss for SupCon and SimCLR (Khosla et al. 2020, the L_out form).

For every anchor view i among the B * V views, with positives P(i) (the other views of the same
sample, plus, when labels are given, every view of a sample with the same label) and A(i) all
views but i itself:

    loss_i = -1 / |P(i)| * sum_{p in P(i)} log( exp(z_i . z_p / t) / sum_{a in A(i)} exp(z_i . z_a
    / t) )

The average over positives sits outside the log. The result is the mean of loss_i over anchors
that have at least one positive; anchors without any (possible with V = 1) are left out, and a
batch where no anchor has a positive gives 0, not NaN. With ``labels=None`` each sample is its
own class, which is exactly SimCLR's NT-Xent.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange, repeat

from .distributed import all_gather_no_grad, all_gather_with_grad, rank_and_world_size

__all__ = ["supcon_loss"]


def _check(features, labels, temperature) -> None:
    if (
        not isinstance(features, torch.Tensor)
        or features.ndim != 3
        or not features.is_floating_point()
    ):
        shape = (
            list(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        )
        raise ValueError(f"features must be a floating tensor [B, V, d], got {shape}")
    b, v, _ = features.shape
    if labels is None and v < 2:
        raise ValueError(
            f"features need V >= 2 views per sample when labels is None (SimCLR), got V={v}"
        )
    if labels is not None:
        if (
            not isinstance(labels, torch.Tensor)
            or labels.is_floating_point()
            or labels.shape != (b,)
        ):
            got = list(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
            raise ValueError(
                f"labels must be an integer tensor of shape [{b}] (one per sample), got {got}"
            )
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def supcon_loss(
    features: torch.Tensor,
    labels: torch.Tensor | None = None,
    temperature: float = 0.1,
    gather: bool = False,
) -> torch.Tensor:
    """SupCon loss of ``features [B, V, d]`` (SimCLR when ``labels`` is None); a scalar.

    Features are L2-normalised inside, so any scale may be passed. Similarities and the softmax
    run in float32 with autocast disabled, after subtracting each row's maximum. With
    ``gather=True`` and an initialised process group, local anchors are contrasted against every
    rank's views (all ranks must pass the same ``B`` and ``V``); the gradient then matches a
    single process on the concatenated batch once parameter gradients are averaged (DDP does it).
    """
    _check(features, labels, temperature)
    b, v, _ = features.shape
    rank, world = rank_and_world_size() if gather else (0, 1)
    with torch.autocast(device_type=features.device.type, enabled=False):
        anchors = rearrange(F.normalize(features.float(), dim=-1), "b v d -> (b v) d")
        ids = labels if labels is not None else torch.arange(b, device=features.device) + rank * b
        anchor_ids = repeat(ids.to(features.device), "b -> (b v)", v=v)
        contrast = all_gather_with_grad(anchors) if world > 1 else anchors
        contrast_ids = all_gather_no_grad(anchor_ids) if world > 1 else anchor_ids

        n, m = anchors.shape[0], contrast.shape[0]
        own_index = torch.arange(n, device=features.device) + rank * n
        is_self = rearrange(own_index, "n -> n 1") == rearrange(
            torch.arange(m, device=features.device), "m -> 1 m"
        )
        positive = (
            rearrange(anchor_ids, "n -> n 1") == rearrange(contrast_ids, "m -> 1 m")
        ) & ~is_self

        logits = anchors @ contrast.T / temperature
        logits = logits - logits.amax(dim=1, keepdim=True).detach()
        denominator = torch.exp(logits).masked_fill(is_self, 0.0).sum(dim=1, keepdim=True)
        log_prob = logits - torch.log(denominator.clamp_min(torch.finfo(logits.dtype).tiny))

        num_positives = positive.sum(dim=1)
        mean_log_prob = torch.where(positive, log_prob, 0.0).sum(dim=1) / num_positives.clamp_min(1)
        has_positive = (num_positives > 0).to(mean_log_prob.dtype)
        return -(mean_log_prob * has_positive).sum() / has_positive.sum().clamp_min(1.0)
