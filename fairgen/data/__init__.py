"""The user's real images, with attribute columns: an image folder, a CSV/Parquet manifest, or the
WebDataset shards ``fairgen stream --export --format webdataset`` writes.

* folder: images anywhere below it; folder names ``key=value`` give a column ``key``, other
  folder names give ``label`` (then ``label2``, ...), so ``DIR/shape=circle/texture=dots/x.png``
  has columns shape and texture;
* manifest (``.csv`` / ``.parquet``): a ``path`` column (relative to the manifest's folder, or
  absolute) and attribute columns;
* WebDataset: a folder of ``*.tar`` shards (or one shard); a sample's first view is its image,
  ``.cls`` gives ``class`` and the scalar fields of ``.json`` give the other columns.

``load_data`` checks what it can up front (columns, that every image file exists); ``images``
decodes each file to 8-bit RGB with ``fairgen.data.images.decode_rgb8`` (16-bit rounded to 8 bits,
transparency composited on white, animated images and images over ``max_pixels`` refused) and
names any file it cannot read. Shards are indexed in one pass (each member's offset and size), and
an image is then one seek and read: reading N images from shards is linear in N.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from plumbing.validation import check_int

from .images import MAX_PIXELS, decode_rgb8

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")
PATH_COLUMN = "path"
MAX_JSON_BYTES = 1 << 20  # a sample's .json metadata in a shard


@dataclass
class ImageTable:
    """Images (by path or shard member) and their attribute columns."""

    source: str
    kind: str  # folder | manifest | webdataset
    frame: pd.DataFrame  # attribute columns; image locations are kept in ``locations``
    locations: list = field(repr=False)  # Path, or (shard Path, member name, data offset, size)
    _sha256: str | None = field(default=None, repr=False)
    max_pixels: int = field(
        default=MAX_PIXELS, repr=False
    )  # larger images are refused before decoding

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def columns(self) -> list[str]:
        return list(self.frame.columns)

    def column(self, name: str, argument: str = "column", min_values: int = 2) -> np.ndarray:
        """One attribute column as an array; a clear error if absent or with too few values."""
        if name not in self.frame.columns:
            raise ValueError(
                f"{argument}: {self.source} has no column {name!r}; its columns are {self.columns}"
            )
        values = self.frame[name]
        if values.isna().any():
            raise ValueError(
                f"{argument}: column {name!r} of {self.source} has {int(values.isna().sum())} "
                "missing values"
            )
        distinct = values.unique()
        if len(distinct) < min_values:
            raise ValueError(
                f"{argument}: column {name!r} of {self.source} has only one value "
                f"({distinct[0]!r}); "
                f"an audit needs at least {min_values}"
            )
        return values.to_numpy()

    def subset(self, index) -> ImageTable:
        index = np.asarray(index)
        return ImageTable(
            self.source,
            self.kind,
            self.frame.iloc[index].reset_index(drop=True),
            [self.locations[i] for i in index],
            max_pixels=self.max_pixels,
        )

    def read_bytes(self, i: int) -> bytes:
        where = self.locations[i]
        if isinstance(
            where, tuple
        ):  # a shard member: one seek and one read (its place was indexed once)
            shard, _, offset, size = where
            with open(shard, "rb") as handle:
                handle.seek(offset)
                data = handle.read(size)
            if len(data) != size:
                raise ValueError(
                    f"data: shard {shard} is shorter than when it was indexed ({self._name(i)})"
                )
            return data
        return Path(where).read_bytes()

    def images(self, resolution: int | None = None, batch_size: int = 256, progress: bool = False):
        """Yield batches ``[b, 3, R, R]`` float32 in [0, 1] (``R``: the first image's height by
        default)."""
        rows = range(len(self))
        for start in tqdm(
            range(0, len(self), batch_size),
            desc="reading images",
            disable=not progress,
            leave=False,
        ):
            batch = []
            for i in rows[start : start + batch_size]:
                pixels = decode_rgb8(
                    self.read_bytes(i), f"{self._name(i)} of {self.source}", self.max_pixels
                )
                image = torch.from_numpy(pixels).permute(2, 0, 1)
                resolution = resolution or image.shape[1]
                image = image.float().div_(255).unsqueeze(0)
                if image.shape[-2:] != (resolution, resolution):
                    image = F.interpolate(
                        image,
                        size=(resolution, resolution),
                        mode="bilinear",
                        antialias=True,
                        align_corners=False,
                    )
                batch.append(image)
            yield torch.cat(batch).clamp_(0, 1)

    @property
    def sha256(self) -> str:
        """One digest of every image's bytes and every attribute value, in row order."""
        if self._sha256 is None:
            digest = hashlib.sha256()
            digest.update(self.frame.to_csv(index=False).encode())
            for i in range(len(self)):
                digest.update(hashlib.sha256(self.read_bytes(i)).digest())
            self._sha256 = digest.hexdigest()
        return self._sha256

    def provenance(self) -> dict:
        return {
            "source": self.source,
            "kind": self.kind,
            "rows": len(self),
            "columns": self.columns,
            "sha256": self.sha256,
        }

    def _name(self, i: int) -> str:
        where = self.locations[i]
        return f"{where[1]} in {Path(where[0]).name}" if isinstance(where, tuple) else str(where)


