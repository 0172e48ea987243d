"""From a generator and a labeler to a fitted, measured, saveable steerer (what `fairgen steer` runs)."""

from __future__ import annotations

import numpy as np
import torch

from audits.stats import cramers_v

from .labelling import LabelledLatents, sample_and_label
from .modes import LatentSteerer
from .probes import MLPProbe


def fit_steerer(
    generator,
    labeler,
    n: int = 20_000,
    mode: str = "balance",
    method: str = "quantile",
    seed: int = 0,
    target_distribution=None,
    progress: bool = True,
) -> tuple[LatentSteerer, LabelledLatents]:
    """Label ``n`` samples with ``labeler`` and fit a per-class steerer on them."""
    if generator.num_classes == 0:
        raise ValueError("fit_steerer needs a class-conditional generator (num_classes > 0)")
    samples = sample_and_label(generator, {"protected": labeler}, n, seed, progress=progress)
    steerer = LatentSteerer(mode, method, target_distribution)
    steerer.fit(samples.latents, samples.classes, samples.labels["protected"], num_classes=generator.num_classes)
    return steerer, samples


def latent_probe_accuracy(latents, classes, protected, mlp: bool = False, seed: int = 0) -> dict:
    """Held-out accuracy of a fresh probe of the protected value *within each class* (mean over classes).

    Returns the probe's accuracy and the majority rate, both averaged over classes weighted by size.
    """
    latents, classes, protected = np.asarray(latents), np.asarray(classes), np.asarray(protected)
    rng = np.random.default_rng(seed)
    accuracy, majority, total = 0.0, 0.0, 0
    for c in np.unique(classes):
        idx = rng.permutation(np.flatnonzero(classes == c))
        half = len(idx) // 2
        train, test = idx[:half], idx[half:]
        counts = np.bincount(protected[train])
        guess = counts.argmax()
        maj = float(np.mean(protected[test] == guess))
        if len(np.unique(protected[train])) < 2:
            acc = maj
        elif mlp:
            acc = MLPProbe(random_state=seed).fit(latents[train], protected[train]).score(latents[test], protected[test])["accuracy"]
        else:
            from sklearn.linear_model import LogisticRegression

            clf = LogisticRegression(max_iter=2000).fit(latents[train], protected[train])
            acc = float(np.mean(clf.predict(latents[test]) == protected[test]))
        accuracy += acc * len(test)
        majority += maj * len(test)
        total += len(test)
    return {"accuracy": accuracy / total, "majority": majority / total}


def measure_stream(generator, judges, n: int = 10_000, seed: int = 1, transform=None, progress=False) -> dict:
    """Judged class fidelity and Cramér's V(class, protected) of a (possibly steered) stream."""
    labelers = {name: judge.predict for name, judge in judges.items()}
    samples = sample_and_label(generator, labelers, n, seed, transform=transform, progress=progress)
    classes = samples.classes.numpy()
    out = {"n": n, "cramers_v": cramers_v(classes, samples.numpy("protected"))}
    if "class" in samples.labels:
        out["class_fidelity"] = float(np.mean(samples.numpy("class") == classes))
    return out


def steering_report(generator, steerer: LatentSteerer, judges: dict, n: int = 10_000, seed: int = 1) -> dict:
    """Latent-level and image-level numbers for one fitted steerer, against the raw generator.

    ``judges`` maps "protected" (and optionally "class") to labelers with ``.predict``.
    """
    raw = measure_stream(generator, judges, n, seed)
    steered = measure_stream(generator, judges, n, seed, transform=steerer.as_transform(seed))
    rng = torch.Generator().manual_seed(seed + 7)
    z = generator.sample_latents(min(n, 10_000), generator=rng).cpu()
    y = torch.randint(generator.num_classes, (len(z),), generator=rng)
    labels = judges["protected"].predict(generator.synthesize(z.to(generator.device), y.to(generator.device))).cpu()
    edited = steerer(z, y, rng)
    report = {"raw": raw, "steered": steered, "probe_before": latent_probe_accuracy(z, y, labels)}
    if steerer.mode == "erase":
        report["probe_after"] = latent_probe_accuracy(edited, y, labels)
        report["mlp_probe_after"] = latent_probe_accuracy(edited, y, labels, mlp=True)
    return report
