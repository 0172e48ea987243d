"""The pretrained face GAN (``face-gan-64``, gan-face-generate 1.1.1) raw and steered, side by side.

    OMP_NUM_THREADS=1 python benchmarks/face_gan.py --fit-n 10000 --repeats 5   # CPU, one thread;
    ~15 min on a busy 2-core machine
    OMP_NUM_THREADS=1 python benchmarks/face_gan.py --raw-only      # no steering: shares, grid,
    raw stream
    python benchmarks/face_gan.py --audit-set DIR --n 2000          # write held-out labelled faces
    for `fairgen audit`

Protected attribute: ``face:lightness`` (the central face patch is dark; a minority of the prior);
target kept: ``face:background`` (light background). Reports, in one run:

* the minority (dark-face) share of ``--eval-n`` raw prior samples, and of as many steered samples
  (``steering.fit_steerer(..., method="confirmed")`` fitted on ``--fit-n`` labelled samples), each
  with a Wilson 95% CI; the background share and P(dark | background) before and after;
* syntheses per kept sample of the steered draw;
* stream throughput (anchors/s, 2 views each, 64 px, "light" augmentation), raw and steered, timed
  in turns (round-robin) so a busy machine slows both alike;
* grids ``docs/face-gan-raw.png`` and ``docs/face-gan-steered.png``, every image captioned with its
labels.

The images come from a GAN trained on DigiFace-1M, which is under its own research licence.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from scipy.stats import binomtest
from timing import side_by_side

from fairgen.generators import load_generator
from fairgen.generators.face_gan import LICENCE
from fairgen.labelers import load_labeler
from fairgen.plotting import save_grid
from fairgen.stream import Stream, make_spec

PROTECTED, KEEP = "face:lightness", "face:background"
DOCS = Path(__file__).resolve().parent.parent / "docs"


def labelled(generator, labelers, z: torch.Tensor, batch: int = 500):
    """Images of ``z`` (batched) and each labeler's labels."""
    images = torch.cat([generator.synthesize(z[i : i + batch]) for i in range(0, len(z), batch)])
    return images, {name: lab(images) for name, lab in labelers.items()}


def share(labels: torch.Tensor, value: int = 1) -> dict:
    """Share of ``value`` with a Wilson 95% interval."""
    k, n = int((labels == value).sum()), len(labels)
    ci = binomtest(k, n).proportion_ci(0.95, method="wilson")
    return {"k": k, "n": n, "share": k / n, "ci": [ci.low, ci.high]}


def summary(labels: dict) -> dict:
    dark, light_bg = labels[PROTECTED], labels[KEEP]
    return {
        "dark": share(dark),
        "light_background": share(light_bg),
        "dark_given_light_background": share(dark[light_bg == 1]),
        "dark_given_dark_background": share(dark[light_bg == 0]),
    }


def captions(labels: dict) -> list[str]:
    face = ["dark face" if v else "light face" for v in labels[PROTECTED].tolist()]
    back = ["light bg" if v else "dark bg" for v in labels[KEEP].tolist()]
    return [f"{f}, {b}" for f, b in zip(face, back, strict=True)]


def grid(images, labels: dict, path: Path, title: str) -> Path:
    n = len(images)
    dark = int(labels[PROTECTED].sum())
    heading = f"{title}: {dark}/{n} dark faces\n(images: {LICENCE})"
    return save_grid(images, path, nrow=8, captions=captions(labels), title=heading)


def line(name: str, s: dict) -> str:
    return (
        f"  {name:<40} {100 * s['share']:6.1f}%  [{100 * s['ci'][0]:.1f}, "
        f"{100 * s['ci'][1]:.1f}]  ({s['k']}/{s['n']})"
    )


