"""Labelling: sample latents (and classes) from a generator, synthesize, and label the images.

The output pairs each latent with what a labeler (e.g. a world judge) sees in its image; probes
and erasers are fit on these pairs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from plumbing.validation import check_int, check_labeler_output, is_int

Labeler = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class LabelledLatents:
    """Latents ``[N, d]``, classes ``[N]`` and each labeler's labels ``[N]`` (CPU tensors)."""

    latents: torch.Tensor
    classes: torch.Tensor
    labels: dict[str, torch.Tensor]

    def __len__(self) -> int:
        return len(self.latents)

    def numpy(self, name: str) -> np.ndarray:
        return self.labels[name].numpy()

    def class_mask(self, c: int) -> torch.Tensor:
        return self.classes == c


def label_latents(
    generator,
    labelers: Mapping[str, Labeler],
    z: torch.Tensor,
    y: torch.Tensor | None,
    batch_size: int = 1024,
    transform: Callable | None = None,
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """Label the images of given latents; ``transform(z, y)`` edits latents before synthesis."""
    out = {name: [] for name in labelers}
    starts = range(0, len(z), batch_size)
    device = generator_device(generator)
    for start in tqdm(starts, desc="labelling", disable=not progress, leave=False):
        zb = z[start : start + batch_size].to(device)
        yb = None if y is None else y[start : start + batch_size].to(device)
        if transform is not None:
            zb = transform(zb, yb)
        images = generator.synthesize(zb, yb)
        for name, labeler in labelers.items():
            out[name].append(check_labeler_output(labeler(images), len(images), name).cpu())
    return {name: torch.cat(parts) for name, parts in out.items()}


def generator_device(generator) -> torch.device:
    """Where a generator wants its latents: its ``device``, else its first parameter's, else the
    CPU."""
    device = getattr(generator, "device", None)
    if device is not None:
        return torch.device(device)
    parameters = getattr(generator, "parameters", None)
    first = next(iter(parameters()), None) if callable(parameters) else None
    return first.device if first is not None else torch.device("cpu")


def check_generator_protocol(generator) -> None:
    """A clear error unless ``generator`` has what steering calls: num_classes, sample_latents,
    synthesize."""
    missing = [
        a for a in ("num_classes", "sample_latents", "synthesize") if not hasattr(generator, a)
    ]
    if missing:
        raise ValueError(
            f"generator ({type(generator).__name__}) lacks {missing}: steering needs num_classes "
            "(0: unconditional), sample_latents(n, generator=torch.Generator) and synthesize(z, y)"
        )
    if not is_int(generator.num_classes) or generator.num_classes < 0:
        raise ValueError(
            "generator.num_classes must be an integer >= 0 (0: unconditional), got "
            f"{generator.num_classes!r}"
        )


def sample_and_label(
    generator,
    labelers: Mapping[str, Labeler],
    n: int,
    seed: int = 0,
    classes: torch.Tensor | None = None,
    batch_size: int = 1024,
    transform: Callable | None = None,
    progress: bool = True,
) -> LabelledLatents:
    """Draw ``n`` latents (classes uniform unless given), synthesize in batches, label them.

    Latents (from the generator's own prior) and classes come from a CPU ``torch.Generator``
    seeded with ``seed``, so the same seed gives the same samples on every device.
    """
    n = check_int(n, "n", 1)
    if not labelers:
        raise ValueError("labelers must name at least one labeler")
    rng = torch.Generator().manual_seed(int(seed))
    z = generator.sample_latents(n, generator=rng).cpu()
    if generator.num_classes == 0:
        y = None
    elif classes is None:
        y = torch.randint(generator.num_classes, (n,), generator=rng)
    else:
        y = torch.as_tensor(classes, dtype=torch.int64)
        if y.shape != (n,):
            raise ValueError(f"classes must have shape [{n}], got {list(y.shape)}")
    labels = label_latents(generator, labelers, z, y, batch_size, transform, progress)
    classes_out = torch.zeros(n, dtype=torch.int64) if y is None else y
    return LabelledLatents(z, classes_out, labels)
