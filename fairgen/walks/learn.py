"""Learning latent walks by gradient descent through the generator (the GAN-steerability objective).

For each transformation ``t`` with alpha range ``[a, b]``, find the direction ``w_t`` (one per class
with ``per_class=True``) minimising ``E_{z, y, alpha} || G(z + alpha w_t, y) - edit_t(G(z, y),
alpha) ||^2``
over the pixels the edit keeps inside the frame (Jahanian, Chai, Isola, "On the 'steerability' of
generative adversarial networks", ICLR 2020). Every transformation is learned from the same
anchors in one batched forward pass per step, on the generator's device, with a rotation-invariant
Adam (``IsotropicAdam``) and a cosine learning rate. Each step's draws come from ``(seed, step)``,
so a run resumed from its checkpoint
(safetensors, written atomically every ``checkpoint_every`` steps) ends bit-identical to an
uninterrupted one.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
from einops import rearrange, repeat
from tqdm.auto import tqdm

from plumbing.files import load_safetensors, read_safetensors_metadata, save_safetensors
from plumbing.validation import check_int, is_number

from .directions import LatentWalks
from .edits import (
    DEFAULT_ALPHAS,
    TRANSFORMATIONS,
    apply_edit,
    check_alpha_range,
    check_transformation,
)

CHECKPOINT_FORMAT = "fairgen-walk-checkpoint-1"


def check_differentiable(generator) -> None:
    """Raise a ValueError unless ``generator.synthesize`` carries gradients back to ``z``."""
    name = getattr(generator, "name", type(generator).__name__)
    z = (
        generator.sample_latents(2, generator=torch.Generator().manual_seed(0))
        .detach()
        .float()
        .requires_grad_(True)
    )
    y = torch.zeros(2, dtype=torch.long, device=z.device) if generator.num_classes else None
    with torch.enable_grad():
        images = generator.synthesize(z, y)
        if not images.requires_grad:
            raise ValueError(
                f"generator {name!r} is not differentiable in its latent: synthesize(z) returned "
                "images without "
                "a gradient (it runs under torch.no_grad or leaves autograd), and walks are "
                "learned by gradient "
                "descent through the generator"
            )
        (grad,) = torch.autograd.grad(images.sum(), z, allow_unused=True)
    if grad is None or not torch.isfinite(grad).all() or not grad.abs().sum() > 0:
        raise ValueError(
            f"generator {name!r} is not differentiable in its latent: the gradient of its images "
            "with respect to z is missing, zero or not finite"
        )


class IsotropicAdam:
    """Adam whose second moment is one number per walk (the mean squared gradient over the latent).

    Plain Adam rescales each latent coordinate on its own, which turns the update out of the span
    of the gradients: on ``world-sprites-32`` the zoom walk leaked into the texture code (which no
    gradient reaches, the texture being a threshold) and changed the texture of 5% of the samples.
    One scale per walk keeps every update a multiple of the momentum of the gradients.
    """

    def __init__(self, param: torch.Tensor, lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.param, self.lr, self.betas, self.eps = param, lr, betas, eps
        self.exp_avg = torch.zeros_like(param)
        self.exp_avg_sq = torch.zeros_like(param[..., :1])
        self.steps = 0

    @torch.no_grad()
    def step(self) -> None:
        grad, (beta1, beta2) = self.param.grad, self.betas
        self.steps += 1
        self.exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
        self.exp_avg_sq.mul_(beta2).add_(grad.pow(2).mean(dim=-1, keepdim=True), alpha=1 - beta2)
        m = self.exp_avg / (1 - beta1**self.steps)
        v = self.exp_avg_sq / (1 - beta2**self.steps)
        self.param.sub_(self.lr * m / (v.sqrt() + self.eps))


def masked_error(images: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared error over the pixels the mask keeps: ``[N]``."""
    squared = ((images - target) ** 2 * mask).sum(dim=(1, 2, 3))
    return squared / (mask.sum(dim=(1, 2, 3)) * images.shape[1]).clamp(min=1)


