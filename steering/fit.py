"""From a generator and a labeler to a fitted, measured, saveable steerer (what `fairgen steer`
runs)."""

from __future__ import annotations

import numpy as np
import torch

from plumbing.tables import cramers_v, cramers_v_corrected
from plumbing.validation import check_labeler_output, is_int

from .labelling import check_generator_protocol, sample_and_label
from .probes import MLPProbe
from .registry import steerer_class


def fit_steerer(
    generator,
    labeler,
    n: int = 20_000,
    mode: str = "balance",
    method: str | None = None,
    seed: int = 0,
    target_distribution=None,
    progress: bool = True,
    active: bool = True,
    keep_labeler=None,
    verified=None,
):
    """Label ``n`` samples and fit a per-class steerer; returns ``(steerer, labelled samples)``.

    ``labeler``: a callable ``images -> labels``, or ``{name: labeler}`` for several protected
    attributes at once (balanced jointly). ``method`` (``steering.steering_methods()``):
    ``"resample"`` (a calibrated nonlinear classifier per class; balance by rejection sampling,
    flips along its gradient) or the linear ``"quantile"`` / ``"gaussian"`` transports (one
    attribute; exact on linear geometry). The default is what ``benchmarks/steering_geometry.py``
    measured best: resample for balance (and for several attributes), quantile for flip mode on one
    attribute; erase (latent-only, per-class LEACE) is linear, quantile by default.
    With ``active`` (resample, confirmed), 40% of the labels go to prior draws and the rest, in two
    rounds, to the latents the classifier fitted so far is least sure of (``steering.active``).
    The prior draws also correct the resampler's acceptance where the classifier is blurred
    (``steering.resample.corrected_acceptance``).

    ``method="confirmed"`` (balance; ``steering.confirmed``): the same classifier becomes the
    proposal
    of ``steerer.draw(generator, labeler, n, seed)``, which synthesizes, labels and keeps samples
    until
    every (class, value) cell holds its exact share, in the labeler's terms; a trial draw at fit
    measures its syntheses per kept sample against plain image-space rejection (``steerer.costs_``).
    Unconditional generators (``num_classes == 0``) are steered to a target marginal; with
    ``keep_labeler`` (confirmed only) its label plays the class: the protected attributes are
    balanced
    within each keep-label value, whose own marginal stays the generator's.
    With ``verified`` (confirmed only: a verified set ``{"classes", "outputs", "truth"}`` or a
    ``steering.truth.ErrorModel``) ``target_distribution`` is a target of *true* values: the draw
    mixes the labeler's cells so that their true values meet it (``steering.truth.aim_at_truth``).
    """
    check_generator_protocol(generator)
    if method is None:
        linear = mode in ("flip", "erase") and not isinstance(labeler, dict)
        method = "quantile" if linear else "resample"
    cls = steerer_class(method)
    if not is_int(n) or n < 100:
        raise ValueError(f"n must be an integer >= 100 (labelled samples), got {n!r}")
    labelers = dict(labeler) if isinstance(labeler, dict) else {"protected": labeler}
    if not labelers or not all(callable(f) for f in labelers.values()):
        raise ValueError(
            "labeler must be a callable images -> labels, or a non-empty dict {name: callable}"
        )
    if verified is not None and method != "confirmed":
        raise ValueError(f"verified needs method='confirmed' (got method={method!r})")
    steerer, samples = cls.fit_generator(
        generator,
        labelers,
        n,
        mode=mode,
        method=method,
        seed=seed,
        # with a verified set the target is of true values: the labeler's cells are mixed below
        target_distribution=None if verified is not None else target_distribution,
        progress=progress,
        active=active,
        keep_labeler=keep_labeler,
    )
    if verified is not None:
        from .truth import aim_at_truth

        steerer = aim_at_truth(steerer, verified, target_distribution)
    return steerer, samples


