"""WebDataset shards are indexed in one pass (our own header reader, checked against tarfile) and
read linearly."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
from PIL import Image

from fairgen.data import load_data
from fairgen.data import tar as tar_index


def _shard(path, members, fmt=tarfile.PAX_FORMAT):
    with tarfile.open(path, "w", format=fmt) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _png(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((4, 4, 3), value, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
def test_the_index_matches_tarfile_for_every_format_and_long_names(tmp_path, fmt):
    long = "d" * 120 + "/x.png" if fmt == tarfile.USTAR_FORMAT else "a" * 150 + ".png"
    path = _shard(
        tmp_path / "s.tar",
        [(long, b"x" * 700), ("é.cls", b"1"), ("dir/b.json", b"{}"), ("e", b"")],
        fmt,
    )
    with tarfile.open(path) as tar:
        expected = [(m.name, m.offset_data, m.size) for m in tar if m.isreg()]
    assert list(tar_index.members(path)) == expected


def test_a_corrupt_header_is_refused_naming_the_shard(tmp_path):
    path = _shard(tmp_path / "s.tar", [("0.png", _png(1)), ("1.png", _png(2))])
    data = bytearray(path.read_bytes())
    data[1024 + 124] ^= 0x7F  # the second header's size field
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "s.tar").write_bytes(bytes(data))
    with pytest.raises(
        ValueError, match=r"shard .*s\.tar cannot be read .*corrupt tar header at byte 1024"
    ):
        load_data(tmp_path / "bad")


def test_shards_are_indexed_once_and_each_image_is_one_read(tmp_path, monkeypatch):
    members = [
        m
        for i in range(50)
        for m in (
            (f"{i:04d}.v0.png", _png(i)),
            (f"{i:04d}.v1.png", _png(255 - i)),
            (f"{i:04d}.cls", str(i % 2).encode()),
            (f"{i:04d}.json", b'{"step": %d, "latent": [1, 2]}' % i),
        )
    ]
    for k in range(2):
        _shard(tmp_path / f"shard-{k}.tar", members[k * 100 : (k + 1) * 100])
    scans = []
    original = tar_index.members
    monkeypatch.setattr(tar_index, "members", lambda path: scans.append(path) or original(path))
    table = load_data(tmp_path)
    assert len(scans) == 2 and len(table) == 50 and list(table.frame.columns) == ["class", "step"]
    pixels = np.concatenate([b.numpy() for b in table.images()])
    assert len(scans) == 2  # reading the images rescans nothing
    assert np.allclose(
        pixels[:, 0, 0, 0] * 255, np.arange(50)
    )  # each sample's first view, in order
    assert table.frame["class"].tolist() == [i % 2 for i in range(50)]
