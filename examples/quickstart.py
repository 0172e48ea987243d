"""Quickstart: a biased world, the embedded generator, and a steered (texture-balanced) sample.

Run: python examples/quickstart.py   (writes quickstart_raw.png and quickstart_balanced.png)
"""

import torch

import fairgen
import steering
from fairgen.plotting import save_grid
from fairgen.world.judges import load_judges

world = fairgen.World(resolution=32)
split = world.sample(2000, seed=0, bias=0.9)
print(f"biased world split: Cramér's V(shape, texture) = {split.cramers_v():.2f}")

generator = fairgen.load_generator("world-sprites-z128")
judges = load_judges()
steerer, _ = steering.fit_steerer(generator, judges["texture"].predict, n=8000, mode="balance")

z = generator.sample_latents(64, torch.Generator().manual_seed(0))
y = torch.arange(64) % generator.num_classes
raw, balanced = (
    generator.synthesize(z, y),
    generator.synthesize(
        steerer(z, y, torch.Generator().manual_seed(1), generator.sample_latents), y
    ),
)
for name, images in (("raw", raw), ("balanced", balanced)):
    texture = judges["texture"].predict(images)
    v, corrected = (
        fairgen.cramers_v(y.numpy(), texture.numpy()),
        fairgen.cramers_v_corrected(y.numpy(), texture.numpy()),
    )
    print(
        f"{name:>8s}: V(class, judged texture) = {v:.2f} (bias-corrected {corrected:.2f}) on 64 "
        "samples"
    )
    save_grid(images, f"quickstart_{name}.png", nrow=8, title=f"{name} (columns cycle the class)")
