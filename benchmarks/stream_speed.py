"""Throughput of the stream alone and of the stream feeding a SupCon training step, side by side.

    python benchmarks/stream_speed.py --steer          # CPU (one thread), 32 px, small_cnn, batch
    128 x 2 views
    python benchmarks/stream_speed.py --device cuda --batch-size 512
    python benchmarks/stream_speed.py --confirmed      # labeler-confirmed streams beside raw ones

The baseline, measured in the same run, is the trainer fed pre-made tensors (no generation at
all): an upper bound for "stream + step". The stream makes its views (embedded generator,
neighbour latents, "light" augmentation on the stream's side); the trainer adds no augmentation
of its own. With ``--steer`` a balance card is fitted on a small sample first and two steered
streams are timed as well: anchors balanced (rejection sampling) with the raw stream's views, and
anchors balanced with views anchor + counterfactual flip.

Rates: views/s counts every image (B x V per step), anchors/s counts samples (B per step). Each
variant's time is the median of ``--repeats`` calls, timed in turns (round-robin) so a busy
shared machine slows all variants alike.
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from timing import side_by_side

from fairgen import load_generator
from fairgen.contrastive import TrainConfig, Trainer
from fairgen.stream import Stream, make_spec


def make_trainer(device) -> Trainer:
    config = TrainConfig(
        encoder="small_cnn",
        supervised=True,
        augment=None,
        total_steps=100_000,
        warmup_steps=0,
        progress=False,
        log_every=0,
    )
    return Trainer(config, device)


def steered_card(generator, folder: str) -> str:
    import steering
    from fairgen.world.judges import load_judges

    labeler = load_judges(device=generator.device)["texture"].predict
    steerer, _ = steering.fit_steerer(generator, labeler, 8000, mode="balance", progress=False)
    provenance = {"generator": {"name": generator.name, "sha256": generator.checksum}}
    return str(steering.save_card(steerer, f"{folder}/texture-balance", provenance))


def confirmed_card(generator, folder: str) -> str:
    """A labeler-confirmed balance card (texture judge), fitted on 8,000 labels like the steered
    one."""
    import steering
    from fairgen.world.judges import load_judges

    labeler = load_judges(device=generator.device)["texture"].predict
    steerer, _ = steering.fit_steerer(generator, labeler, 8000, method="confirmed", progress=False)
    provenance = {
        "generator": {"name": generator.name, "sha256": generator.checksum},
        "labelers": {"protected": "world:texture"},
    }
    print(
        f"confirmed card: {steerer.costs_['syntheses_per_kept']:.2f} syntheses per kept sample at "
        "fit "
        f"(plain rejection {steerer.costs_['rejection_syntheses_per_kept']:.1f})"
    )
    return str(steering.save_card(steerer, f"{folder}/texture-confirmed", provenance))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--batch-size", type=int, default=128, help="samples per step (each has 2 views)"
    )
    parser.add_argument("--augment", default="light", help="the stream's augmentation preset")
    parser.add_argument(
        "--steer", action="store_true", help="also time a steered stream with flip views"
    )
    parser.add_argument(
        "--confirmed",
        action="store_true",
        help="also time labeler-confirmed streams (texture judge), with the raw stream's views and "
        "with anchor + neighbour views (the anchor reuses the confirmed image), beside a raw "
        "anchor + neighbour stream",
    )
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU intra-op threads (default 1: on a busy 2-core CPU, 2 threads ran up to 10x "
        "slower)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device, b = torch.device(args.device), args.batch_size
    print(
        f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} CPU threads, batch "
        f"{b} x 2 views, 32 px"
    )

    generator = load_generator("world-sprites-z128", device=device)
    specs = {
        "raw": make_spec(
            generator, augment=args.augment, views={"kinds": ["neighbour", "neighbour"]}
        )
    }
    folder = tempfile.TemporaryDirectory()
    if args.steer:
        card = steered_card(generator, folder.name)
        same = {
            "kinds": ["neighbour", "neighbour"]
        }  # the raw stream's views: the cost of balancing alone
        specs["steered"] = make_spec(generator, eraser=card, augment=args.augment, views=same)
        specs["steered + flip"] = make_spec(
            generator, eraser=card, augment=args.augment, views={"kinds": ["anchor", "flip"]}
        )
    if args.confirmed:
        card = confirmed_card(generator, folder.name)
        anchored = {"kinds": ["anchor", "neighbour"]}
        specs["raw anchor+neighbour"] = make_spec(generator, augment=args.augment, views=anchored)
        specs["confirmed"] = make_spec(
            generator,
            eraser=card,
            augment=args.augment,
            views={"kinds": ["neighbour", "neighbour"]},
        )
        specs["confirmed anchor+neighbour"] = make_spec(
            generator, eraser=card, augment=args.augment, views=anchored
        )
    streams = {
        name: Stream.from_spec(spec, b, device, generator=generator) for name, spec in specs.items()
    }
    trainers = {name: make_trainer(device) for name in ["premade", *specs]}

    premade = {
        "views": torch.rand(b, 2, 3, 32, 32, device=device),
        "labels": torch.randint(generator.num_classes, (b,), device=device),
    }
    fns = {
        "trainer on pre-made tensors (baseline)": lambda: trainers["premade"].train_step(premade)
    }
    for name, stream in streams.items():
        fns[f"{name} stream alone"] = stream.next_batch
        fns[f"{name} stream + SupCon step"] = lambda s=stream, t=trainers[name]: t.train_step(
            s.next_batch()
        )
    seconds = side_by_side(fns, device, args.warmup, args.repeats)

    base = seconds["trainer on pre-made tensors (baseline)"]
    raw = seconds["raw stream alone"]
    print(
        f"\n  {'variant':<40} {'views/s':>9} {'anchors/s':>10} {'ms/step':>8}  vs baseline  vs raw "
        "stream"
    )
    for name, t in seconds.items():
        print(
            f"  {name:<40} {2 * b / t:>9.0f} {b / t:>10.0f} {1000 * t:>8.1f}  x{base / t:.2f}      "
            f"  x{raw / t:.2f}"
        )
    for name, stream in streams.items():
        if getattr(stream, "last_draw_cost_", None):
            cost = stream.last_draw_cost_
            print(
                f"  {name}: {cost['syntheses_per_kept']:.2f} syntheses, "
                f"{cost['labeler_calls_per_kept']:.2f} labeler calls "
                f"and {cost['latent_draws_per_kept']:.1f} latent draws per kept anchor (last batch)"
            )
    folder.cleanup()


if __name__ == "__main__":
    main()
