"""Judge a class-conditional world generator: class fidelity, inherited bias, within-class
variation."""

from __future__ import annotations

import numpy as np
import pandas as pd

from plumbing.tables import contingency_table, cramers_v, cramers_v_corrected

from .render import CATEGORICAL


def judge_generator(
    generator,
    n: int = 10_000,
    seed: int = 0,
    judges=None,
    transform=None,
    progress=False,
    protected: tuple[str, ...] | None = None,
) -> dict:
    """Sample ``n`` images, label them with the world's judges and summarise.

    Returns class fidelity (judged shape == conditioning class) and, per protected factor (the
    generator's own unless given; texture for generators that do not say), Cramér's V between
    class and judged factor (plain and bias-corrected) and the per-class histogram; with several
    protected factors, V of their joint value too. ``transform(z, y)`` edits latents first.
    The first protected factor's numbers are also under the flat keys ``cramers_v`` etc.
    """
    from steering.labelling import sample_and_label

    from .judges import load_judges

    protected = tuple(protected or getattr(generator, "protected", ()) or ("texture",))
    judges = judges or load_judges(device=generator.device)
    labelers = {name: judges[name].predict for name in ("shape", *protected)}
    samples = sample_and_label(generator, labelers, n, seed, transform=transform, progress=progress)
    return summarise(
        samples.classes.numpy(),
        samples.numpy("shape"),
        {name: samples.numpy(name) for name in protected},
    )


def summarise(
    classes: np.ndarray, judged_shape: np.ndarray, judged: dict[str, np.ndarray] | np.ndarray
) -> dict:
    """Fidelity, Cramér's V and histograms from labelled samples (``judged``: {factor: labels}, or
    texture)."""
    judged = judged if isinstance(judged, dict) else {"texture": judged}
    k_shape = len(CATEGORICAL["shape"])
    by_factor = {}
    for name, labels in judged.items():
        k = len(CATEGORICAL[name])
        table = contingency_table(classes, labels, k_shape, k)
        shares = table / table.sum(1, keepdims=True).clip(min=1)
        by_factor[name] = {
            "cramers_v": cramers_v(classes, labels),
            "cramers_v_corrected": cramers_v_corrected(classes, labels),
            "own_share": float(np.mean(labels == classes % k)),
            "histogram": pd.DataFrame(
                shares, index=list(CATEGORICAL["shape"]), columns=list(CATEGORICAL[name])
            ),
        }
    first = next(iter(by_factor))
    out = {
        "n": int(len(classes)),
        "class_fidelity": float(np.mean(classes == judged_shape)),
        "protected": list(by_factor),
        "by_factor": by_factor,
        "cramers_v": by_factor[first]["cramers_v"],
        "cramers_v_corrected": by_factor[first]["cramers_v_corrected"],
        "own_texture_share": by_factor[first]["own_share"],
        "texture_histogram": by_factor[first]["histogram"],
    }
    if len(judged) > 1:
        joint = np.ravel_multi_index(
            tuple(judged.values()), tuple(len(CATEGORICAL[k]) for k in judged)
        )
        out["joint_cramers_v"] = cramers_v(classes, joint)
        out["joint_cramers_v_corrected"] = cramers_v_corrected(classes, joint)
    return out
