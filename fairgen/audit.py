"""Audit any encoder on any labelled images: leakage of each protected column (and of their
intersection) and group fairness of a target probe, with the report's provenance.
``audit_encoder`` returns the results as objects; ``audit_encoder_on_data`` writes them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def load_audit_encoder(
    spec: str, weights=None, image_size: int = 224, device="cpu"
) -> tuple[torch.nn.Module, dict]:
    """A fairgen encoder file, or ``torchvision:ARCH`` / ``timm:ARCH`` with local ``weights``; and
    its provenance."""
    from plumbing.files import sha256_file

    from .models import LIBRARIES, load_encoder_by_name

    if spec.split(":")[0] in LIBRARIES and not Path(spec).exists():
        if weights is None:
            raise ValueError(
                f"encoder: {spec} needs --encoder-weights FILE (fairgen never downloads weights)"
            )
        model = load_encoder_by_name(spec, weights, image_size=image_size, device=device)
        return model, {
            "name": spec,
            "weights": str(weights),
            "sha256": sha256_file(weights),
            "image_size": image_size,
        }
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(
            f"encoder: {spec} is neither an encoder file from `fairgen train` nor "
            f"{' / '.join(lib + ':ARCH' for lib in LIBRARIES)}"
        )
    from plumbing.files import read_safetensors_metadata

    from .contrastive import load_encoder

    if "config" not in read_safetensors_metadata(path, "encoder"):
        raise ValueError(
            f"encoder: {path} is a safetensors file but not a fairgen encoder (no config in its "
            "metadata)"
        )
    try:
        model = load_encoder(path, device)
    except (RuntimeError, KeyError) as error:
        raise ValueError(f"encoder: {path} does not load as a fairgen encoder ({error})") from None
    return model, {"name": str(path), "sha256": sha256_file(path)}


@torch.no_grad()
def features_of(encoder: torch.nn.Module, batches, device="cpu") -> np.ndarray:
    """Encoder features of every batch of images, as one float32 array."""
    encoder.eval()
    parts = [encoder(batch.to(device)).float().flatten(1).cpu() for batch in batches]
    return torch.cat(parts).numpy()


def audit_encoder_on_data(
    encoder: str,
    data: str,
    target: str,
    protected: list[str],
    out,
    *,
    encoder_weights=None,
    image_size: int = 224,
    resolution: int | None = None,
    test_fraction: float = 0.5,
    seed: int = 0,
    probe: str = "lda",
    n_permutations: int = 199,
    n_bootstrap: int = 500,
    n_repeats: int = 1,
    pca: int | None = None,
    n_jobs: int = 1,
    device="cpu",
    progress: bool = True,
    max_pixels: int | None = None,
    verified=None,
):
    """Split ``data`` (stratified by ``target``), fit the target probe on one part, audit the other.
    ``out`` is locked from the start (one writer) and replaced whole at the end. ``verified``: a
    verified set file (``fairgen review``) whose attribute is one of ``protected``, a column of
    labeler outputs; its sections are added corrected for the labeler's error."""
    from audits.report import REPLACEABLE
    from plumbing.outputs import check_replaceable, output_lock

    check_replaceable(out, REPLACEABLE)
    with output_lock(out):
        result, add_estimated = _audit_on_data(
            encoder,
            data,
            target,
            protected,
            out,
            encoder_weights,
            image_size,
            resolution,
            test_fraction,
            seed,
            probe,
            n_permutations,
            n_bootstrap,
            n_repeats,
            pca,
            n_jobs,
            device,
            progress,
            max_pixels,
            verified,
        )
        report = result.to_report(f"audit of {encoder} on {data}")
        if add_estimated is not None:
            add_estimated(report)
        report.save(out)
        return report


def audit_encoder(
    encoder: str,
    data: str,
    target: str,
    protected: list[str],
    *,
    encoder_weights=None,
    image_size: int = 224,
    resolution: int | None = None,
    test_fraction: float = 0.5,
    seed: int = 0,
    probe: str = "lda",
    n_permutations: int = 199,
    n_bootstrap: int = 500,
    n_repeats: int = 1,
    pca: int | None = None,
    n_jobs: int = 1,
    device="cpu",
    progress: bool = False,
    max_pixels: int | None = None,
):
    """``audit_encoder_on_data`` without touching the disk: an ``audits.AuditResult`` whose
    ``leakage`` and ``fairness`` are keyed by column name (``"hair"``, ``("hair", "gender")``);
    ``.to_report(title).save(dir)`` writes the same files as the command line."""
    result, _ = _audit_on_data(
        encoder,
        data,
        target,
        list(protected),
        None,
        encoder_weights,
        image_size,
        resolution,
        test_fraction,
        seed,
        probe,
        n_permutations,
        n_bootstrap,
        n_repeats,
        pca,
        n_jobs,
        device,
        progress,
        max_pixels,
    )
    return result


