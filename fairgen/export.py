"""Write samples of a stream to disk, for users who need files: a PNG folder or WebDataset shards.

PNG folder: ``DIR/<class>/<index>_v<view>.png`` plus ``DIR/labels.csv``. WebDataset: tar shards
``DIR/shard-000000.tar`` whose members ``<key>.v<view>.png``, ``<key>.cls`` and ``<key>.json``
group by key, the layout the ``webdataset`` package reads. PNGs are encoded with torchvision.

The export is all or nothing: it is written in a temporary folder beside ``DIR`` that then replaces
``DIR`` whole (``plumbing.outputs.staged_folder``), so an interrupted export leaves the previous one
as it was, and a ``DIR`` holding files an export does not write is refused.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import torch
from torchvision.io import encode_png
from tqdm.auto import tqdm

from plumbing.outputs import check_replaceable, staged_folder, write_new
from plumbing.validation import check_int

FORMATS = ("png", "webdataset")
REPLACEABLE = (
    "labels.csv",
    "shard-*.tar",
    "[0-9]*",
)  # what an earlier export wrote: class folders, shards


def _png_bytes(image: torch.Tensor) -> bytes:
    pixels = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    return encode_png(pixels).numpy().tobytes()


def export_stream(
    stream, out: str | Path, n: int, fmt: str = "png", shard_size: int = 1000, progress: bool = True
) -> Path:
    """Write the next ``n`` samples (all their views) of ``stream`` under ``out`` (the first ``n``
    for a fresh stream); ``shard_size`` samples per WebDataset shard."""
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    n, shard_size = check_int(n, "n", 1), check_int(shard_size, "shard_size", 1)
    out = Path(out)
    check_replaceable(out, REPLACEABLE)
    with staged_folder(out, REPLACEABLE) as stage:
        _export_into(stream, stage, n, fmt, shard_size, progress)
    return out


def _export_into(stream, out: Path, n: int, fmt: str, shard_size: int, progress: bool) -> None:
    written, rows, tar, shard = 0, ["key,class,step"], None, None

    def close_shard():
        if tar is not None:
            tar.close()
            write_new(out / f"shard-{(written - 1) // shard_size:06d}.tar", shard.getvalue())

    with tqdm(total=n, desc=f"exporting {fmt}", disable=not progress) as bar:
        while written < n:
            batch = stream.next_batch()
            for views, label, latent in zip(
                batch["views"], batch["labels"].tolist(), batch["latents"], strict=True
            ):
                if written == n:
                    break
                key = f"{written:08d}"
                if fmt == "png":
                    folder = out / str(label)
                    folder.mkdir(exist_ok=True)
                    for v, view in enumerate(views):
                        write_new(folder / f"{key}_v{v}.png", _png_bytes(view))
                    rows.append(f"{key},{label},{batch['step']}")
                else:
                    if written % shard_size == 0:
                        close_shard()
                        shard = (
                            io.BytesIO()
                        )  # a shard is built in memory, then written as one new file
                        tar = tarfile.open(fileobj=shard, mode="w")
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
    close_shard()
    if fmt == "png":
        write_new(out / "labels.csv", ("\n".join(rows) + "\n").encode())
