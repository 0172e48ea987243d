"""PNG figures people would rather look at: image grids, optionally captioned."""

from __future__ import annotations

import io
import math
from pathlib import Path

import torch
from einops import rearrange

from plumbing.outputs import replace_file


def save_grid(
    images: torch.Tensor, path: str | Path, nrow: int | None = None, captions=None, title=None
) -> Path:
    """Save ``[N, 3, H, W]`` images in [0, 1] as a PNG grid, with a small caption under each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(images)
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    scale = 1.3 if captions is not None else 1.0
    fig, axes = plt.subplots(rows, nrow, figsize=(nrow * 1.1, rows * 1.1 * scale), squeeze=False)
    pictures = rearrange(images.detach().float().cpu().clamp(0, 1), "n c h w -> n h w c").numpy()
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(pictures[i], interpolation="nearest")
            if captions is not None:
                ax.set_title(captions[i], fontsize=6, pad=2)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(pad=0.3)
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=110, format="png")
    plt.close(fig)
    return replace_file(
        path, buffer.getvalue()
    )  # a new file renamed into place; a full disk is one clear error
