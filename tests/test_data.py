"""Real data for audits (folder, CSV/Parquet manifest, exported WebDataset shards), encoders by
name, generators by entry point, and portable cards: the bad inputs get clear errors."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from torchvision.io import encode_png

from fairgen.cli import main
from fairgen.data import load_data


def _png(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_png(torch.full((3, 8, 8), value, dtype=torch.uint8)).numpy().tobytes())


@pytest.fixture
def photos(tmp_path):
    for i in range(8):
        _png(tmp_path / "photos" / f"kind={'ab'[i % 2]}" / f"{i}.png", 30 * i)
    frame = pd.DataFrame(
        {
            "path": [f"photos/kind={'ab'[i % 2]}/{i}.png" for i in range(8)],
            "kind": list("abababab"),
            "tone": ["x"] * 4 + ["y"] * 4,
            "same": ["z"] * 8,
        }
    )
    frame.to_csv(tmp_path / "manifest.csv", index=False)
    return tmp_path


def test_a_folder_gives_columns_from_key_value_folder_names_and_images_in_unit_range(photos):
    table = load_data(photos / "photos")
    assert table.columns == ["kind"] and sorted(table.column("kind")) == list("aaaabbbb")
    images = torch.cat(list(table.images(resolution=16)))
    assert images.shape == (8, 3, 16, 16) and 0 <= images.min() and images.max() <= 1
    assert len(table.sha256) == 64


def test_csv_and_parquet_manifests_read_the_same(photos):
    pytest.importorskip("pyarrow")
    pd.read_csv(photos / "manifest.csv").to_parquet(photos / "manifest.parquet")
    a, b = load_data(photos / "manifest.csv"), load_data(photos / "manifest.parquet")
    assert a.columns == b.columns == ["kind", "tone", "same"]
    assert torch.equal(torch.cat(list(a.images())), torch.cat(list(b.images())))


def test_manifest_errors_name_the_problem(photos):
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['age'\]"):
        load_data(photos / "manifest.csv", columns=["age"])
    frame = pd.read_csv(photos / "manifest.csv")
    frame.drop(columns="path").to_csv(photos / "nopath.csv", index=False)
    with pytest.raises(ValueError, match="needs a 'path' column"):
        load_data(photos / "nopath.csv")
    frame.assign(path=frame.path.str.replace("0.png", "gone.png")).to_csv(
        photos / "gone.csv", index=False
    )
    with pytest.raises(
        FileNotFoundError, match=r"1 image file\(s\) .* do not exist, e.g. .*gone.png"
    ):
        load_data(photos / "gone.csv")
    (photos / "photos" / "kind=a" / "0.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"image .*0.png .* cannot be read"):
        list(load_data(photos / "manifest.csv").images())
    with pytest.raises(ValueError, match="column 'same' .* has only one value"):
        load_data(photos / "manifest.csv").column("same", "--protected")


def test_exported_webdataset_shards_read_back(tmp_path):
    spec = tmp_path / "stream.json"
    assert main(["stream", "--new", str(spec)]) == 0
    assert (
        main(
            [
                "stream",
                "--spec",
                str(spec),
                "--export",
                str(tmp_path / "wds"),
                "--n",
                "6",
                "--format",
                "webdataset",
                "--batch-size",
                "6",
                "--quiet",
            ]
        )
        == 0
    )
    table = load_data(tmp_path / "wds")
    assert (
        table.kind == "webdataset" and len(table) == 6 and {"class", "step"} <= set(table.columns)
    )
    assert torch.cat(list(table.images())).shape == (6, 3, 32, 32)


def test_audit_refuses_a_target_with_one_value_and_an_unknown_encoder(photos, tmp_path, capsys):
    base = [
        "audit",
        "--data",
        str(photos / "manifest.csv"),
        "--protected",
        "tone",
        "--out",
        str(tmp_path / "a"),
    ]
    assert (
        main(
            [
                *base,
                "--encoder",
                "torchvision:resnet_nope",
                "--encoder-weights",
                "w.pt",
                "--target",
                "kind",
            ]
        )
        == 2
    )
    assert "unknown torchvision model 'resnet_nope'" in capsys.readouterr().err
    assert main([*base, "--encoder", "torchvision:resnet18", "--target", "kind"]) == 2
    assert "needs --encoder-weights" in capsys.readouterr().err
    assert main([*base, "--encoder", str(tmp_path / "none.safetensors"), "--target", "kind"]) == 2
    assert "neither an encoder file" in capsys.readouterr().err
    assert (
        main(
            [
                *base,
                "--encoder",
                "torchvision:resnet18",
                "--encoder-weights",
                "w.pt",
                "--target",
                "same",
            ]
        )
        == 2
    )
    assert "--target: column 'same'" in capsys.readouterr().err


def test_a_torchvision_encoder_with_local_weights_audits_a_manifest(photos, tmp_path):
    from safetensors.torch import save_file

    from fairgen.models import build_classifier

    net = build_classifier("torchvision", "resnet18", num_classes=10)
    save_file(
        {k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "r18.safetensors")
    )
    assert (
        main(
            [
                "audit",
                "--encoder",
                "torchvision:resnet18",
                "--encoder-weights",
                str(tmp_path / "r18.safetensors"),
                "--image-size",
                "32",
                "--data",
                str(photos / "manifest.csv"),
                "--target",
                "kind",
                "--protected",
                "tone",
                "kind",
                "--permutations",
                "4",
                "--bootstrap",
                "20",
                "--quiet",
                "--out",
                str(tmp_path / "a"),
            ]
        )
        == 2
    )
    # target given as protected is refused; now the real run with two protected columns and their
    # intersection
    frame = pd.read_csv(photos / "manifest.csv")
    pd.concat([frame.assign(mood=m) for m in "pq" * 6]).to_csv(photos / "two.csv", index=False)
    assert (
        main(
            [
                "audit",
                "--encoder",
                "torchvision:resnet18",
                "--encoder-weights",
                str(tmp_path / "r18.safetensors"),
                "--image-size",
                "32",
                "--data",
                str(photos / "two.csv"),
                "--target",
                "kind",
                "--protected",
                "tone",
                "mood",
                "--permutations",
                "4",
                "--bootstrap",
                "20",
                "--quiet",
                "--out",
                str(tmp_path / "a"),
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert "tone & mood leakage" in report["sections"]
    assert report["provenance"]["encoder"]["name"] == "torchvision:resnet18"


GEN = """
import torch
from fairgen.generators import load_generator

