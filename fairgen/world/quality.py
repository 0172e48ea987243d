"""Judge a class-conditional world generator: class fidelity, inherited bias, within-class variation."""

from __future__ import annotations

import numpy as np
import pandas as pd

from audits.stats import contingency_table, cramers_v

from .render import CATEGORICAL


def judge_generator(generator, n: int = 10_000, seed: int = 0, judges=None, transform=None, progress=False) -> dict:
    """Sample ``n`` images, label them with the world's judges and summarise.

    Returns class fidelity (judged shape == conditioning class), Cramér's V between class and
    judged texture, and the per-class texture histogram (rows: class, columns: texture shares).
    ``transform(z, y)`` edits latents before synthesis (a steering mode).
    """
    from steering.labelling import sample_and_label

    from .judges import load_judges

    judges = judges or load_judges(device=generator.device)
    labelers = {name: judges[name].predict for name in ("shape", "texture")}
    samples = sample_and_label(generator, labelers, n, seed, transform=transform, progress=progress)
    return summarise(samples.classes.numpy(), samples.numpy("shape"), samples.numpy("texture"))


def summarise(classes: np.ndarray, judged_shape: np.ndarray, judged_texture: np.ndarray) -> dict:
    """Fidelity, Cramér's V and texture histograms from labelled samples."""
    k_shape, k_texture = len(CATEGORICAL["shape"]), len(CATEGORICAL["texture"])
    table = contingency_table(classes, judged_texture, k_shape, k_texture)
    shares = table / table.sum(1, keepdims=True).clip(min=1)
    histogram = pd.DataFrame(shares, index=list(CATEGORICAL["shape"]), columns=list(CATEGORICAL["texture"]))
    return {
        "n": int(len(classes)),
        "class_fidelity": float(np.mean(classes == judged_shape)),
        "cramers_v": cramers_v(classes, judged_texture),
        "own_texture_share": float(np.mean(judged_texture == classes % k_texture)),
        "texture_histogram": histogram,
    }
