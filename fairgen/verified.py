"""The verified set: generated images whose protected value a person checked, tied to one card.

Each item holds its class, the labeler's output (and its scores when the labeler gives them), the
person's true value, and the latent it was synthesised from (with the seed and index of the draw),
so the image can be regenerated. The set belongs to the steering card whose SHA-256 it records:
reading it for another card is refused with both hashes named. The error model (P(labeler output |
true value, class)) and the audits with estimated labels read it as arrays (``VerifiedSet.arrays``).

Files are data from someone else: JSON is read strictly and bounded (``plumbing.files.read_json``),
CSV through ``read_label_csv`` (size capped, header fixed, each row checked and named on error).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FORMAT = "fairgen_verified"
VERSION = 1
MAX_CSV_BYTES = 16 << 20  # a person labels hundreds of images, not millions
MAX_ITEMS = 1_000_000
CSV_HEADER = ["id", "value"]


@dataclass(eq=False)
class VerifiedSet:
    """Verified items of one attribute (``values`` names its values 0..k-1) for one card."""

    attribute: str
    values: list[str]
    card_sha256: str
    ids: list[str]
    classes: np.ndarray  # [n] int, the generator's class (0 for unconditional generators)
    outputs: np.ndarray  # [n] int, what the labeler said
    truths: np.ndarray  # [n] int, what the person said
    scores: np.ndarray | None = None  # [n, k] the labeler's scores, when it gives them
    latents: np.ndarray | None = None  # [n, d] the latents the images were synthesised from
    draws: list[dict] = field(default_factory=list)  # per item {"seed", "index"} of its draw
    pool_counts: np.ndarray | None = None  # [C, k] pooled images per (class, output) cell
    provenance: dict = field(default_factory=dict)  # labeler, generator, card path

    def __post_init__(self) -> None:
        n = len(self.ids)
        for name in ("classes", "outputs", "truths"):
            array = np.asarray(getattr(self, name), dtype=np.int64).reshape(-1)
            if len(array) != n:
                raise ValueError(f"verified set: {name} has {len(array)} entries for {n} items")
            setattr(self, name, array)
        k = len(self.values)
        for name in ("outputs", "truths"):
            array = getattr(self, name)
            if n and (array.min() < 0 or array.max() >= k):
                raise ValueError(
                    f"verified set: {name} must be value indices 0..{k - 1} of {self.values}"
                )
        if n and self.classes.min() < 0:
            raise ValueError("verified set: classes must be non-negative")
        if self.scores is not None:
            self.scores = np.asarray(self.scores, dtype=np.float64)
            if self.scores.shape != (n, k) or not np.isfinite(self.scores).all():
                raise ValueError(
                    f"verified set: scores must be finite, shape [{n}, {k}], "
                    f"got {list(self.scores.shape)}"
                )
        if self.pool_counts is not None:
            self.pool_counts = np.asarray(self.pool_counts, dtype=np.int64)
            c = int(self.classes.max()) + 1 if n else 0
            shape = self.pool_counts.shape
            if len(shape) != 2 or shape[1] != k or shape[0] < c or self.pool_counts.min() < 0:
                raise ValueError(
                    f"verified set: pool_counts must be non-negative counts [classes, {k}], "
                    f"got shape {list(shape)}"
                )
        if len(set(self.ids)) != n:
            raise ValueError("verified set: item ids must be unique")

    def __len__(self) -> int:
        return len(self.ids)

    def arrays(self):
        """``(classes, outputs, scores or None, truths)`` as numpy arrays, for the error model."""
        return self.classes, self.outputs, self.scores, self.truths

    def weights(self) -> np.ndarray:
        """Per item, how many pooled images it stands for (pool count / verified count of its
        (class, output) cell): review draws cells unevenly, and these weights undo it. Ones when
        the pool's counts are unknown (a simple random sample)."""
        if self.pool_counts is None:
            return np.ones(len(self))
        k = len(self.values)
        cells = self.classes * k + self.outputs
        drawn = np.bincount(cells, minlength=self.pool_counts.size)
        return self.pool_counts.reshape(-1)[cells] / drawn[cells]

    def confusion(self, n_classes: int | None = None) -> np.ndarray:
        """Counts [C, k_true, k_output] of (class, true value, labeler output)."""
        k = len(self.values)
        c = int(self.classes.max()) + 1 if len(self) else 1
        c = max(c, n_classes or 0)
        keys = (self.classes * k + self.truths) * k + self.outputs
        return np.bincount(keys, minlength=c * k * k).reshape(c, k, k)


