"""World rendering throughput: the vectorised renderer against a per-image loop of the same
renderer.

Run by hand: ``python benchmarks/world_render.py [--n 10000] [--device cpu]``.
"""

from __future__ import annotations

import argparse
import time

import torch

from fairgen.world.render import World, render


def images_per_second(fn, n: int) -> float:
    tic = time.perf_counter()
    fn()
    return n / (time.perf_counter() - tic)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--loop-n", type=int, default=200, help="images for the per-image baseline")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}, device: {args.device}")
    print(
        f"{'px':>4s} {'batched img/s':>14s} {'loop img/s':>11s} {'ratio':>7s} "
        f"{'10k images (s)':>15s}"
    )
    for resolution in (32, 64, 128):
        world = World(resolution)
        factors = world.sample_factors(args.n, seed=0, bias=0.9)
        render(factors, resolution, args.device)  # warm-up
        batched = images_per_second(
            lambda f=factors, r=resolution: render(f, r, args.device), args.n
        )
        single = {k: v[: args.loop_n] for k, v in factors.items()}

        def loop(single=single, resolution=resolution):
            for i in range(args.loop_n):
                render({k: v[i : i + 1] for k, v in single.items()}, resolution, args.device)

        looped = images_per_second(loop, args.loop_n)
        print(
            f"{resolution:4d} {batched:14.0f} {looped:11.0f} {batched / looped:7.1f} "
            f"{10_000 / batched:15.2f}"
        )


if __name__ == "__main__":
    main()
