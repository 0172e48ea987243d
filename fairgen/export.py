"""Write samples of a stream to disk, for users who need files: a PNG folder or WebDataset shards.

PNG folder: ``DIR/<class>/<index>_v<view>.png`` plus ``DIR/labels.csv``. WebDataset: tar shards
``DIR/shard-000000.tar`` whose members ``<key>.v<view>.png``, ``<key>.cls`` and ``<key>.json``
group by key, the layout the ``webdataset`` package reads. PNGs are encoded with torchvision.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import torch
from torchvision.io import encode_png
from tqdm.auto import tqdm

FORMATS = ("png", "webdataset")


def _png_bytes(image: torch.Tensor) -> bytes:
    pixels = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    return encode_png(pixels).numpy().tobytes()


def export_stream(stream, out: str | Path, n: int, fmt: str = "png", shard_size: int = 1000, progress: bool = True) -> Path:
    """Write the next ``n`` samples (all their views) of ``stream`` under ``out`` (the first ``n``
    for a fresh stream); ``shard_size`` samples per WebDataset shard."""
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size <= 0:
        raise ValueError(f"shard_size must be a positive integer, got {shard_size!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written, rows, tar = 0, ["key,class,step"], None
    with tqdm(total=n, desc=f"exporting {fmt}", disable=not progress) as bar:
        try:
            while written < n:
                batch = stream.next_batch()
                for views, label, latent in zip(batch["views"], batch["labels"].tolist(), batch["latents"], strict=True):
                    if written == n:
                        break
                    key = f"{written:08d}"
                    if fmt == "png":
                        folder = out / str(label)
                        folder.mkdir(exist_ok=True)
                        for v, view in enumerate(views):
                            (folder / f"{key}_v{v}.png").write_bytes(_png_bytes(view))
                        rows.append(f"{key},{label},{batch['step']}")
                    else:
                        if written % shard_size == 0:
                            if tar is not None:
                                tar.close()
                            tar = tarfile.open(out / f"shard-{written // shard_size:06d}.tar", "w")
                        members = {f"{key}.v{v}.png": _png_bytes(view) for v, view in enumerate(views)}
                        members[f"{key}.cls"] = str(label).encode()
                        members[f"{key}.json"] = json.dumps(
                            {"class": label, "latent": latent.tolist(), "step": batch["step"]}
                        ).encode()
                        for name, data in members.items():
                            info = tarfile.TarInfo(name)
                            info.size = len(data)
                            tar.addfile(info, io.BytesIO(data))
                    written += 1
                    bar.update(1)
        finally:
            if tar is not None:
                tar.close()
    if fmt == "png":
        (out / "labels.csv").write_text("\n".join(rows) + "\n")
    return out
