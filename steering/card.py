"""Steering cards: a fitted steerer saved as data (safetensors + JSON) with its provenance.

``<stem>.json`` holds the method (a name in ``steering.registry``), the mode, the guarantee, the
steerer's ``config()`` under ``"steerer"``, a short summary (classes, values, latent size, draws
per kept sample), the SHA-256 of ``<stem>.safetensors`` (the steerer's ``tensors()``) and the
provenance the caller gives (the generator it was fitted on, name and SHA-256; the labeler; the
sample count; the measured report). Both files are written together (``plumbing.outputs``:
both or neither replace an older card). Loading verifies both checksums and refuses a mismatch. A
card is data from someone else: its JSON is read strictly (``plumbing.files.read_json``), its
tensors file must sit in its folder, and the steerer's class checks the config and tensors
(names, dtypes, shapes, finite values) before use.

Every card states its ``"guarantee"``: ``"proposed"`` (latents steered by a model of the labeler)
or ``"confirmed"`` (every kept sample labelled; a stream playing it needs the labeler, which the
card names in ``"labelers"`` but never runs).

Cards written before the registry ("eraser cards", ``"fairgen_card": "eraser"``, version 1) still
load: linear ones kept their config at the top level, classifier and confirmed ones under their
``"kind"`` (``"classifier"``, ``"confirmed"``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from safetensors.torch import save

from plumbing.files import load_safetensors, printable, read_json, resolve_inside, sha256_file
from plumbing.outputs import finish_pending, staged_files, write_new

from .base import Steerer
from .registry import steerer_class

CARD = "steering"
CARD_VERSION = 2
OLD_CARD = "eraser"  # cards of version 1
OLD_KINDS = {"classifier": "resample", "confirmed": "confirmed"}  # old "kind" -> method


def card_paths(path: str | Path) -> tuple[Path, Path]:
    """``(json, safetensors)`` paths of a card, given either file or the common stem."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".json", ".safetensors") else path
    return stem.with_suffix(".json"), stem.with_suffix(".safetensors")


def save_card(steerer: Steerer, path: str | Path, provenance: dict) -> Path:
    """Write ``<stem>.safetensors`` and ``<stem>.json`` together (both or neither replace an older
    card: ``plumbing.outputs.staged_files``); returns the JSON path."""
    steerer._check_fitted()
    json_path, tensor_path = card_paths(path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {name: value.detach().cpu().contiguous() for name, value in steerer.tensors().items()}
    config = steerer.config()
    payload = save(tensors)
    card = {
        "fairgen_card": CARD,
        "version": CARD_VERSION,
        "method": steerer.method,
        "guarantee": steerer.guarantee,
        **steerer.summary(),
        "target_distribution": config.get("target_distribution"),
        "steerer": config,
        "tensors": {"file": tensor_path.name, "sha256": hashlib.sha256(payload).hexdigest()},
        **provenance,
    }
    with staged_files([json_path, tensor_path]) as stage:
        write_new(stage / tensor_path.name, payload)
        write_new(stage / json_path.name, json.dumps(card, indent=2, default=float).encode())
    return json_path


def read_card(path: str | Path) -> dict:
    """The card's JSON (strict, bounded), once checked to be a steering card (or an old eraser
    card)."""
    json_path, _ = card_paths(path)
    finish_pending(json_path)  # a writer killed after its commit: its new card is complete
    card = read_json(json_path, "steering card")
    if not isinstance(card, dict) or card.get("fairgen_card") not in (CARD, OLD_CARD):
        raise ValueError(f"{json_path} is not a fairgen steering card")
    return card


def card_method(card: dict, json_path: Path) -> tuple[str, dict]:
    """``(method, the steerer's config)`` of a card, new or old layout."""
    where = f"steering card {json_path}"
    if card.get("fairgen_card") == OLD_CARD:
        kind = card.get("kind")
        if kind is None:  # linear: the config is the card itself
            method, config = card.get("method"), card
        elif kind in OLD_KINDS:
            method, config = OLD_KINDS[kind], card.get(kind)
        else:
            raise ValueError(f"{where} has the unknown kind {printable(repr(kind))}")
    else:
        method, config = card.get("method"), card.get("steerer")
    if not isinstance(config, dict):
        raise ValueError(f"{where} lacks the steerer's configuration")
    return method, config


def card_tensors(card: dict, json_path: Path) -> Path:
    """The tensors file a card names, resolved inside the card's folder (never outside it)."""
    tensors = card.get("tensors")
    if not isinstance(tensors, dict) or "file" not in tensors or "sha256" not in tensors:
        raise ValueError(
            f"steering card {json_path} has no 'tensors' entry with 'file' and 'sha256'"
        )
    return resolve_inside(
        json_path.parent, tensors["file"], f"steering card {json_path.name}: tensors file"
    )


def load_card(path: str | Path, generator=None) -> tuple[Steerer, dict]:
    """Rebuild the steerer (its class from the registry); with ``generator``, refuse a card
    fitted on other weights. Returns ``(steerer, card)``."""
    card = read_card(path)
    json_path, _ = card_paths(path)
    tensor_path = _existing_tensors(card, json_path)
    if sha256_file(tensor_path) != card["tensors"]["sha256"]:
        raise ValueError(f"{tensor_path} does not match the SHA-256 recorded in {json_path.name}")
    fitted_on = card.get("generator") if isinstance(card.get("generator"), dict) else {}
    if generator is not None and fitted_on.get("sha256") != generator.checksum:
        raise ValueError(
            f"steering card {json_path.name} was fitted on generator "
            f"{printable(card.get('generator'))}, "
            f"not on {generator.name!r} with SHA-256 {generator.checksum}"
        )
    method, config = card_method(card, json_path)
    try:
        cls = steerer_class(method)
    except ValueError as error:
        raise ValueError(f"steering card {json_path}: {printable(error)}") from None
    tensors = load_safetensors(
        tensor_path,
        f"steering card tensors of {json_path.name}",
        expect=cls.tensor_dtypes(config),
        finite=True,
    )
    try:
        return cls.from_state(config, tensors), card
    except ValueError as error:
        raise ValueError(f"steering card {json_path}: {printable(error)}") from None
    except (KeyError, TypeError, RuntimeError, AttributeError, IndexError) as error:
        raise ValueError(
            f"steering card {json_path}: its fields and tensors do not fit together "
            f"({type(error).__name__}: {printable(error)})"
        ) from None


def _existing_tensors(card: dict, json_path: Path) -> Path:
    """The card's tensors file; a card renamed with its tensors finds them under its own stem
    (their SHA-256 is still checked)."""
    tensor_path = card_tensors(card, json_path)
    if tensor_path.is_file():
        return tensor_path
    stem_name = json_path.with_suffix(".safetensors").name
    stem_tensors = resolve_inside(
        json_path.parent, stem_name, f"steering card {json_path.name}: tensors file"
    )
    if not stem_tensors.is_file():
        names = (
            stem_name
            if tensor_path == stem_tensors
            else f"{printable(tensor_path.name)} (or {stem_name})"
        )
        raise FileNotFoundError(
            f"steering card tensors {names} named by {json_path.name} do not exist "
            f"(they must sit beside it, in {json_path.parent})"
        )
    return stem_tensors
