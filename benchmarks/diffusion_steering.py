"""Steering a text-to-image pipeline: what labeler-confirmed balance costs, and whether the initial
noise alone predicts the label (a latent classifier is worth trying only if it does).

    python benchmarks/diffusion_steering.py     # tiny random pipeline, 3 prompts, 4 DDIM steps

On a tiny random pipeline written to a temporary folder (``save_random_pipeline``), the protected
label is a pixel rule: dark = mean luma below the 30% quantile of the pipeline's own images (its
share differs by prompt). Measured side by side in one run, on this CPU:

1. a latent classifier (logistic regression) on held-out samples: accuracy from the initial noise
   alone against the majority label, and from noise + prompt against the prompt alone;
2. images/s of the stream (anchor + renoise views, no augmentation) without steering and with a
   labeler-confirmed balance card (``fit_steerer(method="confirmed")``), their ratio, and the
   confirmed stream's syntheses per kept anchor and its per-batch exactness.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

import fairgen.stream
import steering
from fairgen.generators.diffusion import load_diffusion, save_random_pipeline
from fairgen.stream import Stream, make_spec
from steering.classifier import one_thread

PROMPTS = ["a photo of a cat", "a photo of a dog", "a photo of a car"]


def latent_classifier(generator, labeler, n_train: int, n_test: int, seed: int) -> dict:
    """Held-out accuracy of logistic regressions on (noise), (prompt) and (noise, prompt)."""
    n = n_train + n_test
    z = generator.sample_latents(n, torch.Generator().manual_seed(seed))
    y = torch.arange(n) % generator.num_classes
    with torch.no_grad():
        labels = torch.cat(
            [
                labeler(generator.synthesize(z[i : i + 256], y[i : i + 256]))
                for i in range(0, n, 256)
            ]
        )
    onehot = torch.nn.functional.one_hot(y, generator.num_classes).float()
    inputs = {"noise": z, "prompt": onehot, "noise + prompt": torch.cat([z, onehot], 1)}
    out = {
        "majority": max(
            labels[n_train:].float().mean().item(), 1 - labels[n_train:].float().mean().item()
        )
    }
    for name, x in inputs.items():
        x = x.numpy()
        model = LogisticRegression(max_iter=3000).fit(x[:n_train], labels[:n_train].numpy())
        out[name] = float(model.score(x[n_train:], labels[n_train:].numpy()))
    return out


def stream_rate(spec, generator, batch: int, steps: int, labeler=None) -> tuple[float, list[dict]]:
    """Delivered images/s over ``steps`` batches (and each batch's draw cost when confirmed)."""
    stream = Stream.from_spec(spec, batch, generator=generator, labeler=labeler)
    costs = []
    start = time.perf_counter()
    for _ in range(steps):
        out = stream.next_batch()
        if labeler is not None:
            costs.append(dict(stream.last_draw_cost_))
    seconds = time.perf_counter() - start
    return out["views"].shape[1] * batch * steps / seconds, costs


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=4, help="DDIM steps of the pipeline")
    parser.add_argument("--n", type=int, default=2000, help="labelled samples the steerer fits on")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=16, help="stream batches timed per arm")
    parser.add_argument("--block", type=int, default=256, help="confirmed anchors drawn at once")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    folder = tempfile.TemporaryDirectory()
    path = save_random_pipeline(Path(folder.name) / "tiny-sd", seed=args.seed)
    generator = load_diffusion(path, prompts=PROMPTS, steps=args.steps)
    z = generator.sample_latents(600, torch.Generator().manual_seed(10_000 + args.seed))
    luma = generator.synthesize(z, torch.arange(600) % 3).mean(dim=(1, 2, 3))
    threshold = float(luma.quantile(0.3))

    def dark(images):
        return (images.mean(dim=(1, 2, 3)) < threshold).long()

    print(
        f"tiny pipeline: {generator}, latent_dim {generator.latent_dim}; "
        f"dark = luma < {threshold:.5f}"
    )
    accuracy = latent_classifier(generator, dark, 2000, 1000, args.seed + 1)
    print(
        "latent classifier, held-out accuracy: "
        + ", ".join(f"{k} {v:.3f}" for k, v in accuracy.items())
    )
    with one_thread():
        steerer, _ = steering.fit_steerer(
            generator, dark, args.n, method="confirmed", seed=args.seed, progress=False
        )
    card = steering.save_card(
        steerer,
        f"{folder.name}/card",
        {
            "generator": {"name": generator.name, "sha256": generator.checksum},
            "labelers": {"protected": "bench:dark"},
        },
    )
    views = {"kinds": ["anchor", "renoise"]}
    plain = make_spec(generator, views=views, augment="none", resolution=32, seed=args.seed)
    steered = make_spec(generator, eraser=card, views=views, augment="none", resolution=32)
    fairgen.stream.CONFIRMED_BLOCK = args.block
    with one_thread():
        plain_rate, _ = stream_rate(plain, generator, args.batch_size, args.batches)
        steered_rate, costs = stream_rate(
            steered, generator, args.batch_size, args.batches, labeler=dark
        )
    kept = sum(c["kept"] for c in costs if c)
    syntheses = sum(c["syntheses"] for c in costs if c)
    result = {
        "accuracy": accuracy,
        "fit_trial_syntheses_per_kept": steerer.costs_.get("syntheses_per_kept"),
        "rejection_syntheses_per_kept": steerer.costs_.get("rejection_syntheses_per_kept"),
        "stream_syntheses_per_kept": syntheses / max(kept, 1),
        "plain_images_per_s": plain_rate,
        "confirmed_images_per_s": steered_rate,
        "ratio_plain_over_confirmed": plain_rate / steered_rate,
    }
    print(
        f"fit's trial draw: {result['fit_trial_syntheses_per_kept']:.2f} syntheses per kept "
        f"(plain rejection {result['rejection_syntheses_per_kept']:.2f})"
    )
    print(
        f"stream, batch {args.batch_size} x {args.batches}, anchor + renoise, "
        f"{args.steps} DDIM steps: "
        f"plain {plain_rate:.1f} images/s, confirmed {steered_rate:.1f} images/s "
        f"(ratio {result['ratio_plain_over_confirmed']:.2f}); confirmed anchors cost "
        f"{result['stream_syntheses_per_kept']:.2f} syntheses per kept"
    )
    folder.cleanup()
    return result


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
