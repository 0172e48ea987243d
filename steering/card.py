"""Eraser cards: a fitted steerer saved as data (safetensors + JSON) with its provenance.

``card.json`` holds the mode, the protected attribute, the generator it was fitted on (name and
SHA-256), the labeler, the sample count, probe accuracies before/after, and the SHA-256 of
``card.safetensors`` (the tensors). Loading verifies both checksums and refuses a mismatch. A card
is data from someone else: its JSON is read strictly (``plumbing.files.read_json``), its tensors
file must sit in its folder, and the tensors' names, dtypes and values are checked before use.

Kinds: linear (no ``kind`` key), ``"classifier"`` (its config under ``"classifier"``) and
``"confirmed"`` (labeler-confirmed balance, its config under ``"confirmed"``: attributes, keep
attribute, cap, the costs measured at fit). Every card states its ``"guarantee"``: ``"proposed"``
(latents steered by a model of the labeler) or ``"confirmed"`` (every kept sample labelled; a
stream playing it needs the labeler, which the card names in ``"labeler"`` but never runs).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import save

from plumbing.files import (
    load_safetensors,
    printable,
    read_json,
    resolve_inside,
    sha256_file,
)
from plumbing.outputs import finish_pending, staged_files, write_new
from plumbing.validation import is_int

from .confirmed import ConfirmedSteerer
from .leace import LeaceEraser
from .modes import LatentSteerer
from .nonlinear import ClassifierSteerer

CARD_VERSION = 1
_BUFFERS = ("present", "probe_w", "probe_b", "direction", "centre", "levels", "means", "covs")
_CLASSIFIER_BUFFERS = {
    "counts": "I64",
    "target": "F32",
    "shares": "F32",
    "accept": "F32",
    "rate": "F32",
}
MAX_CLASSES = (
    100_000  # BigGAN has 1000; a card claiming a million classes is refused, not allocated
)
MAX_VALUES = 1000  # values of one protected attribute
MAX_LATENT_DIM = 1 << 16


def card_paths(path: str | Path) -> tuple[Path, Path]:
    """``(json, safetensors)`` paths of a card, given either file or the common stem."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".json", ".safetensors") else path
    return stem.with_suffix(".json"), stem.with_suffix(".safetensors")


