"""Walk cards: learned walks saved as data (safetensors + JSON) with their provenance.

``<stem>.json`` holds the transformations, their alpha ranges, the generator the walks were
learned on (name and SHA-256), the training settings and loss, the fidelity measured, and the
name and SHA-256 of ``<stem>.safetensors`` (the directions). Stream specs pin the JSON by
SHA-256. Loading checks both checksums and refuses walks learned on another generator.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

from plumbing.files import card_paths, printable, read_card, safetensors_payload
from plumbing.outputs import staged_files, write_new

from .directions import LatentWalks

CARD_KIND = "walks"
CARD_VERSION = 1


walk_card_paths = card_paths  # (json, safetensors) paths of a walk card, given either or the stem


def _plain(value):
    """JSON-safe numbers: NaN and infinities become null (strict JSON has neither)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def save_walks(
    walks: LatentWalks, path: str | Path, generator, provenance: dict | None = None
) -> Path:
    """Write ``<stem>.safetensors`` and ``<stem>.json`` for walks learned on ``generator``; returns
    the JSON path."""
    if not isinstance(walks, LatentWalks):
        raise ValueError(f"walks must be a LatentWalks, got {type(walks).__name__}")
    json_path, tensor_path = walk_card_paths(path)
    payload = safetensors_payload({"directions": walks.directions}, {"fairgen_card": CARD_KIND})
    tensor_sha = hashlib.sha256(payload).hexdigest()
    card = {
        "fairgen_card": CARD_KIND,
        "version": CARD_VERSION,
        "generator": {"name": generator.name, "sha256": generator.checksum},
        "transformations": list(walks.transformations),
        "alpha_ranges": {t: list(r) for t, r in walks.alpha_ranges.items()},
        "per_class": walks.per_class,
        "latent_dim": walks.latent_dim,
        "tensors": {"file": tensor_path.name, "sha256": tensor_sha},
        **_plain(provenance or {}),
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    with staged_files(
        [json_path, tensor_path]
    ) as stage:  # JSON and tensors replace an older card together
        write_new(stage / tensor_path.name, payload)
        write_new(
            stage / json_path.name,
            json.dumps(card, indent=2, sort_keys=True, allow_nan=False).encode(),
        )
    return json_path


def read_walk_card(path: str | Path) -> dict:
    """The card's JSON, after checking it is a walk card."""
    return read_card(path, "walk card", CARD_KIND, version=CARD_VERSION, tensors=False)[0]


def load_walks(
    path: str | Path, generator=None, sha256: str | None = None
) -> tuple[LatentWalks, dict]:
    """Rebuild the walks; ``sha256`` pins the JSON, ``generator`` refuses walks learned on other
    weights."""
    json_path, _ = card_paths(path)
    card, tensors = read_card(
        json_path,
        "walk card",
        CARD_KIND,
        version=CARD_VERSION,
        sha256=sha256,
        expect={"directions": ("F16", "BF16", "F32", "F64")},  # any float, converted on purpose
    )
    learned_on = card.get("generator") if isinstance(card.get("generator"), dict) else {}
    if generator is not None and learned_on.get("sha256") != generator.checksum:
        raise ValueError(
            f"walk card {json_path.name} was learned on generator "
            f"{printable(card.get('generator'))}, "
            f"not on {generator.name!r} with SHA-256 {generator.checksum}"
        )
    try:
        walks = LatentWalks(tensors["directions"], card["transformations"], card["alpha_ranges"])
    except KeyError as error:
        raise ValueError(f"walk card {json_path} has no {error} entry") from None
    except (TypeError, ValueError) as error:
        raise ValueError(f"walk card {json_path}: {error}") from None
    if generator is not None and walks.latent_dim != generator.latent_dim:
        raise ValueError(
            f"walk card {json_path.name} has latent size {walks.latent_dim}, the generator "
            f"{generator.latent_dim}"
        )
    return walks, card
