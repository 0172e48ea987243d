"""Files that travel between people: content hashes, reproducible safetensors, paths kept inside a
card.

The one safe layer every loader of a received file goes through: names resolved inside the card's
folder (``resolve_inside``), strict and bounded JSON (``read_json``), safetensors whose header is
checked before anything is allocated (``load_safetensors``), and strings escaped before they reach a
terminal (``printable``); and one reader of cards (``read_card``: a JSON file and the tensors it
pins). In ``plumbing`` so that ``steering``, ``audits`` and ``fairgen`` share one definition.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import struct
from pathlib import Path

from .validation import is_int

METADATA_KEY = "fairgen"
MAX_JSON_BYTES = 16 << 20  # a card is a few kilobytes; 16 MiB leaves room and refuses a 200 MB one
MAX_JSON_DEPTH = 64  # nesting a card never needs, far below Python's recursion limit
MAX_HEADER_BYTES = 16 << 20  # safetensors' own limit for a header (100 MB) is far above any card's
# safetensors dtype names -> bytes per element (the ones torch reads)
DTYPE_SIZES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "I16": 2,
    "I32": 4,
    "I64": 8,
    "F16": 2,
    "BF16": 2,
    "F32": 4,
    "F64": 8,
}


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes (its content only)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a new file beside ``path``, then rename it over ``path`` (never written
    through an existing name or hard link; a full disk is one clear error): ``plumbing.outputs``."""
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
    return save(
        {k: v.detach().cpu().contiguous() for k, v in sorted(tensors.items())}, metadata=header
    )


