"""BigGAN-deep synthesis speed: package eager vs the fairgen adapter in fp32, bf16, channels_last
and torch.compile, measured side by side in one run.

Random weights with the real BigGAN-deep layout (nothing is downloaded): speed does not depend
on the weight values. Run by hand, e.g.

    python benchmarks/biggan_speed.py                      # CUDA if present, else a tiny CPU run
    python benchmarks/biggan_speed.py --size 128 --batch 128 --no-compile

Prints images/s, the ratio to the package's fp32 eager forward measured in the same run, and the
largest absolute difference from the adapter's fp32 eager images (in [0, 1]).
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from pytorch_pretrained_biggan import BigGAN, BigGANConfig

from fairgen.generators.biggan import BigGANGenerator

_STAGES = [[16, 16], [16, 8], [8, 8], [8, 4], [4, 2], [2, 1], [1, 1]]  # (in, out) per up-block
_UPSAMPLES = {128: 5, 256: 6, 512: 7}


def deep_config(size: int) -> BigGANConfig:
    """The published BigGAN-deep layout at ``size`` px (for 128: the package's default config)."""
    if size == 128:
        return BigGANConfig()
    layers = []
    for c_in, c_out in _STAGES[: _UPSAMPLES[size]]:
        layers += [[False, c_in, c_in], [True, c_in, c_out]]
    return BigGANConfig(output_dim=size, layers=layers, attention_layer_position=8)


def random_biggan(size: int, device: torch.device) -> BigGAN:
    """A BigGAN-deep with random weights, its spectral norms converged so activations stay sane."""
    torch.manual_seed(0)
    model = BigGAN(deep_config(size)).to(device)
    with torch.no_grad():
        model.generator.bn.weight.fill_(1.0)  # left uninitialised by the package
        model.generator.bn.bias.zero_()
        for module in model.modules():
            if hasattr(module, "weight_orig"):
                matrix = module.weight_orig.flatten(1)
                u, v = module.weight_u, module.weight_v
                for _ in range(30):  # power iteration towards the top singular pair
                    v = F.normalize(matrix.T @ u, dim=0)
                    u = F.normalize(matrix @ v, dim=0)
                module.weight_u.copy_(u)
                module.weight_v.copy_(v)
    return model.eval()


def images_per_second(fn: Callable[[], torch.Tensor], batch: int, warmup: int, iters: int) -> float:
    for _ in range(warmup):
        fn()
    _sync()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    _sync()
    return batch * iters / (time.perf_counter() - start)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, choices=sorted(_UPSAMPLES), default=256)
    parser.add_argument("--batch", type=int, help="default: 64 on CUDA, 1 on CPU")
    parser.add_argument("--iters", type=int, help="timed forwards per variant (default 20 / 2)")
    parser.add_argument("--truncation", type=float, default=0.5)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    args = parser.parse_args()

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    batch = args.batch or (64 if cuda else 1)
    iters = args.iters or (20 if cuda else 2)
    warmup = 3 if cuda else 1
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 here
        torch.backends.cudnn.allow_tf32 = False

    package = random_biggan(args.size, device)
    adapter = BigGANGenerator(
        copy.deepcopy(package),
        name=f"biggan-deep-{args.size} (random)",
        truncation=args.truncation,
        device=device,
    )
    gen = torch.Generator(device).manual_seed(0)
    z = adapter.sample_latents(batch, gen)
    y = adapter.sample_classes(batch, gen)
    one_hot = F.one_hot(y, 1000).float()

    def package_fp32():
        with torch.no_grad():
            return (package(z, one_hot, args.truncation) + 1) / 2

    def autocast(g):
        def run():
            with torch.autocast(device.type, dtype=torch.bfloat16):
                return g.synthesize(z, y)

        return run

    def variant(channels_last=False, compiled=False):
        g = copy.deepcopy(adapter)
        if channels_last:
            g.model.to(memory_format=torch.channels_last)
        if compiled:
            g.model.generator = torch.compile(g.model.generator, fullgraph=True)
        return g

    rows = [
        ("package fp32 eager (baseline)", package_fp32),
        ("adapter fp32 eager", lambda: adapter.synthesize(z, y)),
        ("adapter bf16 autocast", autocast(adapter)),
    ]
    last = variant(channels_last=True)
    rows += [
        ("adapter fp32 channels_last", lambda: last.synthesize(z, y)),
        ("adapter bf16 channels_last", autocast(last)),
    ]
    if not args.no_compile:
        compiled = variant(compiled=True)
        compiled_last = variant(channels_last=True, compiled=True)
        rows += [
            ("adapter fp32 torch.compile", lambda: compiled.synthesize(z, y)),
            ("adapter bf16 torch.compile", autocast(compiled)),
            ("adapter bf16 channels_last compile", autocast(compiled_last)),
        ]

    name = torch.cuda.get_device_name() if cuda else "CPU"
    print(
        f"biggan-deep-{args.size}, random weights, {name}, batch {batch}, "
        f"{iters} timed forwards, truncation {args.truncation}"
    )
    reference = adapter.synthesize(z, y)
    baseline = None
    print(f"{'variant':38s} {'images/s':>10s} {'x baseline':>10s} {'max |diff|':>11s}")
    for label, fn in rows:
        start = time.perf_counter()
        speed = images_per_second(fn, batch, warmup, iters)
        baseline = baseline or speed
        error = (fn().float() - reference).abs().max().item()
        wall = time.perf_counter() - start
        print(f"{label:38s} {speed:10.2f} {speed / baseline:10.2f} {error:11.2e}  ({wall:.0f} s)")


if __name__ == "__main__":
    main()
