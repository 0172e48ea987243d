"""A one-pass index of a tar shard: where each regular member's bytes lie, without Python's tarfile.

``tarfile`` builds a TarInfo object per header (about 0.1 ms each here); a shard of the export's
layout has four members per image, so indexing was as slow as reading the images. This reads
each 512-byte header with a few slices instead. It understands ustar (with its name prefix), GNU
long names (``L``) and pax headers (``x``: ``path`` and ``size``); it checks every header's
checksum, and any other malformed header is a ValueError naming the shard and the offset.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

BLOCK = 512
REGULAR = (b"0", b"\x00", b"7")  # regular file, old-style regular file, contiguous file
MAX_HEADER_DATA = 1 << 20  # long names and pax records larger than this are not names


def members(path: Path) -> Iterator[tuple[str, int, int]]:
    """Yield ``(name, data offset, size)`` of every regular member of the tar file ``path``, in
    order."""
    with open(path, "rb") as handle:
        offset, long_name, pax = 0, None, {}
        while True:
            handle.seek(offset)
            header = handle.read(BLOCK)
            if len(header) < BLOCK or header == bytes(
                BLOCK
            ):  # end of archive (two zero blocks) or a bare end
                return
            _check_sum(header, path, offset)
            size = _number(header[124:136], path, offset)
            kind = header[156:157]
            data = offset + BLOCK
            if kind in (b"L", b"x", b"g"):
                if size > MAX_HEADER_DATA:
                    raise ValueError(
                        f"shard {path}: an extended header at byte {offset} is {size:,} bytes"
                    )
                payload = handle.read(size)
                if kind == b"L":
                    long_name = payload.rstrip(b"\x00").decode("utf-8", "replace")
                elif kind == b"x":
                    pax = _pax(payload, path, offset)
            else:
                if "size" in pax:
                    size = pax["size"]
                if kind in REGULAR:
                    name = pax.get("path") or long_name or _ustar_name(header)
                    yield name, data, size
                long_name, pax = None, {}
            offset = data + -(-size // BLOCK) * BLOCK


def _ustar_name(header: bytes) -> str:
    name = header[0:100].split(b"\x00", 1)[0]
    if header[257:262] == b"ustar":
        prefix = header[345:500].split(b"\x00", 1)[0]
        if prefix:
            name = prefix + b"/" + name
    return name.decode("utf-8", "replace")


def _number(field: bytes, path: Path, offset: int) -> int:
    if field[:1] in (b"\x80", b"\xff"):  # GNU base-256 (large sizes)
        if field[:1] == b"\xff":
            raise ValueError(f"shard {path}: a corrupt tar header at byte {offset} (negative size)")
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\x00", 1)[0].strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise ValueError(
            f"shard {path}: a corrupt tar header at byte {offset} (size field {field!r})"
        ) from None


def _check_sum(header: bytes, path: Path, offset: int) -> None:
    stored = _number(header[148:156], path, offset)
    computed = sum(header) - sum(header[148:156]) + 8 * 32  # the checksum field counts as spaces
    if stored != computed:
        raise ValueError(f"shard {path}: a corrupt tar header at byte {offset} (checksum mismatch)")


def _pax(payload: bytes, path: Path, offset: int) -> dict:
    """``path`` and ``size`` from pax records ``"<length> <key>=<value>\\n"``."""
    out, position = {}, 0
    while position < len(payload):
        space = payload.find(b" ", position)
        try:
            length = int(payload[position:space])
        except ValueError:
            raise ValueError(f"shard {path}: a corrupt pax header at byte {offset}") from None
        if length <= 0:
            raise ValueError(f"shard {path}: a corrupt pax header at byte {offset}")
        key, _, value = payload[space + 1 : position + length - 1].partition(b"=")
        if key == b"path":
            out["path"] = value.decode("utf-8", "replace")
        elif key == b"size":
            out["size"] = int(value)
        position += length
    return out
