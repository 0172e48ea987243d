"""Guarantees of plumbing.files: content-only hashes, atomic readable writes, paths kept inside
a card, one card reader."""

import json
import os
import stat
import subprocess
import sys

import pytest
import torch

from plumbing.files import (
    atomic_write_text,
    read_safetensors_metadata,
    resolve_inside,
    save_safetensors,
)

SAVE_IN_A_FRESH_PROCESS = """
import sys, torch
from plumbing.files import save_safetensors
tensors = {"b": torch.arange(6.0).reshape(2, 3), "a": torch.ones(4)}
meta = {"name": "x", "resolution": 32, "recipe": {"steps": 3, "bias": 0.9}}
print(save_safetensors(tensors, sys.argv[1], meta))
"""


def test_a_safetensors_file_hashes_the_same_in_every_process(tmp_path):
    digests = {
        subprocess.run(
            [sys.executable, "-c", SAVE_IN_A_FRESH_PROCESS, str(tmp_path / f"w{i}.safetensors")],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": str(i)},
        ).stdout
        for i in range(4)
    }
    assert len(digests) == 1
    assert read_safetensors_metadata(tmp_path / "w0.safetensors") == {
        "name": "x",
        "recipe": {"bias": 0.9, "steps": 3},
        "resolution": 32,
    }


def test_atomic_writes_are_readable_by_others_and_leave_no_temporary_files(tmp_path):
    path = atomic_write_text(tmp_path / "card.json", "{}")
    save_safetensors({"x": torch.zeros(2)}, tmp_path / "t.safetensors")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["card.json", "t.safetensors"]


def test_a_corrupt_safetensors_file_is_named_in_a_clear_error(tmp_path):
    bad = tmp_path / "weights.safetensors"
    bad.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(ValueError, match="weights.safetensors is not a readable safetensors file"):
        read_safetensors_metadata(bad, "generator weights")


@pytest.mark.parametrize("name", ["../secret.json", "/etc/passwd", "a/../../secret.json"])
def test_names_that_leave_the_card_folder_are_refused_alike_whether_or_not_the_file_exists(
    tmp_path, name
):
    (tmp_path / "secret.json").write_text("{}")
    card = tmp_path / "card"
    card.mkdir()
    with pytest.raises(ValueError, match="must be a path inside the card's folder") as existing:
        resolve_inside(card, name, "eraser")
    (tmp_path / "secret.json").unlink()
    with pytest.raises(ValueError) as missing:
        resolve_inside(card, name, "eraser")
    assert str(existing.value) == str(missing.value)


def test_a_link_pointing_out_of_the_card_folder_is_refused(tmp_path):
    card = tmp_path / "card"
    card.mkdir()
    (tmp_path / "outside.json").write_text("{}")
    (card / "inside.json").symlink_to(tmp_path / "outside.json")
    with pytest.raises(ValueError, match="resolves outside the card's folder"):
        resolve_inside(card, "inside.json", "eraser")
    assert resolve_inside(card, "sub/ok.json", "eraser") == (card / "sub" / "ok.json").resolve()


def test_received_json_is_strict_and_bounded(tmp_path):
    from plumbing.files import read_json

    def json_file(text, name="card.json"):
        path = tmp_path / name
        path.write_text(text)
        return path

    assert read_json(json_file('{"a": [1, {"b": null}]}'), "card") == {"a": [1, {"b": None}]}
    with pytest.raises(
        ValueError, match=r"card .*card.json is not valid JSON: key 'a' appears twice"
    ):
        read_json(json_file('{"a": 1, "a": 2}'), "card")
    with pytest.raises(ValueError, match=r"x\[1\].y is Infinity"):
        read_json(json_file('{"x": [0, {"y": Infinity}]}'), "card")
    with pytest.raises(ValueError, match="nests 100000 levels deep; at most 64"):
        read_json(json_file("[" * 100_000 + "]" * 100_000), "card")
    assert read_json(json_file('["[[[[", "]]]]"]'), "card") == [
        "[[[[",
        "]]]]",
    ]  # brackets in strings do not nest
    with pytest.raises(ValueError, match="is 101 bytes; a JSON file here may hold at most 100"):
        read_json(json_file("[" + " " * 99 + "]"), "card", max_bytes=100)