def read_json(
    path: str | os.PathLike,
    what: str,
    max_bytes: int = MAX_JSON_BYTES,
    max_depth: int = MAX_JSON_DEPTH,
):
    """Strict, bounded JSON from a file: size and nesting capped before parsing, duplicate keys and
    NaN/Infinity refused; every failure a ValueError/FileNotFoundError naming ``what`` and the
    file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    size = path.stat().st_size
    if size > max_bytes:
        raise ValueError(
            f"{what} {path} is {size} bytes; a JSON file here may hold at most {max_bytes}"
        )
    with open(path, "rb") as handle:
        raw = handle.read(max_bytes + 1)
    if len(raw) > max_bytes:  # grew while we read it
        raise ValueError(f"{what} {path} holds more than {max_bytes} bytes of JSON")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{what} {path} is not valid JSON: not UTF-8 text ({error.reason} at byte "
            f"{error.start})"
        ) from None
    return parse_json(text, f"{what} {path}", max_depth)


def parse_json(text: str, where: str, max_depth: int = MAX_JSON_DEPTH):
    """``json.loads`` made strict: depth capped first, duplicate keys and NaN/Infinity refused."""
    depth = json_depth(text)
    if depth > max_depth:
        raise ValueError(f"{where} nests {depth} levels deep; at most {max_depth} are allowed")

    def no_duplicates(pairs):
        seen = {}
        for key, value in pairs:
            if key in seen:
                raise ValueError(
                    f"{where} is not valid JSON: key {printable(key)!r} appears twice in one object"
                )
            seen[key] = value
        return seen

    def no_constant(name):
        return _NonFinite(name)

    try:
        data = json.loads(text, object_pairs_hook=no_duplicates, parse_constant=no_constant)
    except json.JSONDecodeError as error:
        raise ValueError(f"{where} is not valid JSON: {error}") from None
    field = _find_non_finite(data)
    if field is not None:
        name, path = field
        raise ValueError(
            f"{where} is not valid JSON: {path or 'the value'} is {name}, which JSON does not "
            "allow "
            "(a finite number is expected)"
        )
    return data


class _NonFinite:
    """Stands in for NaN/Infinity while parsing, so that the error can name the field that held
    it."""

    def __init__(self, name: str):
        self.name = name


def _find_non_finite(data, path: str = ""):
    """``(NaN|Infinity|-Infinity, "field[0].key")`` of the first non-finite constant in parsed
    JSON, or None."""
    stack = [(data, path)]
    while stack:
        value, where = stack.pop()
        if isinstance(value, _NonFinite):
            return value.name, where
        if isinstance(value, dict):
            stack.extend(
                (v, f"{where}.{k}" if where else str(k)) for k, v in reversed(list(value.items()))
            )
        elif isinstance(value, list):
            stack.extend((v, f"{where}[{i}]") for i, v in reversed(list(enumerate(value))))
    return None


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)


def json_depth(text: str) -> int:
    """How deeply brackets nest in JSON text (strings skipped), counted without recursion."""
    import numpy as np

    skeleton = _STRINGS.sub("", text).encode("utf-8", "replace")
    codes = np.frombuffer(skeleton, dtype=np.uint8)
    steps = np.isin(codes, (0x5B, 0x7B)).astype(np.int64) - np.isin(codes, (0x5D, 0x7D)).astype(
        np.int64
    )
    return int(np.cumsum(steps).max()) if len(steps) else 0


def read_safetensors_header(
    path: str | os.PathLike, what: str = "file", max_header: int = MAX_HEADER_BYTES
) -> dict:
    """The header of a safetensors file, checked before any tensor is read or allocated.

    Checks: a header length within ``max_header`` and the file; strict JSON; for each tensor a known
    dtype, a shape of non-negative integers, and offsets that tile the data section exactly (so the
    file's size bounds what loading it allocates). Returns ``{name: {"dtype", "shape", ...}}`` plus
    ``"__metadata__"`` when present.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    size = path.stat().st_size
    bad = f"{what} {path} is not a readable safetensors file"
    if size < 8:
        raise ValueError(f"{bad} ({size} bytes: too short for a header)")
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        if length > min(max_header, size - 8):
            raise ValueError(
                f"{bad} (its header claims {length} bytes; the file has {size}, the limit is "
                f"{max_header})"
            )
        header_text = handle.read(length)
    try:
        header = parse_json(header_text.decode("utf-8"), f"{bad}: header")
    except UnicodeDecodeError:
        raise ValueError(f"{bad} (its header is not UTF-8 JSON)") from None
    if not isinstance(header, dict):
        raise ValueError(f"{bad} (its header is not a JSON object)")
    metadata = header.get("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ValueError(f"{bad} (its __metadata__ is not a map of strings)")
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        where = f"{bad} (tensor {printable(name)!r}"
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise ValueError(f"{where} needs exactly dtype, shape and data_offsets)")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in DTYPE_SIZES:
            raise ValueError(
                f"{where} has dtype {printable(str(dtype))!r}; allowed: {', '.join(DTYPE_SIZES)})"
            )
        if not isinstance(shape, list) or not all(_count(d) for d in shape):
            raise ValueError(
                f"{where} has shape {printable(str(shape))}; expected a list of non-negative "
                "integers)"
            )
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(_count(o) for o in offsets)
        ):
            raise ValueError(
                f"{where} has data_offsets {printable(str(offsets))}; expected [begin, end])"
            )
        if offsets[1] - offsets[0] != math.prod(shape) * DTYPE_SIZES[dtype]:
            raise ValueError(
                f"{where}: its offsets {offsets} do not hold a {dtype} tensor of shape {shape})"
            )
        spans.append(tuple(offsets))
    position = 0
    for begin, end in sorted(spans):
        if begin != position:
            raise ValueError(f"{bad} (its tensors overlap or leave gaps in the data)")
        position = end
    if 8 + length + position != size:
        raise ValueError(
            f"{bad} (its header describes {position} bytes of data; the file holds "
            f"{size - 8 - length})"
        )
    return header


def _count(value) -> bool:
    return is_int(value) and value >= 0


def read_safetensors_metadata(path: str | os.PathLike, what: str = "file") -> dict:
    """The metadata ``save_safetensors`` wrote (legacy multi-key headers are returned as they are).

    A missing, truncated or foreign file raises a ValueError/FileNotFoundError naming it.
    """
    raw = read_safetensors_header(path, what).get("__metadata__", {})
    if METADATA_KEY in raw:
        return parse_json(raw[METADATA_KEY], f"{what} {path}: metadata")
    return dict(raw)


def load_safetensors(
    path: str | os.PathLike,
    what: str = "file",
    device: str = "cpu",
    expect: dict | None = None,
    finite: bool = False,
) -> dict:
    """All tensors of a safetensors file, its header checked first; clear errors name the file.

    ``expect`` maps required tensor names to their safetensors dtype (``"F32"``, ``"BOOL"``, ...;
    a tuple allows several); a missing name or another dtype is refused before anything loads.
    ``finite`` refuses NaN or infinite values in floating tensors, naming the tensor.
    """
    from safetensors.torch import load_file

    header = read_safetensors_header(path, what)
    for name, dtypes in (expect or {}).items():
        dtypes = (dtypes,) if isinstance(dtypes, str) else tuple(dtypes)
        if name not in header:
            raise ValueError(f"{what} {path} lacks the tensor {name!r}")
        if header[name]["dtype"] not in dtypes:
            raise ValueError(
                f"{what} {path}: tensor {name!r} has dtype {header[name]['dtype']}, "
                f"expected {' or '.join(dtypes)}"
            )
    try:
        tensors = load_file(str(path), device=str(device))
    except Exception as error:
        raise ValueError(f"{what} {path} is not a readable safetensors file ({error})") from None
    if finite:
        for name, tensor in tensors.items():
            if tensor.is_floating_point() and not bool(tensor.isfinite().all()):
                raise ValueError(
                    f"{what} {path}: tensor {printable(name)!r} holds NaN or infinite values"
                )
    return tensors


_UNPRINTABLE = re.compile(
    r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)


def printable(text) -> str:
    """``text`` safe to print to a terminal: control characters (ANSI escapes among them) and
    bidirectional overrides shown as ``\\x1b``-style escapes, newlines and tabs kept."""
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(text))