def write_verified(verified: VerifiedSet, path) -> Path:
    """Write ``verified`` as strict JSON, whole (a temporary file renamed over ``path``)."""
    import json

    from plumbing.files import atomic_write_text

    items = []
    for i, item_id in enumerate(verified.ids):
        item = {
            "id": item_id,
            "class": int(verified.classes[i]),
            "output": int(verified.outputs[i]),
            "truth": int(verified.truths[i]),
        }
        if verified.scores is not None:
            item["scores"] = [float(s) for s in verified.scores[i]]
        if verified.latents is not None:
            item["latent"] = [float(v) for v in verified.latents[i]]
        if verified.draws:
            item.update(verified.draws[i])
        items.append(item)
    payload = {
        FORMAT: VERSION,
        "pool_counts": None if verified.pool_counts is None else verified.pool_counts.tolist(),
        "attribute": verified.attribute,
        "values": list(verified.values),
        "card_sha256": verified.card_sha256,
        "provenance": verified.provenance,
        "items": items,
    }
    return atomic_write_text(path, json.dumps(payload, indent=1) + "\n")


def read_verified(path, card=None) -> VerifiedSet:
    """The verified set in ``path``; with ``card`` (a card file or its SHA-256), refuse a set made
    for another card, naming both hashes."""
    from plumbing.files import read_json

    path = Path(path)
    data = read_json(path, "verified set")
    where = f"verified set {path}"
    if not isinstance(data, dict) or data.get(FORMAT) != VERSION:
        raise ValueError(f"{where} is not a fairgen verified set ({FORMAT!r}: {VERSION} missing)")
    attribute = _field(data, "attribute", str, where)
    values = _field(data, "values", list, where)
    if len(values) < 2 or not all(isinstance(v, str) and v for v in values):
        raise ValueError(f"{where}: 'values' must name at least 2 values, as strings")
    card_sha = _field(data, "card_sha256", str, where)
    items = _field(data, "items", list, where)
    if len(items) > MAX_ITEMS:
        raise ValueError(f"{where} holds {len(items)} items; at most {MAX_ITEMS} are read")
    columns: dict[str, list] = {"id": [], "class": [], "output": [], "truth": []}
    scores, latents, draws = [], [], []
    for i, item in enumerate(items):
        at = f"{where}: item {i}"
        if not isinstance(item, dict):
            raise ValueError(f"{at} is not an object")
        columns["id"].append(_field(item, "id", str, at))
        for key in ("class", "output", "truth"):
            columns[key].append(_field(item, key, int, at))
        scores.append(_numbers(item, "scores", at))
        latents.append(_numbers(item, "latent", at))
        draws.append({k: _field(item, k, int, at) for k in ("seed", "index") if k in item})
    pool_counts = data.get("pool_counts")
    if pool_counts is not None and not (
        isinstance(pool_counts, list)
        and all(_numbers({"row": row}, "row", where) is not None for row in pool_counts)
    ):
        raise ValueError(f"{where}: 'pool_counts' must be a list of lists of counts")
    provenance = data.get("provenance", {})
    if not isinstance(provenance, dict):
        raise ValueError(f"{where}: 'provenance' must be an object")
    try:
        verified = VerifiedSet(
            attribute=attribute,
            values=values,
            card_sha256=card_sha,
            ids=columns["id"],
            classes=columns["class"],
            outputs=columns["output"],
            truths=columns["truth"],
            scores=_all_or_none(scores, "scores", where),
            latents=_all_or_none(latents, "latent", where),
            draws=draws if all(draws) else [],
            pool_counts=pool_counts,
            provenance=provenance,
        )
    except ValueError as error:
        raise ValueError(f"{where}: {str(error).removeprefix('verified set: ')}") from None
    if card is not None:
        check_card(verified, card, where)
    return verified


