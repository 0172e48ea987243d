"""The world audit: an encoder's features on real world images, target = class factor, protected =
the world's protected factor, groups and classes by name; optionally also after a feature eraser
fitted on a steered stream. ``fairgen audit --data world`` and the demo share these splits and
this function, so the command reproduces a demo row.
"""

from __future__ import annotations

from pathlib import Path

# The demo quick preset's audit settings: `fairgen audit --data world` uses them unless told
# otherwise.
WORLD_AUDIT_DEFAULTS = dict(
    probe="linear", n_permutations=199, n_bootstrap=300, pca=32, n_repeats=1, max_iter=100
)
PROBE_SEED, TEST_SEED = (
    12,
    13,
)  # offsets from the run's seed of the probe (biased) and test (balanced) splits


def world_audit_splits(n_probe: int, n_test: int, seed: int = 0, bias: float = 0.9):
    """The labelled split the target probe is fitted on (biased) and the balanced test split."""
    from .render import World

    world = World(32)
    return world.sample(n_probe, seed=seed + PROBE_SEED, bias=bias), world.sample(
        n_test, seed=seed + TEST_SEED, bias=0.0
    )


def named(sample, factor: str):
    """A world sample's labels of ``factor`` as value names (so reports name groups and classes)."""
    import numpy as np

    from .render import CATEGORICAL

    return np.asarray(CATEGORICAL[factor], dtype=object)[sample.labels(factor).numpy()]


def audit_world_features(
    train_x,
    test_x,
    probe_split,
    test_split,
    *,
    seed: int = 0,
    title: str = "world audit",
    provenance: dict | None = None,
    n_jobs: int = 1,
    progress: bool = False,
    **settings,
):
    """``audits.audit_representation`` on world splits; ``settings`` default to
    WORLD_AUDIT_DEFAULTS."""
    import audits

    from . import CLASS_FACTOR, DEFAULT_PROTECTED

    options = {**WORLD_AUDIT_DEFAULTS, **settings}
    return audits.audit_representation(
        train_x,
        named(probe_split, CLASS_FACTOR),
        test_x,
        named(test_split, CLASS_FACTOR),
        named(test_split, DEFAULT_PROTECTED),
        seed=seed,
        title=title,
        n_jobs=n_jobs,
        progress=progress,
        provenance=provenance,
        **options,
    )


def audit_encoder_on_world(
    encoder_path,
    out,
    device="cpu",
    seed: int = 0,
    bias: float = 0.9,
    n_probe: int = 4000,
    n_test: int = 4000,
    erase_with=None,
    eraser_n: int = 4096,
    n_jobs: int = 1,
    progress: bool = True,
    **settings,
) -> dict:
    """Audit ``encoder_path`` on world images; writes one report folder per feature space (all of
    them, and the feature eraser, replace ``out`` together: ``plumbing.outputs.staged_folder``)."""
    from audits.report import REPLACEABLE
    from plumbing.outputs import staged_folder

    with staged_folder(out, REPLACEABLE) as stage:  # locks `out` from the start
        reports = _audit_into(
            stage,
            encoder_path,
            device,
            seed,
            bias,
            n_probe,
            n_test,
            erase_with,
            eraser_n,
            n_jobs,
            progress,
            settings,
        )
    print(f"wrote {out}")
    return reports


def _audit_into(
    out,
    encoder_path,
    device,
    seed,
    bias,
    n_probe,
    n_test,
    erase_with,
    eraser_n,
    n_jobs,
    progress,
    settings,
) -> dict:
    from plumbing.files import sha256_file

    from .. import __version__
    from ..contrastive import load_encoder
    from ..contrastive.erase import (
        ERASER_START_STEP,
        ErasedEncoder,
        fit_feature_eraser,
        save_feature_eraser,
    )
    from ..contrastive.evaluate import extract_features
    from ..stream import Stream
    from . import CLASS_FACTOR, DEFAULT_PROTECTED
    from .judges import load_judges
    from .render import CATEGORICAL

    encoder = load_encoder(encoder_path, device)
    spaces = {"": encoder}
    options = {**WORLD_AUDIT_DEFAULTS, **settings}
    provenance = {
        "fairgen_version": __version__,
        "encoder": {"name": str(encoder_path), "sha256": sha256_file(encoder_path)},
        "data": {
            "source": "world",
            "probe_split": {"n": n_probe, "seed": seed + PROBE_SEED, "bias": bias},
            "test_split": {"n": n_test, "seed": seed + TEST_SEED, "bias": 0.0},
            "resolution": 32,
        },
        "target": CLASS_FACTOR,
        "protected": [DEFAULT_PROTECTED],
        "labeler": "world ground truth",
        "seed": seed,
        **options,
    }
    if erase_with:
        stream = Stream.from_spec(erase_with, 512, device, start_step=ERASER_START_STEP)
        judge = load_judges(device=device)[DEFAULT_PROTECTED]
        eraser = fit_feature_eraser(
            encoder, stream, judge.predict, len(CATEGORICAL[DEFAULT_PROTECTED]), n=eraser_n
        )
        path = save_feature_eraser(
            eraser,
            Path(out) / "feature_eraser.safetensors",
            {
                "encoder": str(encoder_path),
                "stream": str(erase_with),
                "protected": DEFAULT_PROTECTED,
                "n": eraser_n,
            },
        )
        print(
            f"fitted a {DEFAULT_PROTECTED} eraser on {eraser_n} images of {erase_with}; "
            f"wrote {path.name} (in the report folder)"
        )
        spaces["erased"] = ErasedEncoder(encoder, eraser)
    probe, test = world_audit_splits(n_probe, n_test, seed, bias)
    reports = {}
    for space, network in spaces.items():
        train_x = extract_features(network, probe.images.to(device)).cpu().numpy()
        test_x = extract_features(network, test.images.to(device)).cpu().numpy()
        extra = (
            {
                "erased_with": {
                    "stream": str(erase_with),
                    "eraser_n": eraser_n,
                    "labeler": f"world:{DEFAULT_PROTECTED}",
                }
            }
            if space
            else {}
        )
        report = audit_world_features(
            train_x,
            test_x,
            probe,
            test,
            seed=seed,
            n_jobs=n_jobs,
            progress=progress,
            title=f"audit of {encoder_path}" + (f" ({DEFAULT_PROTECTED} erased)" if space else ""),
            provenance={**provenance, **extra},
            **settings,
        )
        report.write_into(Path(out) / space)  # the command line prints a summary of it
        reports[space or "trained"] = report
    return reports
