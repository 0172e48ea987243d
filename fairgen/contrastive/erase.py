"""Erase a protected attribute from a trained encoder's features, fitted on generated samples.

Balancing the training stream changes what an encoder *relies on*, not what its features
*contain*: a conv net's pooled features carry background texture linearly whatever it was trained
on (an untrained small CNN already gives a texture probe 1.000 balanced accuracy). Removing it
needs an edit of the features, and that needs images whose protected attribute is known, which
real data rarely has. A generator has them in any number: `fit_feature_eraser` runs the encoder
on generated images, labels each one with the same labeler the steering used, and fits LEACE
(`steering.leace`) on the pairs. `ErasedEncoder` is the encoder followed by that eraser, so no
linear probe reads the attribute from its outputs better than a constant (exactly on the fitting
distribution; on real images as far as the generator matches them; audit it).

Fit on a stream that is balanced within each class (a steered stream): if the attribute is
correlated with the class in the fitting samples, erasing it also erases the class.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn
from tqdm.auto import tqdm

from steering.leace import LeaceEraser, LeaceFitter

__all__ = [
    "ERASER_START_STEP",
    "ErasedEncoder",
    "fit_feature_eraser",
    "load_feature_eraser",
    "save_feature_eraser",
]

ERASER_START_STEP = (
    2 * 10**6
)  # where an eraser reads a stream: a segment no training run or stream audit reaches


def _images_of(batch) -> torch.Tensor:
    """Images [B, 3, H, W] from a tensor, or the first view of a stream batch ``{"views": [B, V,
    ...]}``."""
    if isinstance(batch, dict):
        if "views" not in batch:
            raise ValueError(
                f"a dict batch needs a 'views' entry [B, V, 3, H, W]; got keys {sorted(batch)}"
            )
        batch = batch["views"][:, 0]
    if not isinstance(batch, torch.Tensor) or batch.ndim != 4:
        raise ValueError(
            "each batch must be images [B, 3, H, W] or a stream batch, got "
            f"{getattr(batch, 'shape', type(batch))}"
        )
    return batch


@torch.no_grad()
def fit_feature_eraser(
    encoder: nn.Module,
    batches: Iterable,
    labeler: Callable[[torch.Tensor], torch.Tensor],
    num_classes: int,
    n: int,
    progress: bool = True,
) -> LeaceEraser:
    """LEACE eraser for ``encoder``'s features, fitted on ``n`` images from ``batches``.

    batches: an iterable of image tensors [B, 3, H, W] or stream batches (the anchors, view 0,
    are used), e.g. a steered `fairgen.stream.Stream`. labeler: images -> int labels of the
    protected attribute in [0, num_classes). The encoder runs in eval mode; statistics are
    accumulated in float64 on the CPU, so ``n`` is bounded by time, not memory.
    """
    if int(n) < 2:
        raise ValueError(f"n must be >= 2 samples, got {n}")
    if int(num_classes) < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    was_training = encoder.training
    encoder.eval()
    device = next(encoder.parameters()).device
    fitter, seen = None, 0
    bar = tqdm(total=int(n), desc="fitting feature eraser", unit="img", disable=not progress)
    try:
        for batch in batches:
            images = _images_of(batch)[: int(n) - seen]
            features = encoder(images.to(device)).float()
            labels = torch.as_tensor(labeler(images)).long().cpu()
            if labels.shape != (len(images),):
                raise ValueError(
                    f"labeler returned shape {list(labels.shape)} for {len(images)} images"
                )
            fitter = fitter or LeaceFitter(features.shape[1], num_classes)
            fitter.update(features.cpu().double(), labels)
            seen += len(images)
            bar.update(len(images))
            if seen >= n:
                break
    finally:
        bar.close()
        encoder.train(was_training)
    if seen < n:
        raise ValueError(f"batches ran out after {seen} images; {n} were asked for")
    eraser = fitter.eraser()
    eraser.n_samples_ = seen
    return eraser


class ErasedEncoder(nn.Module):
    """An encoder whose features pass through a fitted feature eraser (float32 out)."""

    def __init__(self, encoder: nn.Module, eraser: LeaceEraser):
        super().__init__()
        self.encoder, self.eraser = encoder, eraser
        self.train(encoder.training)  # start in the encoder's mode, so wrapping it changes nothing

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.eraser(self.encoder(images).float())


def save_feature_eraser(
    eraser: LeaceEraser, path: str | Path, provenance: dict | None = None
) -> Path:
    """Write a fitted eraser as safetensors (its three tensors) with its config and provenance as
    JSON metadata."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"config": json.dumps(eraser.config()), "provenance": json.dumps(provenance or {})}
    from safetensors.torch import save

    from plumbing.files import atomic_write_bytes

    atomic_write_bytes(
        path, save({k: v.contiguous() for k, v in eraser.state_dict().items()}, metadata=metadata)
    )
    return path


def load_feature_eraser(path: str | Path) -> tuple[LeaceEraser, dict]:
    """Read what `save_feature_eraser` wrote: (eraser, provenance). Data only, no code is
    unpickled."""
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
    if "config" not in metadata:
        raise ValueError(
            f"{path} is not a feature eraser file (no 'config' in its safetensors metadata)"
        )
    eraser = LeaceEraser.from_state(load_file(str(path)), json.loads(metadata["config"]))
    return eraser, json.loads(metadata.get("provenance", "{}"))