def sprites(device="cpu", **options):
    return load_generator("world-sprites-32", device=device)

def not_a_generator(device="cpu"):
    return object()
"""


def test_a_generator_by_entry_point_and_its_errors(tmp_path, monkeypatch):
    from fairgen.generators import load_generator

    (tmp_path / "mygen.py").write_text(GEN)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_generator("mygen:sprites").latent_dim > 0
    with pytest.raises(ValueError, match="lacks .* of the Generator protocol"):
        load_generator("mygen:not_a_generator")
    with pytest.raises(ValueError, match="cannot import module 'nowhere_gen'"):
        load_generator("nowhere_gen:factory")
    sys.modules.pop("mygen", None)


def test_received_cards_and_specs_never_reach_outside_their_folder(tmp_path):
    from fairgen.stream import StreamSpec

    (tmp_path / "secret").write_text("x")
    folder = tmp_path / "card"
    folder.mkdir()
    for name in ("../secret", "../nothing-here", "/etc/passwd"):
        (folder / "stream.json").write_text(json.dumps({"eraser": name, "eraser_sha256": "0" * 64}))
        with pytest.raises(ValueError, match="must be a path inside the card's folder") as info:
            StreamSpec.load(folder / "stream.json")
        assert "exist" not in str(info.value)  # the same message whether or not the file exists


def test_a_card_with_missing_or_altered_neighbours_is_refused(tmp_path):
    work = tmp_path / "w"
    assert (
        main(["steer", "--n", "3000", "--eval-n", "300", "--quiet", "--out", str(work / "card")])
        == 0
    )
    assert main(["stream", "--new", str(work / "stream.json"), "--eraser", str(work / "card")]) == 0
    from fairgen.stream import Stream, StreamSpec

    copy = shutil.copytree(work, tmp_path / "copy")
    Stream.from_spec(StreamSpec.load(copy / "stream.json"), 4)  # a copied folder works
    tensors = copy / "card" / "eraser_card.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:-1] + b"\x00")
    with pytest.raises(ValueError, match="does not match the SHA-256"):
        Stream.from_spec(StreamSpec.load(copy / "stream.json"), 4)
    tensors.unlink()
    with pytest.raises(
        FileNotFoundError, match="eraser_card.safetensors named by eraser_card.json do not exist"
    ):
        Stream.from_spec(StreamSpec.load(copy / "stream.json"), 4)
    card = copy / "card" / "eraser_card.json"
    card.write_text(card.read_text().replace("balance", "erase"))
    with pytest.raises(ValueError, match="does not match the SHA-256 pinned"):
        Stream.from_spec(StreamSpec.load(copy / "stream.json"), 4)


def test_stream_resolution_defaults_to_the_generators(tmp_path):
    assert main(["stream", "--new", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text())["resolution"] == 32
    assert np.isscalar(json.loads((tmp_path / "s.json").read_text())["seed"])


def test_memorisation_in_an_encoders_feature_space_flags_a_copying_generator(tmp_path):
    from safetensors.torch import save_file

    from fairgen.generators import load_generator
    from fairgen.models import build_classifier

    generator = load_generator("world-sprites-z128")  # the CLI default: it "copies" these

    def write(folder, seed, n=40):
        z = generator.sample_latents(n, generator=torch.Generator().manual_seed(seed))
        for i, image in enumerate(generator.synthesize(z, torch.arange(n) % generator.num_classes)):
            _png_image(folder / f"{i:03d}.png", image)

    write(
        tmp_path / "train", 0
    )  # the generator's "training set": exactly what it will produce with seed 0
    write(tmp_path / "heldout", 99)
    net = build_classifier("torchvision", "resnet18", num_classes=10)
    save_file(
        {k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "r18.safetensors")
    )
    out = tmp_path / "memo"
    assert (
        main(
            [
                "memorisation",
                "--encoder",
                "torchvision:resnet18",
                "--encoder-weights",
                str(tmp_path / "r18.safetensors"),
                "--image-size",
                "32",
                "--train-data",
                str(tmp_path / "train"),
                "--heldout-data",
                str(tmp_path / "heldout"),
                "--n",
                "40",
                "--pairs",
                "4",
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads((out / "report.json").read_text())
    assert report["sections"]["memorisation"]["memorised"] is True
    assert report["provenance"]["feature_space"] == "torchvision:resnet18"
    assert (out / "near_copies.png").read_bytes()[:4] == b"\x89PNG"


def _png_image(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_png((image.clamp(0, 1) * 255).round().byte()).numpy().tobytes())
