"""Write samples of a stream to disk, for users who need files: a PNG folder or WebDataset shards.

PNG folder: ``DIR/<class>/<index>_v<view>.png``, ``DIR/labels.csv`` (a manifest: ``path`` of the
first view, relative to it, then ``key``, ``class``, ``step`` and the protected columns) and
``DIR/latents.safetensors`` (each row's anchor latent, in manifest order). WebDataset: tar shards
``DIR/shard-000000.tar`` whose members ``<key>.v<view>.png``, ``<key>.cls`` and ``<key>.json``
(class, step, latent and the protected columns) group by key, the layout the ``webdataset``
package reads. PNGs are encoded with torchvision. Either output is what ``fairgen audit --data``
reads as it is (``DIR/labels.csv`` or ``DIR``).

The protected columns are every attribute the stream's eraser card names, read by the card's
labeler from the sample's anchor image before augmentation (what steering judged), as value
names when the labeler has them. A card never runs code it names: labelers by a registered
scheme (``world:texture``) are loaded, others must be passed as ``labelers={column: callable}``.

The export is all or nothing: it is written in a temporary folder beside ``DIR`` that then replaces
``DIR`` whole (``plumbing.outputs.staged_folder``), so an interrupted export leaves the previous one
as it was, and a ``DIR`` holding files an export does not write is refused.
"""

from __future__ import annotations

import csv
import io
import json
import tarfile
import warnings
from pathlib import Path

import torch
from torchvision.io import encode_png
from tqdm.auto import tqdm

from plumbing.outputs import check_replaceable, staged_folder, write_new
from plumbing.validation import check_int

FORMATS = ("png", "webdataset")
RESERVED = ("path", "key", "class", "step", "latent")  # columns the export writes itself
REPLACEABLE = (
    "labels.csv",
    "latents.safetensors",
    "shard-*.tar",
    "[0-9]*",
)  # what an earlier export wrote: class folders, shards


def _png_bytes(image: torch.Tensor) -> bytes:
    pixels = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    return encode_png(pixels).numpy().tobytes()


def export_stream(
    stream,
    out: str | Path,
    n: int,
    fmt: str = "png",
    shard_size: int = 1000,
    progress: bool = True,
    labelers: dict | None = None,
) -> Path:
    """Write the next ``n`` samples (all their views) of ``stream`` under ``out`` (the first ``n``
    for a fresh stream); ``shard_size`` samples per WebDataset shard. ``labelers`` gives
    ``{column: callable}`` for protected columns (default: those the eraser card names)."""
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    n, shard_size = check_int(n, "n", 1), check_int(shard_size, "shard_size", 1)
    out = Path(out)
    check_replaceable(out, REPLACEABLE)
    columns = protected_labelers(stream, labelers)
    with staged_folder(out, REPLACEABLE) as stage:
        _export_into(stream, stage, n, fmt, shard_size, progress, columns)
    return out


def protected_labelers(stream, given: dict | None = None) -> dict:
    """``{column: Labeler}`` for each protected attribute of the stream's eraser card, plus
    ``given``; a card's labeler that is not a registered scheme (so would run code) is skipped
    with a warning unless ``given`` supplies it."""
    from .labelers import load_labeler
    from .labelers.registry import names_registered_scheme

    given = dict(given or {})
    named = card_labeler_names(stream)
    for column in given:
        if not isinstance(column, str) or column in RESERVED:
            raise ValueError(f"labelers: {column!r} is not a usable column name")
    out = {}
    for column, spec in named.items():
        if column in given:
            continue
        if names_registered_scheme(spec):
            out[column] = load_labeler(spec, generator=stream.generator, device=stream.device)
        else:
            warnings.warn(
                f"export: the eraser card labels {column!r} with {spec!r}, which a card may not "
                f"run; pass it as export_stream(..., labelers={{{column!r}: callable}}) to "
                "export that column",
                stacklevel=3,
            )
    for column, fn in given.items():
        out[column] = (
            load_labeler(fn, generator=stream.generator, device=stream.device)
            if (isinstance(fn, str))
            else fn
        )
    return out


def card_labeler_names(stream) -> dict[str, str]:
    """``{column: labeler name}`` the stream's eraser card was fitted with ({} without a card)."""
    eraser = getattr(getattr(stream, "spec", None), "eraser", None)
    if eraser is None:
        return {}
    from steering.card import read_card

    card = read_card(eraser)
    labelers = card.get("labelers") or {}
    protected = card.get("protected")
    names = {}
    for key, spec in labelers.items():
        if key == "keep" or not isinstance(spec, str):
            continue
        column = protected if key == "protected" and isinstance(protected, str) else key
        names[column] = spec
    return names


@torch.no_grad()
def _protected_columns(stream, columns: dict, latents, classes) -> dict[str, list]:
    """Each protected column's labels of the batch's anchor images, before augmentation."""
    if not columns:
        return {}
    generator = stream.generator
    y = classes.to(generator.device) if generator.num_classes else None
    images = generator.synthesize(latents.to(generator.device), y)
    out = {}
    for column, fn in columns.items():
        labels = getattr(fn, "predict", fn)(images)
        labels = labels.argmax(dim=1) if labels.ndim == 2 else labels
        values = getattr(fn, "values", None)
        out[column] = [values[i] if values else i for i in labels.long().tolist()]
    return out


def _export_into(
    stream, out: Path, n: int, fmt: str, shard_size: int, progress: bool, columns: dict
) -> None:
    written, tar, shard = 0, None, None
    rows = [["path", "key", "class", "step", *columns]]
    latents_kept = []

    def close_shard():
        if tar is not None:
            tar.close()
            write_new(out / f"shard-{(written - 1) // shard_size:06d}.tar", shard.getvalue())

    with tqdm(total=n, desc=f"exporting {fmt}", disable=not progress) as bar:
        while written < n:
            batch = stream.next_batch()
            take = min(len(batch["labels"]), n - written)
            protected = _protected_columns(
                stream, columns, batch["latents"][:take], batch["labels"][:take]
            )
            parts = (batch["views"], batch["labels"].tolist(), batch["latents"])
            for i, (views, label, latent) in enumerate(
                zip(*(p[:take] for p in parts), strict=True)
            ):
                key = f"{written:08d}"
                values = {column: protected[column][i] for column in columns}
                if fmt == "png":
                    folder = out / str(label)
                    folder.mkdir(exist_ok=True)
                    for v, view in enumerate(views):
                        write_new(folder / f"{key}_v{v}.png", _png_bytes(view))
                    rows.append(
                        [f"{label}/{key}_v0.png", key, label, batch["step"], *values.values()]
                    )
                    latents_kept.append(latent.detach().float().cpu())
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
                        {"class": label, "step": batch["step"], **values, "latent": latent.tolist()}
                    ).encode()
                    for name, data in members.items():
                        info = tarfile.TarInfo(name)
                        info.size = len(data)
                        tar.addfile(info, io.BytesIO(data))
                written += 1
                bar.update(1)
    close_shard()
    if fmt == "png":
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows(rows)
        write_new(out / "labels.csv", text.getvalue().encode())
        from safetensors.torch import save

        write_new(out / "latents.safetensors", save({"latents": torch.stack(latents_kept)}))
