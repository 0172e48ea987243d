"""Throughput of batch augmentation and of a contrastive training step, side by side in one run.

    python benchmarks/trainer_speed.py                 # CPU: 32 px, small_cnn
    python benchmarks/trainer_speed.py --device cuda   # adds ResNet-50, 128 px views cropped to 112

Prints images per second (one image = one view) and each variant's ratio to the baseline
measured in the same run: for augmentation, torchvision.transforms.v2 applied image by image
(per-sample parameters need a loop there); for training, the eager float32 step. On CUDA the
variants are bf16 autocast, + channels_last, + torch.compile.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from timing import side_by_side

from fairgen.augment import PRESETS, augment
from fairgen.contrastive import TrainConfig, Trainer


def torchvision_loop(recipe_name: str, size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The per-image baseline: one torchvision v2 pipeline call per image."""
    from torchvision.transforms import v2

    r = PRESETS[recipe_name]
    jitter = v2.ColorJitter(r.brightness, r.contrast, r.saturation, r.hue)
    steps = [
        v2.RandomResizedCrop(size, scale=r.crop_scale, ratio=r.crop_ratio, antialias=False),
        v2.RandomHorizontalFlip(r.flip_p),
        v2.RandomApply([jitter], p=r.jitter_p),
        v2.RandomGrayscale(r.grey_p),
    ]
    if r.blur_p > 0:
        kernel = max(3, int(r.blur_kernel_fraction * size) // 2 * 2 + 1)
        steps.append(v2.RandomApply([v2.GaussianBlur(kernel, r.blur_sigma)], p=r.blur_p))
    pipeline = v2.Compose(steps)
    return lambda batch: torch.stack([pipeline(image) for image in batch])


def report(title: str, rows: list[tuple[str, float]]) -> None:
    print(f"\n{title}")
    baseline = rows[0][1]
    for name, rate in rows:
        print(f"  {name:<42} {rate:>10.0f} img/s   x{rate / baseline:.2f}")


def bench_augment(device, batch: int, size: int, recipe: str, warmup: int, repeats: int) -> None:
    x = torch.rand(batch, 3, size, size, device=device)
    g = torch.Generator(device=device).manual_seed(0)
    loop = torchvision_loop(recipe, size)
    fns = {
        f"torchvision v2, per-image loop ({recipe})": lambda: loop(x),
        f"fairgen augment, batched ({recipe})": lambda: augment(x, recipe, g),
    }
    rows = [(name, batch / t) for name, t in side_by_side(fns, device, warmup, repeats).items()]
    report(f"augment {batch} x {size} px on {device}", rows)


def bench_training(
    device, encoder: str, batch: int, size: int, crop: int | None, variants, warmup, repeats
):
    views = torch.rand(batch, 2, 3, size, size, device=device)
    data = {"views": views, "labels": torch.zeros(batch, dtype=torch.long, device=device)}
    fns = {}
    for name, flags in variants:
        base = dict(
            encoder=encoder,
            small_images=size <= 64,
            projection_hidden_dim=2048 if encoder == "resnet50" else 512,
            augment="simclr" if size > 64 else "light",
            crop_size=crop,
            total_steps=10_000,
            progress=False,
            log_every=0,
        )
        trainer = Trainer(TrainConfig(**{**base, **flags}), device)
        fns[name] = lambda t=trainer: t.train_step(data)
    rows = [(name, 2 * batch / t) for name, t in side_by_side(fns, device, warmup, repeats).items()]
    crop_note = f" cropped to {crop}" if crop else ""
    report(f"{encoder} training step, {batch} x 2 views of {size} px{crop_note} on {device}", rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--batch-size", type=int, default=128, help="samples per step (each has 2 views)"
    )
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU intra-op threads (default: torch's)"
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} CPU threads")

    bench_augment(device, 2 * args.batch_size, 32, "light", args.warmup, args.repeats)
    eager = {"bf16": False, "channels_last": False}
    cpu_variants = [
        ("step, no augmentation", {**eager, "augment": None}),
        ("augment + step", eager),
    ]
    bench_training(
        device, "small_cnn", args.batch_size, 32, None, cpu_variants, args.warmup, args.repeats
    )

    if device.type == "cuda":
        bench_augment(device, 2 * args.batch_size, 128, "simclr", args.warmup, args.repeats)
        variants = [
            ("augment + step, eager fp32", eager),
            ("bf16 autocast", {"bf16": True, "channels_last": False}),
            ("bf16 + channels_last", {"bf16": True, "channels_last": True}),
            (
                "bf16 + channels_last + compile",
                {"bf16": True, "channels_last": True, "compile": True},
            ),
        ]
        bench_training(
            device, "resnet50", args.batch_size, 128, 112, variants, args.warmup + 3, args.repeats
        )


if __name__ == "__main__":
    main()
