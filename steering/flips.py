"""Counterfactual twins by following a latent classifier's geometry, not one straight line.

Each latent climbs ``log q(b | z, c) - penalty/2 * |z - z0|^2`` (the requested value's calibrated
log-probability, and a pull towards where it started, which keeps the twin as typical under the
prior as its anchor and its other attributes close) by normalised gradient steps. A step is kept
only if it improves the objective (its length then grows by 1.2, else it halves), so a thin region
is not overshot and a curved one is followed. A latent stops once ``q(b | z, c) >= threshold``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


def gradient_flip(
    log_prob: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    z: torch.Tensor,
    index: torch.Tensor,
    threshold: float = 0.95,
    step_size: float = 0.25,
    max_steps: int = 100,
    penalty: float = 0.02,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Move latents into the region where ``log_prob(z, index)`` (each row's requested value) is
    high.

    ``index`` selects, per row, what ``log_prob`` scores (rows are passed in subsets). Returns the
    moved latents and a mask of those that reached ``threshold``.
    """
    start = z.detach().float()
    current = start.clone()
    steps = torch.full((len(z), 1), float(step_size))
    active = torch.arange(len(z))
    goal = math.log(threshold)

    def objective(point, rows):
        return log_prob(point, index[rows]) - 0.5 * penalty * ((point - start[rows]) ** 2).sum(1)

    with torch.enable_grad():
        point = current.clone().requires_grad_(True)
        value = objective(point, active)
        (grad,) = torch.autograd.grad(value.sum(), point)
    value, grad = value.detach(), grad
    for _ in range(max_steps):
        if len(active) == 0:
            break
        # a normalised ascent step, kept only if it improves the objective
        trial = current[active] + steps[active] * grad / grad.norm(dim=1, keepdim=True).clamp(
            min=1e-12
        )
        with torch.enable_grad():
            point = trial.clone().requires_grad_(True)
            new_value = objective(point, active)
            (new_grad,) = torch.autograd.grad(new_value.sum(), point)
        better = new_value.detach() > value
        current[active[better]] = trial[better]
        value = torch.where(better, new_value.detach(), value)
        grad = torch.where(better[:, None], new_grad, grad)
        steps[active] = torch.where(better[:, None], steps[active] * 1.2, steps[active] * 0.5)
        with torch.no_grad():
            landed = log_prob(current[active], index[active]) >= goal
        keep = ~landed & (steps[active, 0] > 1e-3)
        active, value, grad = active[keep], value[keep], grad[keep]
    with torch.no_grad():
        reached = log_prob(current, index) >= goal
    return current.to(z.dtype), reached