def _audit_on_data(
    encoder,
    data,
    target,
    protected,
    out,
    encoder_weights,
    image_size,
    resolution,
    test_fraction,
    seed,
    probe,
    n_permutations,
    n_bootstrap,
    n_repeats,
    pca,
    n_jobs,
    device,
    progress,
    max_pixels,
    verified=None,
):
    from sklearn.model_selection import train_test_split

    import audits

    from . import __version__
    from .data import load_data

    if not protected:
        raise ValueError("--protected: name at least one protected column")
    if target in protected:
        raise ValueError(
            f"--target {target!r} is also given as --protected; audit a different column"
        )
    if not 0 < test_fraction < 1:
        raise ValueError(f"--test-fraction must be in (0, 1), got {test_fraction}")
    verified_set = _verified_for(verified, protected)
    from .data.images import MAX_PIXELS

    table = load_data(
        data,
        columns=[target, *protected],
        max_pixels=MAX_PIXELS if max_pixels is None else max_pixels,
    )
    y = table.column(target, "--target")
    groups = {name: table.column(name, "--protected") for name in protected}
    model, encoder_info = load_audit_encoder(encoder, encoder_weights, image_size, device)
    try:
        train, test = train_test_split(
            np.arange(len(table)), test_size=test_fraction, random_state=seed, stratify=y
        )
    except ValueError as error:
        raise ValueError(
            f"--target {target!r}: cannot split {len(table)} rows into probe and test parts "
            f"({error})"
        ) from None
    x = features_of(model, table.images(resolution, progress=progress), device)
    provenance = {
        "fairgen_version": __version__,
        "encoder": encoder_info,
        "data": table.provenance(),
        "target": target,
        "protected": list(protected),
        "labeler": f"columns of {table.source}",
        "seed": seed,
        "sizes": {"probe_rows": len(train), "test_rows": len(test), "features": int(x.shape[1])},
        "resolution": resolution,
        "probe": probe,
        "n_permutations": n_permutations,
        "n_bootstrap": n_bootstrap,
        "n_repeats": n_repeats,
        "pca": pca,
    }
    result = audits.audit(
        x[train],
        y[train],
        x[test],
        y[test],
        {name: g[test] for name, g in groups.items()},
        probe=probe,
        n_permutations=n_permutations,
        n_bootstrap=n_bootstrap,
        seed=seed,
        pca=pca,
        n_repeats=n_repeats,
        n_jobs=n_jobs,
        progress=progress,
        provenance=provenance,
    )
    if verified_set is None:
        return result, None
    from functools import partial

    from .estimated_audit import add_estimated_sections

    # the corrected sections of the labeler-estimated column, added to the file form
    add_estimated = partial(
        add_estimated_sections,
        verified=verified_set,
        verified_path=verified,
        x_train=x[train],
        y_train=y[train],
        x_test=x[test],
        y_test=y[test],
        column=groups[verified_set.attribute][test],
        probe=probe,
        seed=seed,
        n_bootstrap=n_bootstrap,
    )
    return result, add_estimated


def _verified_for(path, protected: list[str]):
    """The verified set at ``path`` (None without one); its attribute must be a protected column."""
    if path is None:
        return None
    from .verified import read_verified

    verified = read_verified(path)
    if verified.attribute not in protected:
        raise ValueError(
            f"--verified {path} verifies {verified.attribute!r}, which is not among the "
            "--protected "
            f"columns {protected}"
        )
    return verified


def memorisation_in_feature_space(
    generator: str,
    encoder: str,
    train_data: str,
    heldout_data: str,
    out,
    *,
    n: int = 1000,
    encoder_weights=None,
    image_size: int = 224,
    generator_options: dict | None = None,
    pairs: int = 16,
    seed: int = 0,
    device="cpu",
    progress: bool = True,
):
    """Do ``generator``'s samples sit closer to its training images than held-out real ones do, in
    ``encoder``'s feature space? Writes report.json/.md, the distance plot and near_copies.png
    (each generated sample beside its nearest training image, closest first)."""
    import audits
    from audits.report import REPLACEABLE
    from plumbing.outputs import staged_folder

    from . import __version__
    from .data import load_data
    from .generators import load_generator
    from .plotting import save_grid

    model, encoder_info = load_audit_encoder(encoder, encoder_weights, image_size, device)
    gen = load_generator(generator, device=device, **(generator_options or {}))
    train, held = load_data(train_data), load_data(heldout_data)
    rng = torch.Generator().manual_seed(seed)
    z = gen.sample_latents(n, generator=rng)
    y = torch.arange(n) % gen.num_classes if gen.num_classes else None
    samples = torch.cat(
        [
            gen.synthesize(zb, None if y is None else yb.to(gen.device))
            for zb, yb in zip(
                z.split(256), (y if y is not None else torch.zeros(n)).split(256), strict=True
            )
        ]
    ).cpu()
    resolution = gen.resolution
    result = audits.memorisation(
        features_of(model, samples.split(256), device),
        features_of(model, train.images(resolution, progress=progress), device),
        features_of(model, held.images(resolution, progress=progress), device),
    )
    closest = result.closest_pairs(pairs)
    train_images = torch.cat(list(train.subset([j for _, j, _ in closest]).images(resolution)))
    grid = torch.stack(
        [
            t
            for (i, _, _), nearest in zip(closest, train_images, strict=True)
            for t in (samples[i], nearest)
        ]
    )
    captions = [c for i, j, d in closest for c in (f"gen {i}\nd={d:.3g}", f"train {j}")]
    provenance = {
        "fairgen_version": __version__,
        "generator": {
            "name": generator,
            "sha256": gen.checksum,
            "options": generator_options or {},
        },
        "encoder": encoder_info,
        "train_data": train.provenance(),
        "heldout_data": held.provenance(),
        "n_generated": n,
        "seed": seed,
        "feature_space": encoder_info["name"],
    }
    report = audits.AuditReport(
        f"memorisation of {generator} in the feature space of {encoder}", provenance
    )
    report.add("memorisation", result)
    with staged_folder(out, (*REPLACEABLE, "near_copies.png")) as stage:
        save_grid(
            grid,
            stage / "near_copies.png",
            nrow=8,
            captions=captions,
            title="generated (left) beside its nearest training image (right), closest first",
        )
        report.write_into(stage)
    return report
