"""Do learned walk views help? Four view recipes at equal steps on the embedded world, over seeds.

Run by hand: ``python benchmarks/walk_views.py [--seeds 0 1 2] [--steps 300] [--out
walk_views_out]``.

Every arm trains the demo's recipe (``fairgen/world/demo.py``: small CNN, SupCon with the
stream's class labels, AdamW 2e-3, batch 64, the trainer's light augmentation) on the *steered*
stream (texture balanced per class), the same number of steps; only the views differ:

* ``anchor+aug``: two copies of the anchor (augmentation alone makes them differ);
* ``neighbours``: anchor + a gaussian latent neighbour (sigma 0.5, the demo's views);
* ``walks``: anchor + a walk view (one learned walk, random alpha in its range);
* ``walks+neighbours``: a walk view + a gaussian neighbour.

Score: the target (shape) linear probe fitted on a *biased* labelled real split (rho 0.9, the
downstream user's data) and tested on a balanced real split, as in the demo. Reported per seed,
as a mean with a t-interval over seeds, and as the paired difference against ``anchor+aug``.
``--unsupervised`` trains SimCLR instead (the views alone define the positives).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

import steering
from fairgen.contrastive import TrainConfig, Trainer
from fairgen.contrastive.evaluate import extract_features, linear_probe
from fairgen.generators import load_generator
from fairgen.stream import Stream, make_spec
from fairgen.walks import WalkLearner, save_walks
from fairgen.world import World, load_judges
from fairgen.world.walk_fidelity import walk_fidelity

ARMS = {
    "anchor+aug": ["anchor", "anchor"],
    "neighbours": ["anchor", "neighbour"],
    "walks": ["anchor", "walk"],
    "walks+neighbours": ["walk", "neighbour"],
}


def interval(values, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and a t-interval over seeds."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    half = stats.t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return mean, mean - half, mean + half


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", default="world-sprites-z128")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument(
        "--walks", default=None, help="a walk card to use (default: learn one, 200 steps)"
    )
    parser.add_argument("--steer-n", type=int, default=12_000)
    parser.add_argument("--n-probe", type=int, default=4000)
    parser.add_argument("--n-test", type=int, default=4000)
    parser.add_argument("--unsupervised", action="store_true", help="SimCLR instead of SupCon")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="walk_views_out")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    generator = load_generator(args.generator)
    judges = load_judges()
    walks_card = args.walks
    if walks_card is None:
        learner = WalkLearner(progress=False).fit(generator)
        fidelity = walk_fidelity(generator, learner.walks_, n=1000, seed=1)
        walks_card = save_walks(
            learner.walks_,
            out / "walks",
            generator,
            {
                "training": {
                    **learner.settings_,
                    "final_loss": learner.final_loss_,
                    "seconds": learner.seconds_,
                },
                "fidelity": {
                    "n": 1000,
                    "seed": 1,
                    "table": fidelity.reset_index().to_dict("records"),
                },
            },
        )
        print(f"learned walks in {learner.seconds_:.1f} s (shared machine)")
        print(fidelity[["slope", "r2", "relative_error", "texture_kept"]].round(3).to_string())
    steerer, _ = steering.fit_steerer(
        generator, judges["texture"].predict, n=args.steer_n, seed=0, progress=False
    )
    card = steering.save_card(
        steerer,
        out / "eraser_card",
        {
            "generator": {"name": generator.name, "sha256": generator.checksum},
            "protected": "texture",
            "labeler": "world:texture",
            "n": args.steer_n,
            "seed": 0,
        },
    )

    world = World(32)
    probe = world.sample(args.n_probe, seed=12, bias=0.9)
    test = world.sample(args.n_test, seed=13, bias=0.0)
    results = {arm: {} for arm in args.arms}
    for seed in args.seeds:
        for arm in args.arms:  # arms in turns within a seed, so a busy machine slows all alike
            spec = make_spec(
                generator,
                eraser=card,
                walks=walks_card,
                seed=seed,
                augment="none",
                views={"kinds": ARMS[arm], "sigma": 0.5, "truncate": 2.0},
            )
            config = TrainConfig(
                encoder="small_cnn",
                small_images=True,
                supervised=not args.unsupervised,
                optimizer="adamw",
                lr=2e-3,
                total_steps=args.steps,
                warmup_steps=min(10, args.steps),
                augment="light",
                seed=seed,
                progress=False,
                log_every=0,
            )
            trainer = Trainer(config, "cpu")
            tic = time.perf_counter()
            trainer.fit(
                Stream.from_spec(spec, args.batch_size, "cpu", generator=generator),
                steps=args.steps,
            )
            seconds = time.perf_counter() - tic
            encoder = trainer.encoder.eval()
            with torch.no_grad():
                train_x, test_x = (extract_features(encoder, s.images) for s in (probe, test))
            score = linear_probe(
                train_x, probe.labels("shape"), test_x, test.labels("shape"), seed=seed
            )
            results[arm][seed] = {
                "target_accuracy": score["test_accuracy"],
                "train_seconds": seconds,
            }
            print(
                f"seed {seed} {arm:18s} target acc {score['test_accuracy']:.3f}  ({seconds:.0f} s)",
                flush=True,
            )

    base = args.arms[0]
    lines = [
        f"| views | target acc, mean [95% CI over {len(args.seeds)} seeds] | per seed | vs {base} "
        "(paired) | train s |",
        "|---|---|---|---|---|",
    ]
    for arm in args.arms:
        acc = [results[arm][s]["target_accuracy"] for s in args.seeds]
        diff = [
            a - results[base][s]["target_accuracy"] for a, s in zip(acc, args.seeds, strict=True)
        ]
        mean, low, high = interval(acc)
        dmean, dlow, dhigh = interval(diff)
        secs = np.mean([results[arm][s]["train_seconds"] for s in args.seeds])
        versus = "—" if arm == base else f"{dmean:+.3f} [{dlow:+.3f}, {dhigh:+.3f}]"
        lines.append(
            f"| {arm} | {mean:.3f} [{low:.3f}, {high:.3f}] | {', '.join(f'{a:.3f}' for a in acc)} "
            f"| {versus} | {secs:.0f} |"
        )
    table = "\n".join(lines)
    loss = "SimCLR" if args.unsupervised else "SupCon"
    header = (
        f"{loss}, {args.steps} steps, batch {args.batch_size}, steered stream of {generator.name}; "
        f"probe fitted on {args.n_probe} biased real images, tested on {args.n_test} balanced "
        "ones\n\n"
    )
    (out / "table.md").write_text(header + table + "\n")
    (out / "results.json").write_text(
        json.dumps({"args": vars(args), "results": results}, indent=2, default=str)
    )
    print(header + table)


if __name__ == "__main__":
    main()