def test_a_safetensors_header_is_checked_before_anything_is_loaded(tmp_path):
    import json
    import struct

    from plumbing.files import load_safetensors

    def raw(header: dict, data: bytes) -> bytes:
        text = json.dumps(header).encode()
        return struct.pack("<Q", len(text)) + text + data

    good = tmp_path / "good.safetensors"
    save_safetensors({"w": torch.ones(2, 3)}, good)
    assert load_safetensors(good, "weights", expect={"w": "F32"}, finite=True)["w"].shape == (2, 3)
    with pytest.raises(ValueError, match="tensor 'w' has dtype F32, expected BOOL"):
        load_safetensors(good, "weights", expect={"w": "BOOL"})
    with pytest.raises(ValueError, match="lacks the tensor 'v'"):
        load_safetensors(good, "weights", expect={"v": "F32"})
    cases = {
        "huge": (
            raw(
                {"w": {"dtype": "F32", "shape": [1 << 40], "data_offsets": [0, 4 << 40]}}, b"\0" * 8
            ),
            "describes 4398046511104 bytes",
        ),
        "gap": (
            raw({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8),
            "gaps",
        ),
        "dtype": (
            raw({"w": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}}, b"\0" * 16),
            "dtype 'F128'",
        ),
        "claims": (struct.pack("<Q", 1 << 40) + b"{}", "header claims"),
        "nan": (
            raw(
                {"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}},
                struct.pack("<f", float("nan")),
            ),
            "NaN",
        ),
    }
    for name, (data, message) in cases.items():
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(data)
        with pytest.raises(ValueError, match=message):
            load_safetensors(path, "weights", finite=True)


def test_strings_from_files_are_escaped_before_they_reach_a_terminal():
    from plumbing.files import printable

    assert printable("fairgen \x1b[2J\x1b[31m0.1\u202e") == "fairgen \\x1b[2J\\x1b[31m0.1\\u202e"
    assert printable("two\nlines\tand é") == "two\nlines\tand é"


def _card(folder, name="card", kind="walks", tensors=None, **fields):
    """A card ``<name>.json`` pinning ``<name>.safetensors`` (written through save_safetensors)."""
    tensor_name = f"{name}.safetensors"
    digest = save_safetensors(tensors or {"w": torch.ones(2, 3)}, folder / tensor_name)
    card = {"fairgen_card": kind, "version": 1, "tensors": {"file": tensor_name, "sha256": digest}}
    path = folder / f"{name}.json"
    path.write_text(json.dumps({**card, **fields}))
    return path


def test_read_card_returns_the_json_and_the_pinned_tensors(tmp_path):
    from plumbing.files import read_card, sha256_file

    path = _card(tmp_path, extra=3)
    card, tensors = read_card(path.with_suffix(""), "walk card", "walks", version=1)
    assert card["extra"] == 3 and torch.equal(tensors["w"], torch.ones(2, 3))
    pinned, _ = read_card(path, "walk card", ("walks", "eraser"), sha256=sha256_file(path))
    assert pinned == card
    assert read_card(path, "walk card", "walks", tensors=False) == (card, {})


def test_read_card_refuses_each_broken_part_by_name(tmp_path):
    from plumbing.files import read_card

    path = _card(tmp_path)
    with pytest.raises(
        ValueError, match=r"is not a fairgen eraser card \('fairgen_card' is 'walks'"
    ):
        read_card(path, "eraser card", "eraser")
    with pytest.raises(ValueError, match="has version 1; this fairgen reads version 2"):
        read_card(path, "walk card", "walks", version=2)
    with pytest.raises(ValueError, match="does not match the SHA-256 pinned for it"):
        read_card(path, "walk card", "walks", sha256="0" * 64)
    with pytest.raises(ValueError, match="tensor 'v'"):
        read_card(path, "walk card", "walks", expect={"v": "F32"})
    with pytest.raises(ValueError, match="tensor 'w' has dtype F32, expected I64"):
        read_card(path, "walk card", "walks", expect=lambda card: {"w": "I64"})
    (tmp_path / "card.safetensors").write_bytes(b"changed")
    with pytest.raises(ValueError, match="does not match the SHA-256 recorded in card.json"):
        read_card(path, "walk card", "walks")
    (tmp_path / "card.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="card.safetensors named by card.json do not exist"):
        read_card(path, "walk card", "walks")
    outside = _card(tmp_path, "out", tensors={"w": torch.zeros(1)})
    data = json.loads(outside.read_text())
    data["tensors"]["file"] = "../out.safetensors"
    outside.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="must be a path inside"):
        read_card(outside, "walk card", "walks")


def test_read_card_can_find_tensors_renamed_with_their_card(tmp_path):
    from plumbing.files import read_card

    path = _card(tmp_path, "old")
    (tmp_path / "old.json").rename(tmp_path / "new.json")
    (tmp_path / "old.safetensors").rename(tmp_path / "new.safetensors")
    with pytest.raises(FileNotFoundError, match=r"old.safetensors named by new.json"):
        read_card(tmp_path / "new.json", "eraser card", "walks")
    card, tensors = read_card(tmp_path / "new.json", "eraser card", "walks", renamed_ok=True)
    assert card["tensors"]["file"] == path.with_suffix(".safetensors").name and "w" in tensors
    (tmp_path / "new.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"old.safetensors \(or new.safetensors\)"):
        read_card(tmp_path / "new.json", "eraser card", "walks", renamed_ok=True)