def step_generator(seed: int, step: int, purpose: int = 0) -> torch.Generator:
    """The CPU random generator of one training step (resuming needs no saved RNG state)."""
    state = np.random.SeedSequence([seed, step, purpose]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


class WalkLearner:
    """Learn one linear walk per transformation for a generator (scikit-learn style: ``fit``).

    Parameters are stored as given; ``fit(generator)`` sets ``walks_`` (a ``LatentWalks``),
    ``loss_history_`` (``[steps, T]`` mean masked error per step), ``final_loss_`` (per
    transformation, mean over the last tenth of the steps), ``seconds_`` and ``resumed_from_``.
    With ``checkpoint`` set, an existing checkpoint of the same settings and generator is resumed.
    """

    def __init__(
        self,
        transformations=TRANSFORMATIONS,
        alpha_ranges: dict | None = None,
        *,
        per_class: bool = False,
        steps: int = 200,
        batch_size: int = 32,
        lr: float = 0.1,
        seed: int = 0,
        checkpoint: str | Path | None = None,
        checkpoint_every: int = 50,
        progress: bool = True,
    ):
        self.transformations = transformations
        self.alpha_ranges = alpha_ranges
        self.per_class = per_class
        self.steps = steps
        self.batch_size = batch_size
        self.lr = lr
        self.seed = seed
        self.checkpoint = checkpoint
        self.checkpoint_every = checkpoint_every
        self.progress = progress

    # ------------------------------------------------------------ settings

    def _settings(self) -> dict:
        """Checked settings, as plain data (recorded in checkpoints and cards)."""
        if isinstance(self.transformations, str) or not self.transformations:
            raise ValueError(
                f"transformations must be a non-empty list among {list(TRANSFORMATIONS)}, got "
                f"{self.transformations!r}"
            )
        names = [check_transformation(t, "transformations") for t in self.transformations]
        if len(set(names)) != len(names):
            raise ValueError(f"transformations must not repeat, got {names}")
        given = dict(self.alpha_ranges or {})
        unused = sorted(set(given) - set(names))
        if unused:
            raise ValueError(f"alpha_ranges names transformations that are not learned: {unused}")
        ranges = {t: list(check_alpha_range(t, given.get(t, DEFAULT_ALPHAS[t]))) for t in names}
        for name, low in (("steps", 1), ("batch_size", 1), ("checkpoint_every", 1), ("seed", 0)):
            check_int(getattr(self, name), name, low)
        if not is_number(self.lr) or not self.lr > 0:
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
        return {
            "transformations": names,
            "alpha_ranges": ranges,
            "per_class": bool(self.per_class),
            "steps": self.steps,
            "batch_size": self.batch_size,
            "lr": float(self.lr),
            "seed": self.seed,
        }

    # ------------------------------------------------------------ training

    def fit(self, generator) -> WalkLearner:
        settings = self._settings()
        check_differentiable(generator)
        names, ranges = settings["transformations"], settings["alpha_ranges"]
        device = torch.device(generator.device)
        classes = generator.num_classes
        k = classes if settings["per_class"] and classes else 1
        w = torch.zeros(len(names), k, generator.latent_dim, device=device, requires_grad=True)
        optimizer = IsotropicAdam(w, lr=settings["lr"])
        history = torch.zeros(self.steps, len(names))
        start = self._resume(generator, settings, w, optimizer, history)
        self.resumed_from_ = start
        low = torch.tensor([ranges[t][0] for t in names])
        high = torch.tensor([ranges[t][1] for t in names])
        tic = time.perf_counter()
        bar = tqdm(
            range(start, self.steps),
            desc="learning walks",
            disable=not self.progress,
            initial=start,
            total=self.steps,
        )
        for step in bar:
            optimizer.lr = (
                settings["lr"] * 0.5 * (1 + math.cos(math.pi * step / self.steps))
            )  # a function of the step alone
            losses = self._losses(
                generator, w, names, low, high, step_generator(self.seed, step), classes
            )
            w.grad = None
            losses.mean().backward()
            optimizer.step()
            history[step] = losses.detach().cpu()
            if self.checkpoint is not None and (
                (step + 1) % self.checkpoint_every == 0 or step + 1 == self.steps
            ):
                self._save_checkpoint(generator, settings, w, optimizer, history, step + 1)
            if self.progress:
                bar.set_postfix(loss=f"{float(history[step].mean()):.4f}")
        self.seconds_ = time.perf_counter() - tic
        self.walks_ = LatentWalks(w.detach(), names, {t: tuple(r) for t, r in ranges.items()})
        self.loss_history_ = history
        tail = max(1, self.steps // 10)
        self.final_loss_ = {t: float(history[-tail:, i].mean()) for i, t in enumerate(names)}
        self.settings_ = settings
        return self

    def _losses(self, generator, w, names, low, high, rng, classes) -> torch.Tensor:
        """Mean masked error of each transformation's walk on one batch: ``[T]``."""
        n, t = self.batch_size, len(names)
        z = generator.sample_latents(n, generator=rng).float()
        y = torch.randint(classes, (n,), generator=rng).to(z.device) if classes else None
        alpha = (low[:, None] + (high - low)[:, None] * torch.rand(t, n, generator=rng)).to(
            z.device
        )
        with torch.no_grad():
            anchors = generator.synthesize(z, y)
            edited = [apply_edit(name, anchors, alpha[i]) for i, name in enumerate(names)]
        targets = torch.cat([e[0] for e in edited])
        masks = torch.cat([e[1] for e in edited])
        rows = w[:, y] if (w.shape[1] > 1) else w[:, [0] * n]  # [T, n, d]
        walked = rearrange(z[None] + alpha[..., None] * rows, "t n d -> (t n) d")
        labels = repeat(y, "n -> (t n)", t=t) if y is not None else None
        images = generator.synthesize(walked, labels)
        return rearrange(masked_error(images, targets, masks), "(t n) -> t n", t=t).mean(dim=1)

    # ------------------------------------------------------------ checkpoints

    def _save_checkpoint(self, generator, settings, w, optimizer, history, step: int) -> None:
        tensors = {
            "directions": w.detach(),
            "loss_history": history,
            "exp_avg": optimizer.exp_avg,
            "exp_avg_sq": optimizer.exp_avg_sq,
        }
        metadata = {
            "format": CHECKPOINT_FORMAT,
            "step": step,
            "optimizer_steps": optimizer.steps,
            "settings": settings,
            "generator": {"name": generator.name, "sha256": generator.checksum},
        }
        save_safetensors(tensors, self.checkpoint, metadata)

    def _resume(self, generator, settings, w, optimizer, history) -> int:
        """Load the checkpoint into ``w``, the optimiser and the history; the step to resume
        from."""
        if self.checkpoint is None or not Path(self.checkpoint).exists():
            return 0
        path = Path(self.checkpoint)
        meta = read_safetensors_metadata(path, "walk checkpoint")
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"walk checkpoint {path} is not a fairgen walk checkpoint")
        if meta.get("generator", {}).get("sha256") != generator.checksum:
            raise ValueError(
                f"walk checkpoint {path} was written for generator {meta.get('generator')}, "
                f"not {generator.name!r} with SHA-256 {generator.checksum}; remove it or pick "
                "another path"
            )
        if meta.get("settings") != settings:
            raise ValueError(
                f"walk checkpoint {path} was written with other settings {meta.get('settings')}; "
                "remove it or pick another checkpoint path"
            )
        tensors = load_safetensors(path, "walk checkpoint")
        step = int(meta["step"])
        with torch.no_grad():
            w.copy_(tensors["directions"].to(w))
            history.copy_(tensors["loss_history"])
            optimizer.exp_avg.copy_(tensors["exp_avg"].to(w))
            optimizer.exp_avg_sq.copy_(tensors["exp_avg_sq"].to(w))
        optimizer.steps = int(meta["optimizer_steps"])
        return step