def save_card(steerer: LatentSteerer, path: str | Path, provenance: dict) -> Path:
    """Write ``<stem>.safetensors`` and ``<stem>.json`` together (both or neither replace an older
    card: ``plumbing.outputs.staged_files``); returns the JSON path."""
    steerer._check_fitted()
    json_path, tensor_path = card_paths(path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    if getattr(steerer, "kind", "linear") in ("classifier", "confirmed"):
        tensors, card = _classifier_card(steerer)
    else:
        tensors, card = _linear_card(steerer)
    payload = save(tensors)
    card = {
        **card,
        "tensors": {"file": tensor_path.name, "sha256": hashlib.sha256(payload).hexdigest()},
        **provenance,
    }
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
    """The card's JSON (strict, bounded), after checking it is one."""
    json_path, _ = card_paths(path)
    finish_pending(
        json_path
    )  # a writer killed after its commit: its new card is complete, move it in
    card = read_json(json_path, "eraser card")
    if not isinstance(card, dict) or card.get("fairgen_card") != "eraser":
        raise ValueError(f"{json_path} is not a fairgen eraser card")
    return card


def card_tensors(card: dict, json_path: Path) -> Path:
    """The tensors file a card names, resolved inside the card's folder (never outside it)."""
    tensors = card.get("tensors")
    if not isinstance(tensors, dict) or "file" not in tensors or "sha256" not in tensors:
        raise ValueError(f"eraser card {json_path} has no 'tensors' entry with 'file' and 'sha256'")
    return resolve_inside(
        json_path.parent, tensors["file"], f"eraser card {json_path.name}: tensors file"
    )


def load_card(path: str | Path, generator=None) -> tuple[LatentSteerer, dict]:
    """Rebuild the steerer; with ``generator``, refuse a card fitted on other weights."""
    card = read_card(path)
    json_path, _ = card_paths(path)
    tensor_path = card_tensors(card, json_path)
    if (
        not tensor_path.is_file()
    ):  # a card renamed with its tensors; their SHA-256 is still checked below
        stem_name = json_path.with_suffix(".safetensors").name
        stem_tensors = resolve_inside(
            json_path.parent, stem_name, f"eraser card {json_path.name}: tensors file"
        )
        if not stem_tensors.is_file():
            names = (
                stem_name
                if tensor_path == stem_tensors
                else f"{printable(tensor_path.name)} (or {stem_name})"
            )
            raise FileNotFoundError(
                f"eraser card tensors {names} named by {json_path.name} do not exist "
                f"(they must sit beside it, in {json_path.parent})"
            )
        tensor_path = stem_tensors
    if sha256_file(tensor_path) != card["tensors"]["sha256"]:
        raise ValueError(f"{tensor_path} does not match the SHA-256 recorded in {json_path.name}")
    fitted_on = card.get("generator") if isinstance(card.get("generator"), dict) else {}
    if generator is not None and fitted_on.get("sha256") != generator.checksum:
        raise ValueError(
            f"eraser card {json_path.name} was fitted on generator {printable(card.get('generator'))}, "
            f"not on {generator.name!r} with SHA-256 {generator.checksum}"
        )
    if card.get("kind") == "confirmed":
        return _load_confirmed(card, json_path, tensor_path), card
    classifier = card.get("kind") == "classifier"
    config = _checked_config(
        card["classifier"] if classifier and isinstance(card.get("classifier"), dict) else card,
        json_path,
        classifier,
    )
    expect = (
        dict(_CLASSIFIER_BUFFERS)
        if classifier
        else {name: "BOOL" if name == "present" else "F32" for name in _BUFFERS}
    )
    tensors = load_safetensors(
        tensor_path, f"eraser card tensors of {json_path.name}", expect=expect, finite=True
    )
    _check_shapes(tensors, config, json_path, classifier)
    try:
        if classifier:
            steerer = ClassifierSteerer.from_state(config, tensors)
            steerer.sample_latents = None if generator is None else generator.sample_latents
            return steerer, card
        steerer = LatentSteerer(config["mode"], config["method"], config["target_distribution"])
        for name in _BUFFERS:
            steerer.register_buffer(name, tensors[name])
        steerer.num_classes_, steerer.num_values_, steerer.dim_ = (
            config["num_classes"],
            config["num_values"],
            config["latent_dim"],
        )
        if steerer.mode == "erase":
            erasers = []
            for c in range(steerer.num_classes_):
                if str(c) in card.get("erasers", {}):
                    state = {
                        k.split(".", 2)[2]: v
                        for k, v in tensors.items()
                        if k.startswith(f"erase.{c}.")
                    }
                    erasers.append(LeaceEraser.from_state(state, card["erasers"][str(c)]))
                else:
                    erasers.append(torch.nn.Identity())
            steerer._erasers = torch.nn.ModuleList(erasers)
    except (
        KeyError,
        TypeError,
        RuntimeError,
        AttributeError,
    ) as error:  # a field or tensor the checks above let by
        raise ValueError(
            f"eraser card {json_path}: its fields and tensors do not fit together "
            f"({type(error).__name__}: {printable(error)})"
        ) from None
    return steerer, card


def _checked_config(config: dict, json_path: Path, classifier: bool) -> dict:
    """The card fields a steerer is rebuilt from, present and within sane bounds (a clear error names the field)."""
    where = f"eraser card {json_path}"
    required = (
        (
            "mode",
            "names",
            "num_values",
            "num_classes",
            "latent_dim",
            "threshold",
            "step_size",
            "max_steps",
            "penalty",
            "seed",
            "target_distribution",
        )
        if classifier
        else ("mode", "method", "target_distribution", "num_classes", "num_values", "latent_dim")
    )
    missing = [key for key in required if key not in config]
    if missing:
        raise ValueError(
            f"{where} lacks the field(s) {missing}"
            + (" of its 'classifier' entry" if classifier else "")
        )

    def count(key, high, value=None):
        value = config[key] if value is None else value
        if not is_int(value) or not 1 <= value <= high:
            raise ValueError(
                f"{where}: {key!r} must be an integer in [1, {high}], got {printable(repr(value))}"
            )

    count("num_classes", MAX_CLASSES)
    count("latent_dim", MAX_LATENT_DIM)
    values = config["num_values"] if classifier else [config["num_values"]]
    if not isinstance(values, list) or not values:
        raise ValueError(f"{where}: 'num_values' must list each attribute's number of values")
    for value in values:
        count("num_values", MAX_VALUES, value)
    if classifier and (
        not isinstance(config["names"], list) or len(config["names"]) != len(values)
    ):
        raise ValueError(f"{where}: 'names' must name each of the {len(values)} attributes")
    return config


def _check_shapes(tensors: dict, config: dict, json_path: Path, classifier: bool) -> None:
    """Tensor shapes that agree with the card's classes (a clear error instead of an index error later)."""
    names = ("accept", "shares", "counts") if classifier else _BUFFERS
    for name in names:
        tensor = tensors[name]
        first = (
            tensor.shape[1]
            if classifier and name == "counts"
            else (tensor.shape[0] if tensor.dim() else None)
        )
        if first != config["num_classes"]:
            raise ValueError(
                f"eraser card tensors of {json_path.name}: tensor {name!r} has shape {list(tensor.shape)}, "
                f"which does not fit num_classes {config['num_classes']}"
            )
    if classifier and not bool((tensors["accept"] >= 0).all() and (tensors["accept"] <= 1).all()):
        raise ValueError(
            f"eraser card tensors of {json_path.name}: 'accept' must hold acceptance probabilities in [0, 1]"
        )


def _load_confirmed(card: dict, json_path: Path, tensor_path: Path) -> ConfirmedSteerer:
    """A labeler-confirmed steerer from its card: config fields present, tensors finite, sizes bounded."""
    config = card.get("confirmed")
    if not isinstance(config, dict):
        raise ValueError(
            f"eraser card {json_path} of kind 'confirmed' lacks its 'confirmed' configuration"
        )
    required = (
        "target_distribution",
        "cap",
        "defensive",
        "proposal",
        "seed",
        "names",
        "keep",
        "attributes",
        "num_values",
        "num_classes",
        "conditional",
        "latent_dim",
    )
    missing = [key for key in required if key not in config]
    if missing:
        raise ValueError(
            f"eraser card {json_path} lacks the field(s) {missing} of its 'confirmed' entry"
        )
    for key, high in (("num_classes", MAX_CLASSES), ("latent_dim", MAX_LATENT_DIM)):
        value = config[key]
        if not is_int(value) or not 1 <= value <= high:
            raise ValueError(
                f"eraser card {json_path}: {key!r} must be an integer in [1, {high}], got {printable(repr(value))}"
            )
    values = config["num_values"]
    if (
        not isinstance(values, list)
        or not values
        or not all(is_int(v) and 1 <= v <= MAX_VALUES for v in values)
    ):
        raise ValueError(
            f"eraser card {json_path}: 'num_values' must list each attribute's number of values "
            f"(integers in [1, {MAX_VALUES}])"
        )
    tensors = load_safetensors(tensor_path, f"eraser card tensors of {json_path.name}", finite=True)
    try:
        return ConfirmedSteerer.from_state(config, tensors)
    except (KeyError, TypeError, RuntimeError, AttributeError) as error:
        raise ValueError(
            f"eraser card {json_path}: its fields and tensors do not fit together "
            f"({type(error).__name__}: {printable(error)})"
        ) from None


def _classifier_card(steerer) -> tuple[dict, dict]:
    """A classifier (or confirmed) steerer's card: its classifiers and tables, one or several attributes."""
    tensors = {name: value.detach().cpu().contiguous() for name, value in steerer.tensors().items()}
    config = steerer.config()
    card = {
        "fairgen_card": "eraser",
        "version": CARD_VERSION,
        "kind": steerer.kind,
        "guarantee": getattr(steerer, "guarantee", "proposed"),
        "mode": steerer.mode,
        "method": steerer.method,
        "target_distribution": config["target_distribution"],
        "num_classes": steerer.num_classes_,
        "num_values": steerer.num_values_,
        "attributes": steerer.names_,
        "latent_dim": steerer.dim_,
        "expected_draws_per_sample": steerer.expected_draws(),
        steerer.kind: config,
    }
    return tensors, card
