"""The world audit: an encoder's features on real world images, target = class factor, protected =
the world's protected factor; optionally also after a feature eraser fitted on a steered stream."""

from __future__ import annotations

from pathlib import Path


def audit_encoder_on_world(encoder_path, out, device="cpu", seed: int = 0, bias: float = 0.9, n_probe: int = 4000,
                           n_test: int = 4000, erase_with=None, eraser_n: int = 4096) -> dict:
    """Audit ``encoder_path`` on world images; writes one report folder per feature space."""
    import audits

    from ..contrastive import load_encoder
    from ..contrastive.erase import (
        ERASER_START_STEP,
        ErasedEncoder,
        fit_feature_eraser,
        save_feature_eraser,
    )
    from ..contrastive.evaluate import extract_features
    from ..stream import Stream, StreamSpec
    from . import CLASS_FACTOR, DEFAULT_PROTECTED
    from .judges import load_judges
    from .render import CATEGORICAL, World

    encoder = load_encoder(encoder_path, device)
    spaces = {"": encoder}
    if erase_with:
        stream = Stream(StreamSpec.load(erase_with), 512, device, start_step=ERASER_START_STEP)
        judge = load_judges(device=device)[DEFAULT_PROTECTED]
        eraser = fit_feature_eraser(encoder, stream, judge.predict, len(CATEGORICAL[DEFAULT_PROTECTED]), n=eraser_n)
        path = save_feature_eraser(eraser, Path(out) / "feature_eraser.safetensors", {
            "encoder": str(encoder_path), "stream": str(erase_with), "protected": DEFAULT_PROTECTED, "n": eraser_n,
        })
        print(f"fitted a {DEFAULT_PROTECTED} eraser on {eraser_n} images of {erase_with}; wrote {path}")
        spaces["erased"] = ErasedEncoder(encoder, eraser)
    world = World(32)
    probe = world.sample(n_probe, seed=seed + 1, bias=bias)
    test = world.sample(n_test, seed=seed + 2, bias=0.0)
    reports = {}
    for space, network in spaces.items():
        train_x = extract_features(network, probe.images.to(device)).cpu().numpy()
        test_x = extract_features(network, test.images.to(device)).cpu().numpy()
        report = audits.audit_representation(
            train_x, probe.labels(CLASS_FACTOR).numpy(), test_x, test.labels(CLASS_FACTOR).numpy(),
            test.labels(DEFAULT_PROTECTED).numpy(), seed=seed,
            title=f"audit of {encoder_path}" + (f" ({DEFAULT_PROTECTED} erased)" if space else ""),
        )
        report.save(Path(out) / space)
        print(report.to_markdown())
        reports[space or "trained"] = report
    print(f"wrote {out}")
    return reports
