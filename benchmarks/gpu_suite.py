"""One prepared GPU run: the checks only a GPU can show, the throughput table, and the full demo.

    python benchmarks/gpu_suite.py --out $OUT            # on one H100/H200: about 8 minutes
    python benchmarks/gpu_suite.py --dry-run             # the same script on this CPU, tiny sizes

Sections run in order and each writes its rows as it finishes, so a run cut short still leaves
``results.json`` and ``results.md`` with everything measured so far:

1. checks    bf16-autocast loss against fp32; the stream's batches on CUDA against the CPU's
             (same spec); a resumed training run against an uninterrupted one;
2. biggan    BigGAN-deep-128 / -256 with random weights: images/s of the package's fp32 eager
             forward and of the adapter in fp32, bf16, channels_last and compiled, side by side,
             with the ratio to the package and the fraction of the bf16 FLOP bound;
3. online    BigGAN-deep-128 + augmentation + ResNet-50 training at 112 px: images/s and
             model-FLOP utilisation against the same trainer fed pre-made tensors, a GenRep-style
             pipeline (fp32 eager generator, per-image CPU augmentation) and a DataLoader of
             PNGs; the replay buffer at refresh 1.0 / 0.25 / 0.05;
4. demo      ``fairgen demo --preset full`` (the dry run: a tiny in-process demo) with its table;
5. diffusion a text-to-image pipeline with a Stable-Diffusion-1.5-sized UNet (random weights,
             512 px, DDIM 20 steps, guidance 7.5): images/s in fp32 and bf16 + channels_last,
             and the online step (stream of anchor + renoise views + ResNet-50 step at 112 px).
             Skipped with a note where diffusers/transformers are not installed.

Every speed row is measured in the same run as its baseline. The dry run exercises every code
path on the CPU in a few minutes; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the sibling benchmark modules (timing, biggan_speed)

BF16_PEAK_TFLOPS = 790.0  # measured 8192^3 bf16 matmul on H100/H200 (shared/NOTES-biggan.md)
SPEC_PEAK_TFLOPS = 989.0  # H100/H200 SXM dense bf16 data-sheet figure, for MFU as usually quoted
BIGGAN_GFLOP = {128: 22.6, 256: 77.7, 512: 151.5}  # package forward, per image (FlopCounterMode)
TINY_BIGGAN = dict(
    z_dim=16,
    channel_width=4,
    num_classes=10,
    attention_layer_position=2,
    layers=[[False, 16, 16], [True, 16, 8], [True, 8, 4], [True, 4, 2], [False, 2, 1]],
)


class Results:
    """Rows by section, written to ``results.json`` and ``results.md`` after every section."""

    def __init__(self, out: Path, meta: dict):
        self.out, self.meta, self.sections = out, meta, {}
        out.mkdir(parents=True, exist_ok=True)

    def add(self, section: str, rows: list[dict], note: str = "") -> None:
        self.sections[section] = {"rows": rows, "note": note}
        self.write()

    def write(self) -> None:
        (self.out / "results.json").write_text(
            json.dumps({"meta": self.meta, "sections": self.sections}, indent=2, default=_plain)
        )
        lines = [f"# fairgen GPU suite — {self.meta['device_name']}, {self.meta['date']}", ""]
        lines += [f"- {k}: {v}" for k, v in self.meta.items() if k not in ("device_name", "date")]
        for name, section in self.sections.items():
            lines += ["", f"## {name}", ""]
            if section["note"]:
                lines += [section["note"], ""]
            rows = section["rows"]
            if rows:
                keys = list(dict.fromkeys(k for row in rows for k in row))
                lines.append("| " + " | ".join(keys) + " |")
                lines.append("|" + "---|" * len(keys))
                lines += [
                    "| " + " | ".join(_cell(row.get(k, "")) for k in keys) + " |" for row in rows
                ]
        (self.out / "results.md").write_text("\n".join(lines) + "\n")


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _plain(value):
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return str(value)


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def rate(fn, items: int, device, warmup: int, iters: int) -> float:
    """Items per second of ``fn`` after ``warmup`` calls, over ``iters`` timed calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    sync(device)
    return items * iters / (time.perf_counter() - start)


