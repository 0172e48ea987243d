"""How much does reusing generated samples (a replay buffer with a low refresh rate) cost?

    python benchmarks/refresh_rate.py                      # CPU defaults (one thread), about 5
    minutes
    python benchmarks/refresh_rate.py --steps 2000 --batch-size 256 --device cuda

Trains the same small_cnn SupCon encoder (stream labels = shape) for equal steps on streams of the
embedded generator that differ only in their refresh rate, then fits a linear probe of shape on
frozen features of *real*, balanced world images and reports its test accuracy. Refresh 1.0 is the
pure stream (every sample fresh, used once); below 1 a replay buffer of ``--buffer-multiple`` x
batch samples keeps its images and only ``ceil(refresh x batch)`` of them are regenerated per step
(each step still draws fresh augmentations). An untrained encoder gives the floor. Throughput is
views per second of stream + training step together.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
import warnings

import torch
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from fairgen import World, load_generator
from fairgen.contrastive import TrainConfig, Trainer, build_encoder, extract_features, linear_probe
from fairgen.stream import Stream, make_spec


def probe_accuracy(encoder, probe_set, test_set) -> float:
    train_x = extract_features(encoder, probe_set.images)
    test_x = extract_features(encoder, test_set.images)
    # one BLAS thread: small scikit-learn fits crawl when BLAS threads fight for contended cores
    with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # the probe's fixed iteration budget
        return linear_probe(train_x, probe_set.labels("shape"), test_x, test_set.labels("shape"))[
            "test_accuracy"
        ]


def train_and_probe(
    generator, refresh: float, seed: int, args, probe_set, test_set
) -> tuple[float, float]:
    """(probe accuracy, views/s of stream + training) for one refresh rate and seed."""
    b, device = args.batch_size, generator.device
    buffer_size = None if refresh >= 1 else args.buffer_multiple * b
    spec = make_spec(
        generator, refresh=refresh, buffer_size=buffer_size, augment="light", seed=seed
    )
    stream = Stream.from_spec(spec, b, device, generator=generator)
    config = TrainConfig(
        encoder="small_cnn",
        supervised=True,
        augment=None,
        lr=args.lr,
        total_steps=args.steps,
        warmup_steps=min(10, args.steps),
        seed=seed,
        progress=False,
        log_every=0,
    )
    trainer = Trainer(config, device)
    start = time.perf_counter()
    trainer.fit(stream, steps=args.steps)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    accuracy = probe_accuracy(trainer.encoder, probe_set, test_set)
    print(
        f"  refresh {refresh:g}, seed {seed}: trained in {seconds:.0f} s, probe accuracy "
        f"{accuracy:.3f}",
        flush=True,
    )
    return accuracy, args.steps * b * 2 / seconds


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--refresh", default="1.0,0.25,0.05", help="comma list of refresh rates in (0, 1]"
    )
    parser.add_argument(
        "--buffer-multiple", type=int, default=8, help="replay buffer size / batch size"
    )
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument(
        "--batch-size", type=int, default=64, help="samples per step (each has 2 views)"
    )
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument(
        "--n-probe", type=int, default=3000, help="real balanced images the linear probe trains on"
    )
    parser.add_argument(
        "--n-test", type=int, default=3000, help="real balanced images it is tested on"
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=2,
        help="training runs per refresh rate (stream and init seeds)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU intra-op threads (default 1: small convolutions on a busy 2-core CPU run faster "
        "on one)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device, b = torch.device(args.device), args.batch_size
    rates = [float(r) for r in args.refresh.split(",")]
    print(
        f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} CPU threads; "
        "small_cnn SupCon, "
        f"{args.steps} steps x {b} samples x 2 views, 32 px, {args.seeds} seed(s)"
    )

    world = World(32)
    probe_set = world.sample(args.n_probe, seed=1_000, bias=0.0)
    test_set = world.sample(args.n_test, seed=2_000, bias=0.0)
    generator = load_generator("world-sprites-z128", device=device)

    untrained = []
    for seed in range(args.seeds):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            encoder, _ = build_encoder("small_cnn", small_images=True)
        untrained.append(probe_accuracy(encoder.to(device), probe_set, test_set))
    rows = [("untrained encoder", "-", "-", untrained, [])]
    for refresh in rates:
        runs = [
            train_and_probe(generator, refresh, seed, args, probe_set, test_set)
            for seed in range(args.seeds)
        ]
        buffer_size = b if refresh >= 1 else args.buffer_multiple * b
        fresh = args.steps * (b if refresh >= 1 else math.ceil(refresh * b)) + (
            0 if refresh >= 1 else buffer_size
        )
        rows.append(
            (f"refresh {refresh:g}", buffer_size, fresh, [a for a, _ in runs], [r for _, r in runs])
        )

    se = math.sqrt(0.25 / args.n_test)
    print(
        f"\n  {'stream':<18} {'buffer':>6} {'samples made':>13} "
        f"{'probe acc (shape, real), mean +- sd':>37} {'views/s':>8}"
    )
    for name, buffer, fresh, accuracies, rates_ in rows:
        spread = statistics.stdev(accuracies) if len(accuracies) > 1 else math.nan
        rate = f"{statistics.mean(rates_):.0f}" if rates_ else "-"
        print(
            f"  {name:<18} {buffer!s:>6} {fresh!s:>13} {statistics.mean(accuracies):>29.3f} +- "
            f"{spread:.3f} {rate:>8}"
        )
    print(f"  (test-set sampling error of one accuracy: at most {se:.3f})")


if __name__ == "__main__":
    main()
