"""Files that travel between people: content hashes, reproducible safetensors, paths kept inside a card.

Kept in the leaf package so that ``steering`` (cards) and ``fairgen`` (generators, streams,
checkpoints) share one definition without ``steering`` importing ``fairgen``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

METADATA_KEY = "fairgen"


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes (its content only)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a new file beside ``path``, then rename it over ``path`` (never written
    through an existing name or hard link; a full disk is one clear error): ``steering.outputs``."""
    from .outputs import replace_file

    return replace_file(path, data)


def default_file_mode() -> int:
    from .outputs import default_file_mode as mode

    return mode()


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def save_safetensors(tensors: dict, path: str | os.PathLike, metadata: dict | None = None) -> str:
    """Write tensors as safetensors whose bytes depend on the content only; returns the SHA-256.

    safetensors writes a metadata *map* in an order that changes from process to process, so all
    metadata goes under one key as sorted JSON. The write is atomic.
    """
    payload = safetensors_payload(tensors, metadata)
    atomic_write_bytes(path, payload)
    return hashlib.sha256(payload).hexdigest()


def safetensors_payload(tensors: dict, metadata: dict | None = None) -> bytes:
    """The bytes ``save_safetensors`` writes (for outputs staged with other files)."""
    from safetensors.torch import save

    header = {METADATA_KEY: json.dumps(metadata or {}, sort_keys=True, default=_plain)}
    return save({k: v.detach().cpu().contiguous() for k, v in sorted(tensors.items())}, metadata=header)


def read_safetensors_metadata(path: str | os.PathLike, what: str = "file") -> dict:
    """The metadata ``save_safetensors`` wrote (legacy multi-key headers are returned as they are).

    A missing, truncated or foreign file raises a ValueError/FileNotFoundError naming it.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        with safe_open(str(path), "pt") as handle:
            raw = handle.metadata() or {}
    except Exception as error:  # safetensors raises its own error types for corrupt headers
        raise ValueError(f"{what} {path} is not a readable safetensors file ({error})") from None
    if METADATA_KEY in raw:
        try:
            return json.loads(raw[METADATA_KEY])
        except json.JSONDecodeError as error:
            raise ValueError(f"{what} {path} has corrupt metadata: {error}") from None
    return dict(raw)


def load_safetensors(path: str | os.PathLike, what: str = "file", device: str = "cpu") -> dict:
    """All tensors of a safetensors file, with a clear error naming a corrupt or truncated one."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        return load_file(str(path), device=str(device))
    except Exception as error:
        raise ValueError(f"{what} {path} is not a readable safetensors file ({error})") from None


def resolve_inside(folder: str | os.PathLike, name: str, what: str) -> Path:
    """``folder / name`` for a file named inside a received card; refuse names that leave ``folder``.

    Absolute names, ``..`` components and links that point elsewhere are refused before anything
    is opened or hashed, so a card cannot make us read (or reveal facts about) files outside it.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"{what}: expected a file name relative to the card, got {name!r}")
    relative = Path(name)
    if relative.is_absolute() or ".." in relative.parts:
        raise ValueError(f"{what}: {name!r} must be a path inside the card's folder (no absolute path, no '..')")
    base = Path(folder).resolve()
    target = (base / relative).resolve()
    if base != target and base not in target.parents:
        raise ValueError(f"{what}: {name!r} resolves outside the card's folder {base}")
    return target


def relative_to_card(path: str | os.PathLike, card_folder: str | os.PathLike) -> str:
    """How a card in ``card_folder`` should name ``path``: relative, with '/' separators."""
    return Path(os.path.relpath(Path(path).resolve(), Path(card_folder).resolve())).as_posix()


def _plain(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
