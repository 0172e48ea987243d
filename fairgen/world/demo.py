"""The end-to-end demo: the seed paper's result in miniature, with fairness on top.

One encoder recipe is trained for the same number of steps on up to five sources, then audited (the
quick preset runs (a), (c) and (d), which carry the comparison's directions; ``--full`` all five):

(a) real biased world data (the split the embedded generator learned from, rho = 0.9)
(b) real balanced world data (the oracle)
(c) the raw embedded generator stream
(d) the steered stream (texture balanced per class before synthesis)
(e) the steered stream with counterfactual views (each positive pair differs in texture)

Audits run on real world images: the target (shape) linear probe is fitted on a *biased* labelled
split (the downstream user's data) and evaluated on a balanced test split; protected (texture)
leakage is measured on the balanced test split. Each arm's backbone is audited twice: as trained,
and after a texture eraser (LEACE, `fairgen.contrastive.erase`) fitted on its features of steered
generator images labelled by the texture judge, the same images for every arm. Balancing the stream
changes what the encoder relies on; only an edit of the features removes what they carry.

The quick preset uses SupCon with the source's class labels, a small CNN and AdamW: on a 2-core CPU
plain SimCLR learns shape too slowly, and at 400 steps neither SGD nor AdamW got past a balanced
shape probe of about 0.76 while AdamW at 800 steps reached 0.95. On world-sprites-z128, 600 steps
and 99 permutations keep every direction (steered 0.885 against biased real 0.541, EO 0.291 against
0.987) in 5.1 minutes, where 800 steps and 199 permutations took 7.0 (steered 0.968)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import torch

from plumbing.tables import cramers_v, cramers_v_corrected

from .render import TEXTURES, World

PRESETS_DIR = Path(__file__).parent / "presets"  # quick.yaml, full.yaml and one file per arm
PRESET_ARMS = {  # the arms each preset runs by default
    "quick": ("a_real_biased", "c_generator_raw", "d_generator_steered"),
    "full": None,  # all five
}
ARMS = {
    "a_real_biased": "real biased data",
    "b_real_balanced": "real balanced data (oracle)",
    "c_generator_raw": "raw generator stream",
    "d_generator_steered": "steered stream",
    "e_steered_counterfactual": "steered + counterfactual views",
}
GENERATOR_ARMS = ("c_generator_raw", "d_generator_steered", "e_steered_counterfactual")


class RealViews:
    """Batches of V copies of real images (the trainer's augmentation makes them differ)."""

    def __init__(self, sample, batch_size: int, views: int = 2, seed: int = 0):
        self.sample, self.batch_size, self.views = sample, batch_size, views
        self.rng = torch.Generator().manual_seed(seed)

    def __iter__(self):
        while True:
            index = torch.randint(len(self.sample), (self.batch_size,), generator=self.rng)
            images = self.sample.images[index]
            yield {
                "views": torch.stack([images] * self.views, 1),
                "labels": self.sample.labels("shape")[index],
            }


def demo_run_config(preset: str, arm: str | None = None, overrides: dict | None = None):
    """The ``RunConfig`` of one arm of a preset: ``presets/PRESET.yaml`` (shared by every arm), then
    ``presets/ARM.yaml`` (the arm's stream), then ``overrides`` (``load_run_config``'s form)."""
    from ..run_config import load_run_config

    if preset not in PRESET_ARMS:
        raise ValueError(f"preset must be one of {sorted(PRESET_ARMS)}, got {preset!r}")
    files = [PRESETS_DIR / f"{preset}.yaml"] + ([PRESETS_DIR / f"{arm}.yaml"] if arm else [])
    return load_run_config(files, overrides)


def seed_overrides(seed: int) -> dict:
    """Overrides that give every section of a demo run the one ``seed``."""
    return {section: {"seed": seed} for section in ("stream", "train", "steer", "audit")}


def stream_settings(run) -> dict:
    """What ``make_spec`` gets for a generator arm (and whether it is steered by the demo's
    card)."""
    stream = run.stream
    return {
        "views": stream.views,
        "augment": stream.augment,
        "seed": stream.seed,
        "steered": stream.steered,
    }


def _stream_sources(generator, card, preset: str, overrides, batch_size: int, device):
    from ..packaging import make_spec
    from ..stream import Stream

    specs = {}
    for name in GENERATOR_ARMS:
        settings = stream_settings(demo_run_config(preset, name, overrides))
        eraser = card if settings.pop("steered") else None
        specs[name] = make_spec(generator, eraser=eraser, **settings)
    return {
        name: (spec, Stream.from_spec(spec, batch_size, device, generator=generator))
        for name, spec in specs.items()
    }


def _stream_cramers_v(stream, judge, n: int) -> tuple[float, float]:
    """V(class, judged texture), plain and bias-corrected, over the anchors' first views of a
    stream."""
    classes, textures, seen = [], [], 0
    while seen < n:
        batch = stream.next_batch()
        classes.append(batch["labels"].cpu())
        textures.append(judge.predict(batch["views"][:, 0]).cpu())
        seen += len(batch["labels"])
    classes, textures = torch.cat(classes).numpy(), torch.cat(textures).numpy()
    return cramers_v(classes, textures), cramers_v_corrected(classes, textures)


def run_demo(
    preset: str = "quick",
    out: str | Path = "demo_out",
    device="cpu",
    arms=None,
    progress=True,
    overrides: dict | None = None,
) -> pd.DataFrame:
    """Train and audit every arm; write the table and reports under ``out``; return the table.

    ``overrides`` change the preset's settings, in ``load_run_config``'s form (``{"train":
    {"steps": 3}}``); the preset name is still recorded.
    """
    import steering

    from ..contrastive import Trainer
    from ..generators import load_generator
    from ..stream import Stream
    from .audit import world_audit_splits
    from .judges import load_judges
    from .recipe import RecipeConfig, training_split

    run = demo_run_config(preset, overrides=overrides)  # what every arm shares
    stream, train, audit = run.stream, run.train, run.audit
    arms = list(PRESET_ARMS[preset] or ARMS) if arms is None else arms
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise ValueError(f"arms must be among {list(ARMS)}, got {unknown}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    torch.manual_seed(train.seed)

    generator = load_generator("world-sprites-z128", device=device)
    judges = load_judges(device=device)
    world = World(32)
    biased = training_split(RecipeConfig())  # what the generator learned from
    sources = {  # the real splits, by the source name the arm files give
        "real-biased": biased,
        "real-balanced": world.sample(stream.n, seed=stream.seed + 11, bias=0.0),
    }
    splits = world_audit_splits(audit.n_probe, audit.n_test, audit.seed)  # as `fairgen audit`

    print(f"[demo] fitting the balance steerer on {run.steer.n} judged samples ...", flush=True)
    steerer, _ = steering.fit_steerer(
        generator,
        judges["texture"].predict,
        n=run.steer.n,
        mode=run.steer.mode,
        method=run.steer.method,
        seed=run.steer.seed,
        progress=progress,
    )
    card = steering.save_card(
        steerer,
        out / "eraser_card",
        {
            "generator": {"name": generator.name, "sha256": generator.checksum},
            "protected": "texture",
            "labeler": "fairgen.judges:texture",
            "n": run.steer.n,
            "seed": run.steer.seed,
        },
    )
    streams = _stream_sources(generator, card, preset, overrides, train.batch_size, device)
    eraser_images = _eraser_images(streams["d_generator_steered"][0], generator, audit, device)
    memo = _memorisation(generator, biased, world, audit, out)
    print(
        f"[demo] memorisation: near-copy share {memo.near_copy_share:.4f} (held-out real "
        f"{memo.heldout_near_copy_share:.4f}), "
        f"Mann-Whitney p {memo.mann_whitney_p:.3g}, memorised: {memo.memorised}",
        flush=True,
    )

    rows = []
    for arm in arms:
        print(
            f"[demo] {arm}: {ARMS[arm]} - {train.total_steps} SupCon steps, batch "
            f"{train.batch_size}",
            flush=True,
        )
        arm_run = demo_run_config(preset, arm, overrides)
        real = arm_run.stream.source != "generator"
        trainer = Trainer(arm_run.train.train_config(progress=progress), device)
        if real:
            split = sources[arm_run.stream.source]
            batches, stream_v = (
                RealViews(split, train.batch_size, seed=stream.seed),
                split.cramers_v(),
            )
            stream_v_corrected = cramers_v_corrected(
                split.factors["shape"].numpy(), split.factors["texture"].numpy()
            )
        else:
            spec, batches = streams[arm]
            spec.save(out / f"{arm}.stream.json")
        tic = time.time()
        trainer.fit(batches, steps=train.total_steps)
        train_seconds = time.time() - tic
        if not real:
            audit_stream = Stream.from_spec(
                streams[arm][0], train.batch_size, device, generator=generator, start_step=10**6
            )
            stream_v, stream_v_corrected = _stream_cramers_v(
                audit_stream, judges["texture"], audit.stream_n
            )
        trainer.save_encoder(out / f"{arm}.encoder.safetensors")
        eraser = _feature_eraser(
            trainer.encoder, eraser_images, judges["texture"], arm, out, progress
        )
        row = {"arm": arm}
        row.update(_audit_spaces(arm, trainer.encoder, eraser, splits, audit, device, out))
        row.update(
            stream_cramers_v=float(stream_v),
            stream_cramers_v_corrected=float(stream_v_corrected),
            train_seconds=float(train_seconds),
        )
        rows.append(row)
        print(
            f"[demo] {arm}: "
            + ", ".join(f"{k}={v:.3f}" for k, v in row.items() if isinstance(v, float)),
            flush=True,
        )

    table = pd.DataFrame(rows).set_index("arm")
    from plumbing.outputs import replace_file

    replace_file(out / "table.csv", table.to_csv().encode())  # each file new and renamed into place
    replace_file(
        out / "table.md",
        (_markdown(table, run, preset, time.time() - started) + _memo_line(memo)).encode(),
    )
    replace_file(
        out / "config.json", json.dumps({"preset": preset, **run.to_dict()}, indent=2).encode()
    )
    from ..plotting import plot_arms

    plot_arms(table, out / "table.png", ARMS, protected="texture")
    return table


def _feature_eraser(encoder, eraser_images, judge, arm: str, out: Path, progress: bool):
    """A texture eraser (LEACE) fitted on the encoder's features of the steered images; saved."""
    from ..contrastive.erase import ERASER_START_STEP, fit_feature_eraser, save_feature_eraser

    eraser = fit_feature_eraser(
        encoder,
        eraser_images.split(512),
        judge.predict,
        num_classes=len(TEXTURES),
        n=len(eraser_images),
        progress=progress,
    )
    save_feature_eraser(
        eraser,
        out / f"{arm}.feature_eraser.safetensors",
        {
            "encoder": f"{arm}.encoder.safetensors",
            "protected": "texture",
            "labeler": "fairgen.judges:texture",
            "fitted_on": f"{len(eraser_images)} anchors of the steered stream "
            f"d_generator_steered, start step {ERASER_START_STEP}",
        },
    )
    return eraser


def _audit_spaces(arm: str, encoder, eraser, splits, audit, device, out: Path) -> dict:
    """The table's numbers for one arm: its features as trained and erased, each audited."""
    from ..contrastive.evaluate import extract_features
    from .audit import audit_world_features

    probe_split, test_split = splits
    features = [extract_features(encoder.eval(), s.images.to(device)) for s in splits]
    spaces = {
        "backbone": features,
        "erased": [eraser(f) for f in features],
    }  # = ErasedEncoder's output
    row = {}
    for space, (train_x, test_x) in spaces.items():
        train_x, test_x = train_x.cpu().numpy(), test_x.cpu().numpy()
        report = audit_world_features(
            train_x,
            test_x,
            probe_split,
            test_split,
            seed=audit.seed,
            n_permutations=audit.n_permutations
            if space == "backbone"
            else audit.erased_permutations,
            n_bootstrap=audit.n_bootstrap,
            title=f"{arm}: {ARMS[arm]} ({space})",
            probe="linear",
            pca=audit.leakage_pca,
            n_repeats=1,
            max_iter=audit.leakage_max_iter,
        )
        report.save(out / arm / space)
        row.update(_row(space, report.to_dict()))
    return row


def _eraser_images(spec, generator, audit, device) -> torch.Tensor:
    """Anchors of the steered stream from a segment no arm trains on or audits (its own start
    step)."""
    from ..contrastive.erase import ERASER_START_STEP
    from ..stream import Stream

    stream = Stream.from_spec(spec, 512, device, generator=generator, start_step=ERASER_START_STEP)
    batches = [stream.next_batch()["views"][:, 0] for _ in range(-(-audit.eraser_n // 512))]
    return torch.cat(batches)[: audit.eraser_n]


def _memorisation(generator, train_split, world, audit, out: Path):
    """Does the generator copy its training images? Nearest-neighbour distances in pixel space."""
    import audits

    n = min(2000, audit.n_test)
    rng = torch.Generator().manual_seed(audit.seed + 21)
    z = generator.sample_latents(n, generator=rng)
    y = torch.randint(generator.num_classes, (n,), generator=rng).to(generator.device)
    generated = generator.synthesize(z, y).flatten(1).cpu().numpy()
    heldout = world.sample(n, seed=audit.seed + 22, bias=train_split.bias).images.flatten(1).numpy()
    result = audits.memorisation(generated, train_split.images.flatten(1).numpy(), heldout)
    report = audits.AuditReport("world-sprites-z128 against its training split (pixel space)")
    report.add("generator memorisation", result)
    report.save(out / "memorisation")
    return result


def _memo_line(memo) -> str:
    return (
        "\nMemorisation (pixel space, 2,000 generated vs 2,000 held-out real against the 20,000 "
        "training images): "
        f"near-copy share {memo.near_copy_share:.4f} vs held-out "
        f"{memo.heldout_near_copy_share:.4f}, "
        f"Mann-Whitney p {memo.mann_whitney_p:.3g}, flagged: {memo.memorised}.\n"
    )


def _row(space: str, summary: dict) -> dict:
    """One feature space's numbers, with column names prefixed by the space ("" for the
    backbone)."""
    sections = summary["sections"]
    leak = sections["protected leakage"]
    fair = sections["target fairness"]["summary"]
    prefix = "" if space == "backbone" else f"{space}_"
    values = {
        "target_acc": fair["accuracy"],
        "leakage_bacc": leak["balanced_accuracy"],
        "leakage_ci_low": leak["ci_low"],
        "leakage_ci_high": leak["ci_high"],
        "leakage_p": leak["p_value"],
        "eo_diff": fair["equalized_odds_difference"],
        "eo_ci_low": fair["equalized_odds_ci_low"],
        "eo_ci_high": fair["equalized_odds_ci_high"],
    }
    row = {prefix + k: float("nan") if v is None else float(v) for k, v in values.items()}
    if not prefix:
        row["chance"] = float(leak["chance"])
    return row


def _markdown(table: pd.DataFrame, run, preset: str, seconds: float) -> str:
    train = run.train
    lines = [
        f"# fairgen demo ({preset} preset, {seconds / 60:.1f} min)",
        "",
        f"{train.total_steps} SupCon steps per arm ({train.optimizer}, lr {train.lr:g}), "
        f"batch {train.batch_size}, encoder {train.encoder}. "
        "Target: shape (linear probe fitted on a biased labelled split, tested on a balanced "
        "split). "
        "Protected: background texture. Chance for texture leakage: 0.25.",
    ]
    erased = (
        f"backbone features after the texture eraser (LEACE fitted on {run.audit.eraser_n:,} "
        "steered generator "
        "images, texture judge labels)"
    )
    for prefix, space in (
        ("", "backbone features as trained (what downstream users keep)"),
        ("erased_", erased),
    ):
        lines += ["", f"**{space}**", "", *_table_header()]
        for arm, r in table.iterrows():
            g = {k[len(prefix) :]: v for k, v in r.items() if k.startswith(prefix)} if prefix else r
            lines.append(
                f"| {ARMS[arm]} | {g['target_acc']:.3f} | {g['leakage_bacc']:.3f} "
                f"[{g['leakage_ci_low']:.3f}, {g['leakage_ci_high']:.3f}] "
                f"| {g['leakage_p']:.3f} | {g['eo_diff']:.3f} [{g['eo_ci_low']:.3f}, "
                f"{g['eo_ci_high']:.3f}] "
                f"| {r.stream_cramers_v:.3f} ({r.stream_cramers_v_corrected:.3f}) |"
            )
    return "\n".join(lines) + "\n"


def _table_header() -> list[str]:
    return [
        "| arm | target acc | texture leakage (bal. acc, 95% CI) | p | EO difference (95% CI) | "
        "stream V (bias-corrected) |",
        "|---|---|---|---|---|---|",
    ]
