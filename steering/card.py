"""Eraser cards: a fitted steerer saved as data (safetensors + JSON) with its provenance.

``card.json`` holds the mode, the protected attribute, the generator it was fitted on (name and
SHA-256), the labeler, the sample count, probe accuracies before/after, and the SHA-256 of
``card.safetensors`` (the tensors). Loading verifies both checksums and refuses a mismatch.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from .files import resolve_inside, sha256_file
from .leace import LeaceEraser
from .modes import LatentSteerer
from .nonlinear import ClassifierSteerer
from .outputs import finish_pending, staged_files, write_new

CARD_VERSION = 1
_BUFFERS = ("present", "probe_w", "probe_b", "direction", "centre", "levels", "means", "covs")


def card_paths(path: str | Path) -> tuple[Path, Path]:
    """``(json, safetensors)`` paths of a card, given either file or the common stem."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".json", ".safetensors") else path
    return stem.with_suffix(".json"), stem.with_suffix(".safetensors")


def save_card(steerer: LatentSteerer, path: str | Path, provenance: dict) -> Path:
    """Write ``<stem>.safetensors`` and ``<stem>.json`` together (both or neither replace an older
    card: ``steering.outputs.staged_files``); returns the JSON path."""
    steerer._check_fitted()
    json_path, tensor_path = card_paths(path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    if getattr(steerer, "kind", "linear") == "classifier":
        tensors, card = _classifier_card(steerer)
    else:
        tensors, card = _linear_card(steerer)
    payload = save(tensors)
    card = {**card, "tensors": {"file": tensor_path.name, "sha256": hashlib.sha256(payload).hexdigest()}, **provenance}
    with staged_files([json_path, tensor_path]) as stage:
        write_new(stage / tensor_path.name, payload)
        write_new(stage / json_path.name, json.dumps(card, indent=2, default=float).encode())
    return json_path


def _linear_card(steerer: LatentSteerer) -> tuple[dict, dict]:
    tensors = {name: getattr(steerer, name).detach().cpu().contiguous() for name in _BUFFERS}
    erasers = {}
    if steerer.mode == "erase":
        for c, eraser in enumerate(steerer._erasers):
            if isinstance(eraser, LeaceEraser):
                erasers[str(c)] = eraser.config()
                for key, value in eraser.state_dict().items():
                    tensors[f"erase.{c}.{key}"] = value.detach().cpu().contiguous()
    card = {
        "fairgen_card": "eraser",
        "version": CARD_VERSION,
        "mode": steerer.mode,
        "method": steerer.method,
        "target_distribution": steerer.target_distribution,
        "num_classes": steerer.num_classes_,
        "num_values": steerer.num_values_,
        "latent_dim": steerer.dim_,
        "erasers": erasers,
    }
    return tensors, card


def read_card(path: str | Path) -> dict:
    """The card's JSON, after checking it is one."""
    json_path, _ = card_paths(path)
    finish_pending(json_path)  # a writer killed after its commit: its new card is complete, move it in
    if not json_path.is_file():
        raise FileNotFoundError(f"eraser card {json_path} does not exist")
    try:
        card = json.loads(json_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"eraser card {json_path} is not valid JSON: {error}") from None
    if not isinstance(card, dict) or card.get("fairgen_card") != "eraser":
        raise ValueError(f"{json_path} is not a fairgen eraser card")
    return card


def card_tensors(card: dict, json_path: Path) -> Path:
    """The tensors file a card names, resolved inside the card's folder (never outside it)."""
    tensors = card.get("tensors")
    if not isinstance(tensors, dict) or "file" not in tensors or "sha256" not in tensors:
        raise ValueError(f"eraser card {json_path} has no 'tensors' entry with 'file' and 'sha256'")
    return resolve_inside(json_path.parent, tensors["file"], f"eraser card {json_path.name}: tensors file")


def load_card(path: str | Path, generator=None) -> tuple[LatentSteerer, dict]:
    """Rebuild the steerer; with ``generator``, refuse a card fitted on other weights."""
    card = read_card(path)
    json_path, stem_tensors = card_paths(path)
    tensor_path = card_tensors(card, json_path)
    if not tensor_path.is_file() and stem_tensors.is_file():
        tensor_path = stem_tensors  # a card renamed with its tensors; their SHA-256 is still checked below
    if not tensor_path.is_file():
        names = tensor_path.name if tensor_path == stem_tensors else f"{tensor_path.name} (or {stem_tensors.name})"
        raise FileNotFoundError(f"eraser card tensors {names} named by {json_path.name} do not exist "
                                f"(they must sit beside it, in {json_path.parent})")
    if sha256_file(tensor_path) != card["tensors"]["sha256"]:
        raise ValueError(f"{tensor_path} does not match the SHA-256 recorded in {json_path.name}")
    if generator is not None and card.get("generator", {}).get("sha256") != generator.checksum:
        raise ValueError(
            f"eraser card {json_path.name} was fitted on generator {card.get('generator')}, "
            f"not on {generator.name!r} with SHA-256 {generator.checksum}"
        )
    tensors = load_file(str(tensor_path))
    if card.get("kind") == "classifier":
        steerer = ClassifierSteerer.from_state(card["classifier"], tensors)
        steerer.sample_latents = None if generator is None else generator.sample_latents
        return steerer, card
    steerer = LatentSteerer(card["mode"], card["method"], card["target_distribution"])
    for name in _BUFFERS:
        steerer.register_buffer(name, tensors[name])
    steerer.num_classes_, steerer.num_values_, steerer.dim_ = card["num_classes"], card["num_values"], card["latent_dim"]
    if steerer.mode == "erase":
        erasers = []
        for c in range(steerer.num_classes_):
            if str(c) in card["erasers"]:
                state = {k.split(".", 2)[2]: v for k, v in tensors.items() if k.startswith(f"erase.{c}.")}
                erasers.append(LeaceEraser.from_state(state, card["erasers"][str(c)]))
            else:
                erasers.append(torch.nn.Identity())
        steerer._erasers = torch.nn.ModuleList(erasers)
    return steerer, card


def _classifier_card(steerer: ClassifierSteerer) -> tuple[dict, dict]:
    """A classifier steerer's card: its classifiers and acceptance tables, one or several attributes."""
    tensors = {name: value.detach().cpu().contiguous() for name, value in steerer.tensors().items()}
    config = steerer.config()
    card = {
        "fairgen_card": "eraser",
        "version": CARD_VERSION,
        "kind": "classifier",
        "mode": steerer.mode,
        "method": steerer.method,
        "target_distribution": config["target_distribution"],
        "num_classes": steerer.num_classes_,
        "num_values": steerer.num_values_,
        "attributes": steerer.names_,
        "latent_dim": steerer.dim_,
        "expected_draws_per_sample": steerer.expected_draws(),
        "classifier": config,
    }
    return tensors, card