def write_audit_set(generator, labelers, folder: Path, n: int, seed: int) -> None:
    """Held-out raw prior faces as ``folder/lightness=<v>/background=<v>/<i>.png`` (columns for
    `fairgen audit`)."""
    from torchvision.io import write_png

    z = generator.sample_latents(n, torch.Generator().manual_seed(seed))
    images, labels = labelled(generator, labelers, z)
    light = ["light", "dark"]
    back = ["dark", "light"]
    for i, image in enumerate(images):
        sub = (
            folder
            / f"lightness={light[int(labels[PROTECTED][i])]}"
            / f"background={back[int(labels[KEEP][i])]}"
        )
        sub.mkdir(parents=True, exist_ok=True)
        write_png((image * 255).round().to(torch.uint8), str(sub / f"{i:06d}.png"))
    print(f"wrote {n} labelled faces under {folder} (seed {seed}; {LICENCE})")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--fit-n", type=int, default=20_000, help="labelled samples the steerer is fitted on"
    )
    parser.add_argument(
        "--eval-n",
        type=int,
        default=10_000,
        help="raw and steered samples the shares are measured on",
    )
    parser.add_argument(
        "--batch-size", type=int, default=128, help="stream anchors per step (2 views each)"
    )
    parser.add_argument("--repeats", type=int, default=10, help="timed stream steps per variant")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--raw-only", action="store_true", help="skip steering")
    parser.add_argument(
        "--audit-set", metavar="DIR", help="only write held-out labelled raw faces here, then stop"
    )
    parser.add_argument("--n", type=int, default=2000, help="faces in --audit-set")
    parser.add_argument("--docs", type=Path, default=DOCS, help="folder for the grids")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    generator = load_generator("face-gan-64")
    labelers = {PROTECTED: load_labeler(PROTECTED), KEEP: load_labeler(KEEP)}
    if args.audit_set:
        write_audit_set(generator, labelers, Path(args.audit_set), args.n, seed=10_000 + args.seed)
        return
    print(
        f"torch {torch.__version__}, cpu, {torch.get_num_threads()} thread; {generator!r}; "
        f"{LICENCE}"
    )
    results = {"generator": generator.name, "sha256": generator.checksum}

    start = time.perf_counter()
    z = generator.sample_latents(args.eval_n, torch.Generator().manual_seed(args.seed + 1))
    images, labels = labelled(generator, labelers, z)
    results["raw"] = summary(labels)
    results["raw"]["seconds"] = time.perf_counter() - start
    grid(
        images[:64],
        {k: v[:64] for k, v in labels.items()},
        args.docs / "face-gan-raw.png",
        "face-gan-64, raw prior (seed 1)",
    )

    specs = {
        "raw": make_spec(
            generator,
            views={"kinds": ["anchor", "neighbour"], "sigma": 0.5, "truncate": 2.0},
            augment="light",
            resolution=64,
            seed=args.seed,
        )
    }
    folder = tempfile.TemporaryDirectory()
    if not args.raw_only:
        import steering

        start = time.perf_counter()
        steerer, _ = steering.fit_steerer(
            generator,
            labelers[PROTECTED],
            n=args.fit_n,
            method="confirmed",
            keep_labeler=labelers[KEEP],
            seed=args.seed,
            progress=False,
        )
        results["fit_seconds"] = time.perf_counter() - start
        start = time.perf_counter()
        draw = steerer.draw(
            generator,
            labelers[PROTECTED],
            n=args.eval_n,
            seed=args.seed + 1,
            keep_labeler=labelers[KEEP],
        )
        results["draw_seconds"] = time.perf_counter() - start
        steered = {
            name: lab(draw.images) for name, lab in labelers.items()
        }  # re-labelled: the guarantee, checked
        results["steered"] = summary(steered)
        results["syntheses_per_kept"] = draw.syntheses / args.eval_n
        results["labeler_calls_per_kept"] = draw.labeler_calls / args.eval_n
        results["rejection_syntheses_per_kept"] = steerer.costs_.get("rejection_syntheses_per_kept")
        print(
            json.dumps(
                {
                    k: results[k]
                    for k in ("steered", "syntheses_per_kept", "fit_seconds", "draw_seconds")
                }
            )
        )
        grid(
            draw.images[:64],
            {k: v[:64] for k, v in steered.items()},
            args.docs / "face-gan-steered.png",
            "face-gan-64, steered (confirmed balance of face:lightness, keeping face:background)",
        )
        provenance = {
            "generator": {"name": generator.name, "sha256": generator.checksum},
            "labelers": {"protected": PROTECTED, "keep": KEEP},
        }  # the stream loads these by name
        card = steering.save_card(steerer, f"{folder.name}/face-balance", provenance)
        specs["steered"] = make_spec(
            generator,
            eraser=str(card),
            views=specs["raw"].views,
            augment="light",
            resolution=64,
            seed=args.seed,
        )

    confirming = {
        "protected": labelers[PROTECTED],
        "keep": labelers[KEEP],
    }  # a card never runs what it names
    streams = {
        name: Stream.from_spec(
            spec,
            args.batch_size,
            "cpu",
            generator=generator,
            labeler=confirming if name == "steered" else None,
        )
        for name, spec in specs.items()
    }
    seconds = side_by_side(
        {name: s.next_batch for name, s in streams.items()}, torch.device("cpu"), 1, args.repeats
    )
    results["stream_anchors_per_s"] = {name: args.batch_size / t for name, t in seconds.items()}
    folder.cleanup()

    print(f"\n  dark-face (minority) share, Wilson 95% CI, {args.eval_n} samples each")
    for part in ("raw", "steered"):
        if part in results:
            for key, s in results[part].items():
                if isinstance(s, dict):
                    print(line(f"{part}: {key.replace('_', ' ')}", s))
    if "syntheses_per_kept" in results:
        print(
            f"  steered draw: {results['syntheses_per_kept']:.2f} syntheses and "
            f"{results['labeler_calls_per_kept']:.2f} "
            "labeler calls per kept sample (plain rejection, fit's estimate: "
            f"{results['rejection_syntheses_per_kept']}) "
            f"(fit {results['fit_seconds']:.0f} s on {args.fit_n}, draw "
            f"{results['draw_seconds']:.0f} s)"
        )
    print(
        f"\n  stream, batch {args.batch_size} x 2 views, 64 px, light augmentation, median of "
        f"{args.repeats} steps"
    )
    rates = results["stream_anchors_per_s"]
    for name, rate in rates.items():
        print(f"  {name:<10} {rate:8.1f} anchors/s  x{rate / rates['raw']:.2f} of raw")
    print(
        f"  (generator alone: {args.eval_n / results['raw']['seconds']:.0f} images/s, labelled, "
        "batch 500)"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