def resolve_inside(
    folder: str | os.PathLike, name: str, what: str, within: str = "the card's folder"
) -> Path:
    """``folder / name`` for a file named inside a received file (card, spec, checkpoint, manifest,
    shard list); refuse names that leave ``folder``.

    Links are followed first, so a link that points elsewhere is refused like ``..`` or an absolute
    name: before anything is opened or hashed, and with a message that depends only on ``name``,
    never
    on whether or what the outside target is (no oracle about files outside the folder). ``within``
    says what the folder is in messages (e.g. "the manifest's folder").
    """
    if not isinstance(name, str) or not name or "\x00" in name:
        raise ValueError(
            f"{what}: expected a file name relative to {within}, got {printable(repr(name))}"
        )
    relative = Path(name)
    if relative.is_absolute() or ".." in relative.parts or name.startswith("~"):
        raise ValueError(
            f"{what}: {printable(repr(name))} must be a path inside {within} (no absolute path, no "
            "'..')"
        )
    try:
        base = Path(folder).resolve()
        target = (base / relative).resolve()
    except (OSError, RuntimeError):  # a loop of links
        raise ValueError(f"{what}: {printable(repr(name))} is a loop of links") from None
    if base != target and base not in target.parents:
        raise ValueError(f"{what}: {printable(repr(name))} resolves outside {within} {base}")
    return target


def relative_to_card(path: str | os.PathLike, card_folder: str | os.PathLike) -> str:
    """How a card in ``card_folder`` should name ``path``: relative, with '/' separators."""
    return Path(os.path.relpath(Path(path).resolve(), Path(card_folder).resolve())).as_posix()


def card_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """``(json, safetensors)`` paths of a card, given either file or their common stem."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".json", ".safetensors") else path
    return stem.with_suffix(".json"), stem.with_suffix(".safetensors")


def read_card(
    path: str | os.PathLike,
    what: str,
    kinds: str | tuple[str, ...],
    *,
    kind_key: str = "fairgen_card",
    version: int | None = None,
    sha256: str | None = None,
    tensors: bool = True,
    expect=None,
    renamed_ok: bool = False,
) -> tuple[dict, dict]:
    """A received card: its JSON (strict, bounded) and the tensors it pins, every check one clear
    error that names ``what`` and the file. Returns ``(card, tensors)``.

    ``path`` is the JSON, the safetensors or their stem. The JSON must be an object whose
    ``kind_key`` is one of ``kinds`` (and whose ``"version"`` is ``version``, when given);
    ``sha256`` pins the JSON's bytes. With ``tensors``, the card's ``"tensors"`` entry
    (``{"file", "sha256"}``) names a file inside the card's folder whose SHA-256 must match; it is
    loaded with ``expect`` (``{name: dtype}``, or a function of the card returning one, as in
    ``load_safetensors``) and NaN/inf refused. ``renamed_ok`` also accepts ``<stem>.safetensors``
    when the named file is absent (a card renamed with its tensors). Without ``tensors`` the
    second value is ``{}``. A commit a killed writer left (``plumbing.outputs``) is finished first.
    """
    from .outputs import finish_pending

    json_path, stem_tensors = card_paths(path)
    finish_pending(json_path)
    if sha256 is not None and json_path.is_file() and sha256_file(json_path) != sha256:
        raise ValueError(f"{what} {json_path} does not match the SHA-256 pinned for it ({sha256})")
    card = read_json(json_path, what)
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    found = card.get(kind_key) if isinstance(card, dict) else None
    if found not in kinds:
        raise ValueError(
            f"{json_path} is not a fairgen {what} ({kind_key!r} is {printable(repr(found))}, "
            f"expected {' or '.join(map(repr, kinds))})"
        )
    if version is not None and card.get("version") != version:
        raise ValueError(
            f"{what} {json_path} has version {printable(repr(card.get('version')))}; "
            f"this fairgen reads version {version}"
        )
    if not tensors:
        return card, {}
    entry = card.get("tensors")
    if not isinstance(entry, dict) or "file" not in entry or "sha256" not in entry:
        raise ValueError(f"{what} {json_path} has no 'tensors' entry with 'file' and 'sha256'")
    where = f"{what} {json_path.name}: tensors file"
    named = resolve_inside(json_path.parent, entry["file"], where)
    tensor_path = named
    if not named.is_file() and renamed_ok:
        tensor_path = resolve_inside(json_path.parent, stem_tensors.name, where)
    if not tensor_path.is_file():
        names = printable(named.name)
        if tensor_path != named:
            names += f" (or {stem_tensors.name})"
        raise FileNotFoundError(
            f"{what} tensors {names} named by {json_path.name} do not exist "
            f"(they must sit beside it, in {json_path.parent})"
        )
    if sha256_file(tensor_path) != entry["sha256"]:
        raise ValueError(f"{tensor_path} does not match the SHA-256 recorded in {json_path.name}")
    expect = expect(card) if callable(expect) else expect
    loaded = load_safetensors(
        tensor_path, f"{what} tensors of {json_path.name}", expect=expect, finite=True
    )
    return card, loaded


def _plain(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