def card_sha256(card) -> str:
    """The SHA-256 of a card: its JSON file's bytes (``card`` is its path or stem, or a hash)."""
    from plumbing.files import sha256_file
    from steering.card import card_paths

    if isinstance(card, str) and len(card) == 64 and not Path(card).exists():
        return card.lower()
    json_path, _ = card_paths(card)
    if not json_path.is_file():
        raise FileNotFoundError(f"card {json_path} does not exist")
    return sha256_file(json_path)


def check_card(verified: VerifiedSet, card, where: str = "verified set") -> None:
    """Refuse a verified set made for another card than ``card``, naming both hashes."""
    in_use = card_sha256(card)
    if verified.card_sha256 != in_use:
        raise ValueError(
            f"{where} was verified for the card with SHA-256 {verified.card_sha256}, but the "
            f"card in use has SHA-256 {in_use}; a labeler's error is measured on one card's "
            "images, so verify a new set for this card (`fairgen review`)"
        )


def read_label_csv(path, ids: list[str], values: list[str]) -> dict[str, int]:
    """``{id: value index}`` from a person's labels CSV (header ``id,value``): size capped, every
    id one of ``ids``, every value one of ``values``, a repeated id refused with both rows named."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--read: labels file {path} does not exist")
    size = path.stat().st_size
    if size > MAX_CSV_BYTES:
        raise ValueError(f"--read: {path} is {size} bytes; a labels CSV may hold {MAX_CSV_BYTES}")
    raw = path.read_bytes()[: MAX_CSV_BYTES + 1]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(f"--read: {path} is not UTF-8 text (byte {error.start})") from None
    rows = csv.reader(io.StringIO(text, newline=""), strict=True)
    where = f"--read: {path}"
    try:
        header = next(rows, None)
        if header is None or [h.strip() for h in header] != CSV_HEADER:
            raise ValueError(f"{where}: the first row must be the header 'id,value', got {header}")
        known, index = set(ids), {v: i for i, v in enumerate(values)}
        labels: dict[str, int] = {}
        first_row: dict[str, int] = {}
        for row in rows:
            line = rows.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != 2:
                raise ValueError(
                    f"{where}: row {line} has {len(row)} fields, expected 2 (id,value)"
                )
            item, value = row[0].strip(), row[1].strip()
            if item not in known:
                raise ValueError(f"{where}: row {line} names id {item!r}, which is not in review")
            if value not in index:
                raise ValueError(
                    f"{where}: row {line} gives value {value!r} for {item!r}; expected one of "
                    f"{values}"
                )
            if item in labels:
                raise ValueError(
                    f"{where}: row {line} labels {item!r} again (first on row {first_row[item]})"
                )
            labels[item], first_row[item] = index[value], line
    except csv.Error as error:
        raise ValueError(f"{where}: not a valid CSV (row {rows.line_num}: {error})") from None
    if not labels:
        raise ValueError(f"{where} holds no labels (only the header)")
    return labels


def _field(data: dict, key: str, kind: type, where: str):
    if key not in data:
        raise ValueError(f"{where}: missing field {key!r}")
    value = data[key]
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        raise ValueError(f"{where}: field {key!r} must be {kind.__name__}, got {value!r}")
    return value


def _numbers(item: dict, key: str, where: str) -> list[float] | None:
    if key not in item:
        return None
    value = item[key]
    if not isinstance(value, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value
    ):
        raise ValueError(f"{where}: {key!r} must be a list of finite numbers")
    return value


def _all_or_none(rows: list, key: str, where: str):
    given = [r is not None for r in rows]
    if not any(given):
        return None
    if not all(given):
        raise ValueError(f"{where}: {key!r} is given for some items but not all")
    if len({len(r) for r in rows}) > 1:
        raise ValueError(f"{where}: {key!r} has different lengths across items")
    return np.asarray(rows, dtype=np.float64)