def load_data(source, columns: list[str] | None = None, max_pixels: int = MAX_PIXELS) -> ImageTable:
    """An ImageTable for a folder, a manifest or WebDataset shards; ``columns`` must all be present.
    Images declaring more than ``max_pixels`` pixels are refused (before decoding) when read."""
    from plumbing.outputs import finish_pending

    max_pixels = check_int(max_pixels, "max_pixels", 1)
    path = Path(source).expanduser()
    finish_pending(path)  # an export killed after its commit: move its complete output in first
    if not path.exists():
        raise FileNotFoundError(
            f"data: {source} does not exist (expected an image folder, a .csv/.parquet "
            "manifest or WebDataset shards)"
        )
    if path.is_file() and path.suffix in (".csv", ".parquet"):
        table = _manifest(path)
    elif path.suffix == ".tar" or (path.is_dir() and any(path.glob("*.tar"))):
        table = _webdataset(path)
    elif path.is_dir():
        table = _folder(path)
    else:
        raise ValueError(
            f"data: {source} is not an image folder, a .csv/.parquet manifest or a .tar shard"
        )
    if len(table) == 0:
        raise ValueError(f"data: {source} holds no images")
    missing = [c for c in columns or [] if c not in table.frame.columns]
    if missing:
        raise ValueError(
            f"data: {source} lacks column(s) {missing}; its columns are {table.columns}"
        )
    table.max_pixels = max_pixels
    return table


def _folder(root: Path) -> ImageTable:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    rows = []
    for file in files:
        row, plain = {}, 0
        for part in file.relative_to(root).parent.parts:
            if "=" in part:
                key, value = part.split("=", 1)
                row[key] = value
            else:
                plain += 1
                row["label" if plain == 1 else f"label{plain}"] = part
        rows.append(row)
    return ImageTable(str(root), "folder", pd.DataFrame(rows, index=range(len(rows))), files)


def _manifest(path: Path) -> ImageTable:
    try:
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except ImportError:
        raise ValueError(
            "data: Parquet manifests need pyarrow: pip install 'fairgen[parquet]'"
        ) from None
    except Exception as error:
        raise ValueError(
            f"data: manifest {path} cannot be read ({type(error).__name__}: {error})"
        ) from None
    if PATH_COLUMN not in frame.columns:
        raise ValueError(
            f"data: manifest {path} needs a {PATH_COLUMN!r} column of image files; "
            f"its columns are {list(frame.columns)}"
        )
    files = [
        Path(p) if Path(p).is_absolute() else path.parent / p
        for p in frame[PATH_COLUMN].astype(str)
    ]
    absent = [str(f) for f in files if not f.is_file()]
    if absent:
        raise FileNotFoundError(
            f"data: {len(absent)} image file(s) named by manifest {path} do not exist, "
            f"e.g. {', '.join(absent[:3])}"
        )
    return ImageTable(
        str(path), "manifest", frame.drop(columns=[PATH_COLUMN]).reset_index(drop=True), files
    )


def _webdataset(path: Path) -> ImageTable:
    """Index shards in one sequential pass each (``fairgen.data.tar``): where every image member's
    bytes
    lie, and the samples' ``.cls`` / ``.json`` fields. Members are grouped by key (the name up to
    its first dot)."""
    from .tar import members

    shards = [path] if path.is_file() else sorted(path.glob("*.tar"))
    rows, locations = [], []
    for shard in shards:
        try:
            samples: dict[str, dict] = {}
            with open(shard, "rb") as handle:

                def read(offset: int, size: int) -> bytes:
                    handle.seek(offset)
                    return handle.read(size)

                for name, offset, size in members(shard):
                    key, _, ext = name.partition(".")
                    entry = samples.setdefault(key, {})
                    if ext == "cls":
                        entry["class"] = int(read(offset, min(size, 64)).decode().strip())
                    elif ext == "json":
                        if size > MAX_JSON_BYTES:
                            raise ValueError(
                                f"member {name} is {size:,} bytes (at most {MAX_JSON_BYTES:,})"
                            )
                        meta = json.loads(read(offset, size))
                        if isinstance(meta, dict):
                            entry["json"] = {k: v for k, v in meta.items() if np.isscalar(v)}
                    elif ("." + ext).lower().endswith(IMAGE_SUFFIXES):
                        entry.setdefault("images", []).append((ext, name, offset, size))
        except (OSError, ValueError, UnicodeDecodeError) as error:
            raise ValueError(f"data: shard {shard} cannot be read ({error})") from None
        for entry in samples.values():
            if not entry.get("images"):
                continue
            _, name, offset, size = min(
                entry["images"]
            )  # the first view, as sorted member extensions
            row = {"class": entry["class"]} if "class" in entry else {}
            row.update(entry.get("json", {}))
            rows.append(row)
            locations.append((shard, name, offset, size))
    return ImageTable(
        str(path), "webdataset", pd.DataFrame(rows, index=range(len(rows))), locations
    )