def latent_probe_accuracy(latents, classes, protected, mlp: bool = False, seed: int = 0) -> dict:
    """Held-out accuracy of a fresh probe of the protected value *within each class* (mean over
    classes).

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
            acc = (
                MLPProbe(random_state=seed)
                .fit(latents[train], protected[train])
                .score(latents[test], protected[test])["accuracy"]
            )
        else:
            from sklearn.linear_model import LogisticRegression

            clf = LogisticRegression(max_iter=2000).fit(latents[train], protected[train])
            acc = float(np.mean(clf.predict(latents[test]) == protected[test]))
        accuracy += acc * len(test)
        majority += maj * len(test)
        total += len(test)
    return {"accuracy": accuracy / total, "majority": majority / total}


def measure_stream(
    generator, judges, n: int = 10_000, seed: int = 1, transform=None, progress=False
) -> dict:
    """Judged class fidelity and Cramér's V (plain and bias-corrected) of a (possibly steered)
    stream.

    ``judges`` maps "class" (optional) and each protected attribute to labelers with ``.predict``.
    Per attribute: ``cramers_v_by[name]``, ``cramers_v_corrected_by[name]``; with several, the joint
    value's V too. ``cramers_v`` is the first protected attribute's (or the joint one's).
    """
    labelers = {name: judge.predict for name, judge in judges.items()}
    samples = sample_and_label(generator, labelers, n, seed, transform=transform, progress=progress)
    classes = samples.classes.numpy()
    names = [name for name in judges if name != "class"]
    out = {"n": n, "cramers_v_by": {}, "cramers_v_corrected_by": {}}
    for name in names:
        out["cramers_v_by"][name] = cramers_v(classes, samples.numpy(name))
        out["cramers_v_corrected_by"][name] = cramers_v_corrected(classes, samples.numpy(name))
    key = names[0]
    if len(names) > 1:
        joint = np.ravel_multi_index(
            tuple(samples.numpy(k) for k in names),
            tuple(int(samples.numpy(k).max()) + 1 for k in names),
        )
        out["cramers_v_by"]["joint"] = cramers_v(classes, joint)
        out["cramers_v_corrected_by"]["joint"] = cramers_v_corrected(classes, joint)
        key = "joint"
    out["cramers_v"], out["cramers_v_corrected"] = (
        out["cramers_v_by"][key],
        out["cramers_v_corrected_by"][key],
    )
    if "class" in samples.labels:
        out["class_fidelity"] = float(np.mean(samples.numpy("class") == classes))
    return out


def confirmed_report(
    generator, steerer, labelers: dict, judges: dict, n: int = 10_000, seed: int = 1
) -> dict:
    """Raw generator against a confirmed steerer's draw, judged by ``judges`` (callables by
    attribute,
    optionally "class"); ``labelers`` confirm the draw (the steerer's own). The grouping of V is the
    class input, or the keep-label (keep labeler present), or nothing (unconditional: shares only).

    Returns ``raw`` and ``steered`` (``cramers_v_by``, ``cramers_v_corrected_by``, ``shares_by``,
    ``class_fidelity`` when judged) and the draw's ``cost``."""
    judges = {name: getattr(f, "predict", f) for name, f in judges.items()}
    keep = steerer.keep_
    raw = sample_and_label(
        generator, {**judges, **({keep: labelers[keep]} if keep else {})}, n, seed, progress=False
    )
    draw = steerer.draw(generator, labelers, n, seed=seed)
    steered = {
        name: check_labeler_output(f(draw.images), len(draw), name).cpu()
        for name, f in judges.items()
    }
    raw_groups = raw.labels[keep] if keep else raw.classes
    out = {
        "raw": _judged(raw_groups, raw.labels, judges, raw.classes),
        "steered": _judged(draw.classes, steered, judges, draw.classes),
        "cost": draw.cost(),
        "n": n,
        "guarantee": steerer.guarantee,
    }
    return out


def _judged(groups, labels: dict, judges: dict, classes) -> dict:
    names = [name for name in judges if name != "class"]
    groups = np.asarray(groups)
    out = {"cramers_v_by": {}, "cramers_v_corrected_by": {}, "shares_by": {}}
    for name in names:
        v = labels[name].numpy()
        out["cramers_v_by"][name] = cramers_v(groups, v)
        out["cramers_v_corrected_by"][name] = cramers_v_corrected(groups, v)
        out["shares_by"][name] = (np.bincount(v) / len(v)).tolist()
    if len(names) > 1:
        joint = np.ravel_multi_index(
            tuple(labels[k].numpy() for k in names), tuple(int(labels[k].max()) + 1 for k in names)
        )
        out["cramers_v_by"]["joint"] = cramers_v(groups, joint)
        out["cramers_v_corrected_by"]["joint"] = cramers_v_corrected(groups, joint)
    if "class" in labels:
        out["class_fidelity"] = float(np.mean(labels["class"].numpy() == np.asarray(classes)))
    return out


def steering_report(generator, steerer, judges: dict, n: int = 10_000, seed: int = 1) -> dict:
    """Latent-level and image-level numbers for one fitted steerer, against the raw generator.

    ``judges`` maps each protected attribute (one: any name, e.g. "protected") and optionally
    "class" to labelers with ``.predict``. Balance reports the latent draws per kept sample.
    """
    raw = measure_stream(generator, judges, n, seed)
    steered = measure_stream(
        generator, judges, n, seed, transform=steerer.as_transform(seed, generator.sample_latents)
    )
    report = {"raw": raw, "steered": steered}
    report["expected_draws_per_sample"] = steerer.expected_draws()
    names = [name for name in judges if name != "class"]
    if len(names) == 1:
        rng = torch.Generator().manual_seed(seed + 7)
        z = generator.sample_latents(min(n, 10_000), generator=rng).cpu()
        y = torch.randint(generator.num_classes, (len(z),), generator=rng)
        labels = (
            judges[names[0]]
            .predict(generator.synthesize(z.to(generator.device), y.to(generator.device)))
            .cpu()
        )
        report["probe_before"] = latent_probe_accuracy(z, y, labels)
        if steerer.mode == "erase":
            edited = steerer(z, y, rng)
            report["probe_after"] = latent_probe_accuracy(edited, y, labels)
            report["mlp_probe_after"] = latent_probe_accuracy(edited, y, labels, mlp=True)
    return report


RETRY_RHOS = (0.95, 0.9, 0.8, 0.7, 0.5, 0.3)  # how close each retry's candidates stay to the anchor


def checked_flips(
    generator, labeler, steerer, z, y, rng=None, retries: int = 8, candidates: int = 64
):
    """Counterfactual twins checked by the labeler itself: synthesize, relabel, retry, drop.

    A twin whose image the labeler does not read as the requested value is retried up to
    ``retries`` times: a classifier steerer proposes, around the anchor, the most likely of
    ``candidates`` prior-preserving perturbations ``rho z + sqrt(1 - rho^2) eps`` (rho falling
    from 0.95 to 0.3, then staying there, so the twin stays as close as it can); a linear steerer
    has nothing else to
    propose. Twins still unconfirmed are dropped. Returns ``(twins, values, kept [N] bool, cost)``;
    ``cost`` counts the syntheses and labeler calls per kept twin.
    """
    labelers = dict(labeler) if isinstance(labeler, dict) else {"protected": labeler}
    flipped = steerer.flip(z, y, rng)
    twins, values = flipped.latents, flipped.values
    wanted = steerer.decode_joint(values.cpu())
    if len(wanted) == 1 and len(labelers) == 1:  # one attribute: its labeler, whatever its name
        wanted = {next(iter(labelers)): values.cpu()}
    if set(wanted) != set(labelers):
        raise ValueError(
            f"labeler must name the steerer's attributes {sorted(wanted)}, got {sorted(labelers)}"
        )
    anchors, twins, y = z.cpu(), twins.cpu().clone(), y.cpu()
    kept = torch.zeros(len(z), dtype=torch.bool)
    pending, syntheses = torch.arange(len(z)), 0
    for attempt in range(retries + 1):
        images = generator.synthesize(
            twins[pending].to(generator.device), y[pending].to(generator.device)
        )
        syntheses += len(pending)
        ok = torch.ones(len(pending), dtype=torch.bool)
        for name, f in labelers.items():
            ok &= torch.as_tensor(f(images)).cpu() == wanted[name][pending]
        kept[pending[ok]] = True
        pending = pending[~ok]
        if attempt == retries or len(pending) == 0:
            break
        rho = RETRY_RHOS[min(attempt, len(RETRY_RHOS) - 1)]
        proposed = steerer.propose_twins(
            anchors[pending], y[pending], values.cpu()[pending], rho, candidates, rng
        )
        if proposed is None:  # a linear steerer has nothing else to propose
            break
        twins[pending] = proposed.cpu()
    n_kept = int(kept.sum())
    cost = {
        "n": len(z),
        "kept": n_kept,
        "syntheses": syntheses,
        "syntheses_per_kept": syntheses / max(n_kept, 1),
        "kept_share": n_kept / len(z),
    }
    return twins.to(z.device), values, kept, cost