# ---------------------------------------------------------------- 1. checks


def check_bf16_loss(device, size: int, batch: int) -> dict:
    """The contrastive loss of one batch under bf16 autocast against fp32 (same weights, same
    views)."""
    from fairgen.contrastive import TrainConfig, Trainer
    from fairgen.contrastive.loss import supcon_loss

    config = TrainConfig(
        encoder="resnet18" if size > 32 else "small_cnn",
        small_images=size <= 64,
        augment=None,
        progress=False,
        log_every=0,
        bf16=False,
    )
    trainer = Trainer(config, device)
    views = torch.rand(batch, 2, 3, size, size, generator=torch.Generator().manual_seed(0)).to(
        device
    )
    x = views.flatten(0, 1)
    model = trainer.model.eval()
    with torch.no_grad():
        fp32 = supcon_loss(model(x).unflatten(0, (batch, 2)).float(), None, config.temperature)
        with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16):
            bf16 = supcon_loss(model(x).unflatten(0, (batch, 2)).float(), None, config.temperature)
    rel = abs(float(bf16) - float(fp32)) / abs(float(fp32))
    return {
        "check": "bf16 autocast loss vs fp32",
        "value": rel,
        "unit": "relative difference",
        "tolerance": 2e-2,
        "pass": rel <= 2e-2,
        "detail": f"fp32 {float(fp32):.5f}, bf16 {float(bf16):.5f}",
    }


def check_stream_devices(device, batch: int) -> dict:
    """The same stream spec played on ``device`` and on the CPU: labels equal, views within 1e-4."""
    from fairgen import load_generator, make_spec
    from fairgen.stream import Stream

    spec = make_spec(load_generator(_default_generator()))
    here, cpu = Stream.from_spec(spec, batch, device), Stream.from_spec(spec, batch, "cpu")
    worst, labels_equal = 0.0, True
    for _ in range(2):
        a, b = here.next_batch(), cpu.next_batch()
        worst = max(worst, (a["views"].float().cpu() - b["views"].float()).abs().max().item())
        labels_equal &= bool(torch.equal(a["labels"].cpu(), b["labels"]))
    ok = labels_equal and worst <= 1e-4
    return {
        "check": f"stream batches on {device} vs cpu",
        "value": worst,
        "unit": "max |view difference|",
        "tolerance": 1e-4,
        "pass": ok,
        "detail": f"labels equal: {labels_equal}; 2 batches of {batch}",
    }


