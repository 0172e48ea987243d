"""Your own generator and labeler, as the command line takes them: ``module:callable``.

Run from the repository root with this folder importable (the README's "Your own generator" lines):

    PYTHONPATH=examples fairgen steer --generator my_plugins:generator --labeler my_plugins:dark \\
        --protected dark --out work/own

A generator factory is called with ``device=`` (and any generator options) and returns an object
with
``latent_dim``, ``num_classes`` (0: unconditional), ``resolution``, ``sample_latents(n, generator)``
and ``synthesize(z, y) -> images [N, 3, H, W] in [0, 1]``. A labeler maps such images to integer
labels ``[N]`` (or scores ``[N, k]``). Here both wrap the embedded world so that the example runs
offline; replace them with your BigGAN, face GAN or classifier.
"""

import torch

from fairgen.generators import load_generator

DARK = 0.45  # mean luma below this: dark (a quarter of the samples, nearly all of one class)


def generator(device="cpu", **options):
    """The embedded generator, standing in for yours."""
    return load_generator("world-sprites-z128", device=device, **options)


def dark(images: torch.Tensor) -> torch.Tensor:
    """1 for a dark image (mean luma below ``DARK``), else 0: a rule, not a classifier."""
    luma = 0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2]
    return (luma.mean(dim=(1, 2)) < DARK).long()