def check_resume(device, steps: int, batch: int) -> dict:
    """Train ``steps`` steps straight through, and half + checkpoint + resume: parameters
    compared."""
    from fairgen import load_generator, make_spec
    from fairgen.contrastive import TrainConfig, Trainer
    from fairgen.stream import Stream

    spec = make_spec(load_generator(_default_generator()))
    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(
            total_steps=steps,
            warmup_steps=1,
            progress=False,
            log_every=0,
            augment=None,
            optimizer="adamw",
            lr=2e-3,
        )
        straight = Trainer(config, device)
        straight.fit(Stream.from_spec(spec, batch, device), steps=steps)
        first = Trainer(config, device)
        first.fit(Stream.from_spec(spec, batch, device), steps=steps // 2)
        first.save(Path(tmp) / "checkpoint.pt")
        resumed = Trainer.from_checkpoint(Path(tmp) / "checkpoint.pt", device)
        resumed.fit(
            Stream.from_spec(spec, batch, device, start_step=resumed.step), steps=steps - steps // 2
        )
    diffs = [
        (a - b).abs().max().item()
        for a, b in zip(
            straight.model.state_dict().values(), resumed.model.state_dict().values(), strict=True
        )
        if a.is_floating_point()
    ]
    worst = max(diffs)
    return {
        "check": f"resumed vs uninterrupted training on {device}",
        "value": worst,
        "unit": "max |parameter difference|",
        "tolerance": 0.0 if torch.device(device).type == "cpu" else 1e-5,
        "pass": worst <= (0.0 if torch.device(device).type == "cpu" else 1e-5),
        "detail": f"{steps} steps, batch {batch}; bitwise equal: {worst == 0.0}",
    }


# ---------------------------------------------------------------- 2. BigGAN synthesis


def biggan_rows(device, size: int, batch: int, iters: int, dry: bool, compile_: bool) -> list[dict]:
    """Images/s of each BigGAN variant, the ratio to the package's fp32 eager loop, and the
    bound."""
    from pytorch_pretrained_biggan import BigGAN, BigGANConfig

    from fairgen.generators.biggan import BigGANGenerator

    if dry:
        torch.manual_seed(0)
        package = _tiny_biggan(BigGAN(BigGANConfig(**TINY_BIGGAN)).to(device).eval())
        with torch.no_grad():
            package.generator.bn.weight.fill_(1.0)
            package.generator.bn.bias.zero_()
    else:
        from biggan_speed import random_biggan

        package = random_biggan(size, torch.device(device))
    adapter = BigGANGenerator(
        copy.deepcopy(package), name=f"biggan-deep-{size} (random)", truncation=0.5, device=device
    )
    gen = torch.Generator(device).manual_seed(0)
    z, y = adapter.sample_latents(batch, gen), adapter.sample_classes(batch, gen)
    one_hot = F.one_hot(y, package.config.num_classes).float()

    def package_fp32():
        with torch.no_grad():
            return package(z, one_hot, 0.5)

    def bf16(g):
        def run():
            with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
                return g.synthesize(z, y)

        return run

    last = copy.deepcopy(adapter)
    last.model.to(memory_format=torch.channels_last)
    variants = [
        ("package fp32 eager (baseline)", package_fp32),
        ("adapter fp32 eager", lambda: adapter.synthesize(z, y)),
        ("adapter bf16", bf16(adapter)),
        ("adapter bf16 channels_last", bf16(last)),
    ]
    if compile_:
        compiled = copy.deepcopy(last)
        compiled.model.generator = torch.compile(compiled.model.generator, fullgraph=True)
        variants.append(("adapter bf16 channels_last compiled", bf16(compiled)))
    rows, baseline = [], None
    bound = BF16_PEAK_TFLOPS * 1e3 / BIGGAN_GFLOP[size]
    for name, fn in variants:
        speed = rate(fn, batch, device, warmup=2 if not dry else 1, iters=iters)
        baseline = baseline or speed
        rows.append(
            {
                "model": f"biggan-deep-{size}" + (" (tiny dry-run config)" if dry else ""),
                "variant": name,
                "batch": batch,
                "images/s": speed,
                "x package fp32": speed / baseline,
                "fraction of bf16 bound": speed / bound,
            }
        )
    return rows


# ---------------------------------------------------------------- 3. the online step


def _tiny_biggan(model):
    """The package leaves the first batch norm's affine weights uninitialised (NaN images
    otherwise)."""
    with torch.no_grad():
        model.generator.bn.weight.fill_(1.0)
        model.generator.bn.bias.zero_()
    return model


def online_rows(device, dry: bool, batch: int, iters: int, budget_s: float) -> list[dict]:
    """Generator + augmentation + ResNet-50 step at 112 px, against three ways of feeding it."""
    from pytorch_pretrained_biggan import BigGAN, BigGANConfig
    from torch.utils.flop_counter import FlopCounterMode

    from fairgen.contrastive import TrainConfig, Trainer
    from fairgen.generators.biggan import BigGANGenerator
    from fairgen.stream import Stream, make_spec

    start = time.perf_counter()
    cuda = torch.device(device).type == "cuda"
    if dry:
        torch.manual_seed(0)
        package = _tiny_biggan(BigGAN(BigGANConfig(**TINY_BIGGAN)).to(device).eval())
        encoder, view_size, crop = "small_cnn", 32, 28
    else:
        from biggan_speed import random_biggan

        package = random_biggan(128, torch.device(device))
        encoder, view_size, crop = "resnet50", 128, 112
    generator = BigGANGenerator(
        copy.deepcopy(package), name="biggan-deep-128 (random)", truncation=0.5, device=device
    )
    if cuda:
        generator.model.to(memory_format=torch.channels_last)
    config = TrainConfig(
        encoder=encoder,
        small_images=dry,
        projection_hidden_dim=2048 if not dry else 128,
        augment="simclr",
        crop_size=crop,
        total_steps=100_000,
        progress=False,
        log_every=0,
        optimizer="lars" if not dry else "adamw",
        lr=0.3 if not dry else 1e-3,
        bf16=True,
        channels_last=True,
    )
    trainer = Trainer(config, device)
    spec = make_spec(
        generator,
        views={"kinds": ["anchor", "neighbour"], "sigma": 0.5, "truncate": 2.0},
        augment="none",
        resolution=view_size,
    )

    def step_flops() -> float:
        stream = Stream.from_spec(spec, batch, device, generator=generator)
        counter = FlopCounterMode(display=False)
        with counter:
            trainer.train_step(stream.next_batch())
        return float(counter.get_total_flops())

    flops = step_flops()
    rows = []

    def add(name, fn, images):
        per_s = rate(fn, images, device, warmup=2, iters=iters)
        rows.append(
            {
                "pipeline": name,
                "views/s": per_s,
                "step TFLOP": flops / 1e12,
                "MFU (spec peak)": per_s / (2 * batch) * flops / (SPEC_PEAK_TFLOPS * 1e12),
            }
        )

    def online(refresh: float):
        stream = Stream.from_spec(
            make_spec(
                generator,
                views=spec.views,
                augment="none",
                resolution=view_size,
                refresh=refresh,
                buffer_size=None if refresh == 1.0 else 4 * batch,
            ),
            batch,
            device,
            generator=generator,
        )
        return lambda: trainer.train_step(stream.next_batch())

    add("fairgen online: generator + GPU augment + step (refresh 1.0)", online(1.0), 2 * batch)
    premade = {
        "views": torch.rand(batch, 2, 3, view_size, view_size, device=device),
        "labels": torch.zeros(batch, dtype=torch.long, device=device),
    }
    add("same trainer, pre-made tensors", lambda: trainer.train_step(premade), 2 * batch)
    for refresh in (0.25, 0.05):
        if time.perf_counter() - start < budget_s:
            add(f"fairgen online, replay buffer refresh {refresh}", online(refresh), 2 * batch)

    plain = TrainConfig(**{**config.to_dict(), "augment": None})
    plain_trainer = Trainer(plain, device)
    cpu_augment = _cpu_pipeline(crop)
    gen = torch.Generator(device).manual_seed(1)

    def genrep():
        z, y = generator.sample_latents(batch, gen), generator.sample_classes(batch, gen)
        with torch.no_grad():
            images = (
                package(
                    torch.cat([z, z + 0.5 * torch.randn_like(z)]),
                    F.one_hot(torch.cat([y, y]), package.config.num_classes).float(),
                    0.5,
                )
                + 1
            ) / 2
        images = images.float().cpu()
        views = torch.stack([cpu_augment(image) for image in images]).to(device)
        plain_trainer.train_step(
            {
                "views": views.unflatten(0, (2, batch)).transpose(0, 1),
                "labels": torch.zeros(batch, dtype=torch.long, device=device),
            }
        )

    if time.perf_counter() - start < budget_s:
        add("GenRep-style: fp32 eager generator, per-image CPU augmentation", genrep, 2 * batch)
    if time.perf_counter() - start < budget_s:
        with tempfile.TemporaryDirectory() as folder:
            loader = _png_loader(
                generator, Path(folder), n=max(4 * batch, 64), batch=batch, crop=crop
            )
            iterator = _forever(loader)

            def from_png():
                views = next(iterator).to(device, non_blocking=True)
                plain_trainer.train_step(
                    {"views": views, "labels": torch.zeros(batch, dtype=torch.long, device=device)}
                )

            add("DataLoader of PNGs from disk (8 workers, CPU augmentation)", from_png, 2 * batch)
    baseline = rows[0]["views/s"]
    for row in rows:
        row["fairgen online / this"] = baseline / row["views/s"]
    return rows


def _cpu_pipeline(crop: int):
    from torchvision.transforms import v2

    return v2.Compose(
        [
            v2.RandomResizedCrop(crop, scale=(0.08, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            v2.RandomGrayscale(0.2),
        ]
    )


def _png_loader(generator, folder: Path, n: int, batch: int, crop: int):
    """Write ``n`` generated images as PNGs, then a DataLoader that decodes and augments two views
    each."""
    from torchvision.io import decode_png, read_file, write_png

    gen = torch.Generator(generator.device).manual_seed(2)
    for start in range(0, n, batch):
        k = min(batch, n - start)
        images = generator.synthesize(
            generator.sample_latents(k, gen), generator.sample_classes(k, gen)
        )
        for i, image in enumerate((images * 255).round().to(torch.uint8).cpu()):
            write_png(image, str(folder / f"{start + i:06d}.png"))
    files = sorted(folder.glob("*.png"))
    pipeline = _cpu_pipeline(crop)

    class PNGs(torch.utils.data.Dataset):
        def __len__(self):
            return len(files)

        def __getitem__(self, i):
            image = decode_png(read_file(str(files[i]))).float() / 255
            return torch.stack([pipeline(image), pipeline(image)])

    workers = min(8, os.cpu_count() or 1)
    return torch.utils.data.DataLoader(
        PNGs(),
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        drop_last=True,
        persistent_workers=workers > 0,
    )


def _forever(loader):
    while True:
        yield from loader


# ---------------------------------------------------------------- 4. the demo


def demo_rows(device, out: Path, dry: bool, timeout_s: float) -> tuple[list[dict], str]:
    """The full demo as a user runs it (a subprocess with a time limit); the dry run: a tiny one."""
    if dry:
        from fairgen.world.demo import ARMS, run_demo

        run_demo(
            "quick",
            out / "demo",
            device=device,
            arms=list(ARMS),
            progress=False,
            overrides=TINY_DEMO,
        )  # every arm: the quick preset runs three of the five
        return demo_targets(out / "demo" / "table.csv"), (out / "demo" / "table.md").read_text()
    command = [
        sys.executable,
        "-m",
        "fairgen",
        "demo",
        "--preset",
        "full",
        "--out",
        str(out / "demo"),
        "--device",
        device,
    ]
    try:
        done = subprocess.run(command, timeout=timeout_s, capture_output=True, text=True)
        (out / "demo.log").write_text(done.stdout + done.stderr)
    except subprocess.TimeoutExpired as expired:
        (out / "demo.log").write_text(f"timed out after {timeout_s:.0f} s\n{expired.stdout or ''}")
        return [], f"`fairgen demo --preset full` did not finish within {timeout_s:.0f} s"
    table = out / "demo" / "table.md"
    if done.returncode or not table.is_file():
        return [], f"`fairgen demo --preset full` failed (exit {done.returncode}); see demo.log"
    return demo_targets(out / "demo" / "table.csv"), table.read_text()


def demo_targets(csv: Path) -> list[dict]:
    """The demo issue's four targets, checked on the demo's table (arms named by their a-e
    prefix)."""
    import pandas as pd

    table = pd.read_csv(csv, index_col="arm")
    arm = {name[0]: table.loc[name] for name in table.index}
    rows = []
    for k in ("d", "e"):
        if k not in arm:
            continue
        r = arm[k]
        gap, erased_gap = r["leakage_bacc"] - r["chance"], r["erased_leakage_bacc"] - r["chance"]
        rows.append(
            {
                "target": f"({k}) leakage gap cut >= 50% by the eraser",
                "value": 1 - erased_gap / gap if gap > 0 else float("nan"),
                "pass": bool(gap > 0 and erased_gap <= 0.5 * gap),
            }
        )
        if "a" in arm:
            rows.append(
                {
                    "target": f"({k}) EO difference <= half of (a)'s",
                    "value": r["eo_diff"] / arm["a"]["eo_diff"],
                    "pass": bool(r["eo_diff"] <= 0.5 * arm["a"]["eo_diff"]),
                }
            )
        if "b" in arm:
            rows.append(
                {
                    "target": f"({k}) target acc within 2 points of the oracle (b)",
                    "value": r["target_acc"] - arm["b"]["target_acc"],
                    "pass": bool(r["target_acc"] >= arm["b"]["target_acc"] - 0.02),
                }
            )
    if "a" in arm and "c" in arm:
        rows.append(
            {
                "target": "(c) raw generator target acc >= (a) real biased data",
                "value": arm["c"]["target_acc"] - arm["a"]["target_acc"],
                "pass": bool(arm["c"]["target_acc"] >= arm["a"]["target_acc"]),
            }
        )
    return rows


TINY_DEMO = {  # overrides of the quick preset (load_run_config's form): every stage in seconds
    "stream": {"n": 512},
    "train": {"steps": 4, "batch_size": 16},
    "steer": {"n": 3000},
    "audit": {
        "n_probe": 256,
        "n_test": 256,
        "stream_n": 128,
        "n_permutations": 0,
        "n_bootstrap": 20,
        "leakage_pca": 8,
        "leakage_max_iter": 50,
        "eraser_n": 256,
        "erased_permutations": 0,
    },
}


# ---------------------------------------------------------------- driver


# ---------------------------------------------------------------- 5. diffusion


def diffusion_rows(device, dry: bool, batch: int, iters: int) -> tuple[list[dict], str]:
    """Images/s of a random SD-1.5-sized pipeline in fp32 and bf16, and the online step on it."""
    try:
        import diffusers  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as error:
        return [], f"skipped: {error} (pip install 'fairgen[diffusion]', or bring its wheels)"
    from fairgen.contrastive import TrainConfig, Trainer
    from fairgen.generators.diffusion import load_diffusion, save_random_pipeline
    from fairgen.stream import Stream, make_spec

    steps = 2 if dry else 20
    prompts = ["a photo of a cat", "a photo of a dog"]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        path = save_random_pipeline(Path(folder) / "sd", size="tiny" if dry else "sd15")
        by_dtype = {}
        for name, dtype in (("fp32", torch.float32), ("bf16 + channels_last", torch.bfloat16)):
            if dtype == torch.bfloat16 and torch.device(device).type != "cuda" and not dry:
                continue
            g = load_diffusion(path, prompts=prompts, steps=steps, device=device, dtype=dtype)
            g.chunk = batch
            z = g.sample_latents(batch, torch.Generator().manual_seed(0))
            y = torch.arange(batch) % len(prompts)
            per_s = rate(lambda g=g, z=z, y=y: g.synthesize(z, y), batch, device, 1, iters)
            by_dtype[name] = g
            rows.append(
                {
                    "run": f"synthesize, {name}",
                    "resolution": g.resolution,
                    "steps": steps,
                    "batch": batch,
                    "images/s": per_s,
                }
            )
        generator = by_dtype.get("bf16 + channels_last") or by_dtype["fp32"]
        crop, view = (28, 32) if dry else (112, 128)
        trainer = Trainer(
            TrainConfig(
                encoder="small_cnn" if dry else "resnet50",
                small_images=dry,
                projection_hidden_dim=128 if dry else 2048,
                augment="simclr",
                crop_size=crop,
                total_steps=100_000,
                progress=False,
                log_every=0,
                bf16=True,
                channels_last=True,
            ),
            device,
        )
        spec = make_spec(
            generator,
            views={"kinds": ["anchor", "renoise"], "renoise": 0.25},
            augment="none",
            resolution=view,
        )
        stream = Stream(spec, batch, device, generator=generator)
        per_s = rate(lambda: trainer.train_step(stream.next_batch()), 2 * batch, device, 1, iters)
        rows.append(
            {
                "run": f"online: stream (anchor + renoise) + {trainer.config.encoder} step",
                "resolution": generator.resolution,
                "steps": steps,
                "batch": batch,
                "images/s": per_s,
            }
        )
    fp32 = rows[0]["images/s"]
    for row in rows:
        row["/ fp32 synthesize"] = row["images/s"] / fp32
    note = (
        "Random weights; UNet of Stable Diffusion 1.5's shape (VAE and text encoder smaller); "
        "classifier-free guidance doubles the UNet batch. Online: one view = one image."
    )
    if dry:
        note = "Dry run: the tiny pipeline (32 px, 2 steps); numbers mean nothing. " + note
    return rows, note


def _default_generator() -> str:
    from fairgen.cli.common import add_generator

    parser = argparse.ArgumentParser()
    add_generator(parser)
    return parser.get_default("generator")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="tiny sizes on whatever device is here (CPU)"
    )
    parser.add_argument(
        "--out", default=os.environ.get("OUT") or "gpu_suite_out", help="results folder"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--budget-s", type=float, default=480.0, help="wall-clock budget for the whole suite (s)"
    )
    parser.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=["checks", "biggan", "online", "demo", "diffusion"],
        help="sections to leave out",
    )
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    dry, device = args.dry_run, args.device
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here; use --dry-run on a CPU")
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
    out = Path(args.out)
    meta = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "device_name": torch.cuda.get_device_name()
        if device == "cuda"
        else f"CPU ({platform.processor() or 'unknown'})",
        "torch": torch.__version__,
        "dry_run": dry,
        "python": platform.python_version(),
    }
    results = Results(out, meta)
    left = lambda: args.budget_s - (time.perf_counter() - t0)  # noqa: E731

    if "checks" not in args.skip:
        rows = [
            check_bf16_loss(device, 32 if dry else 112, 8 if dry else 128),
            check_stream_devices(device, 8 if dry else 256),
            check_resume(device, 4 if dry else 20, 8 if dry else 128),
        ]
        note = (
            ""
            if device == "cuda"
            else "Dry run on the CPU: the device comparisons compare the CPU with itself."
        )
        results.add("checks", rows, note)
        print(f"[{time.perf_counter() - t0:.0f} s] checks done", flush=True)
    if "biggan" not in args.skip:
        rows = []
        for size in (128, 256):
            rows += biggan_rows(
                device,
                size,
                batch=2 if dry else 64,
                iters=1 if dry else 10,
                dry=dry,
                compile_=not dry,
            )
        results.add(
            "biggan",
            rows,
            "Random weights, truncation 0.5. Bound: images/s at "
            f"{BF16_PEAK_TFLOPS:.0f} TFLOP/s bf16 and the package's GFLOP/image {BIGGAN_GFLOP}.",
        )
        print(f"[{time.perf_counter() - t0:.0f} s] biggan done", flush=True)
    if "online" not in args.skip:
        rows = online_rows(
            device,
            dry,
            batch=8 if dry else 128,
            iters=1 if dry else 8,
            budget_s=max(30.0, left() - 240),
        )
        results.add(
            "online",
            rows,
            "One view = one image. MFU: FLOPs of one whole step (generator, "
            f"augmentation, forward, backward; FlopCounterMode) x steps/s / {SPEC_PEAK_TFLOPS:.0f} "
            "TFLOP/s.",
        )
        print(f"[{time.perf_counter() - t0:.0f} s] online done", flush=True)
    if "demo" not in args.skip:
        rows, table = demo_rows(device, out, dry, timeout_s=max(60.0, left() - 10))
        results.add("demo", rows, table)
        print(f"[{time.perf_counter() - t0:.0f} s] demo done", flush=True)
    if "diffusion" not in args.skip:
        rows, note = diffusion_rows(device, dry, batch=2 if dry else 8, iters=1 if dry else 3)
        results.add("diffusion", rows, note)
        print(f"[{time.perf_counter() - t0:.0f} s] diffusion done", flush=True)
    print((out / "results.md").read_text())
    print(
        f"wrote {out / 'results.json'} and {out / 'results.md'} in {time.perf_counter() - t0:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
