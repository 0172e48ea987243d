"""An export is data the audit reads as it is: the PNG folder's labels.csv and the shard folder,
with the class, the protected labels of the stream's card and each sample's provenance."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

from fairgen.cli import main
from fairgen.data import load_data
from fairgen.export import export_stream
from fairgen.generators import load_generator
from fairgen.labelers import load_labeler
from fairgen.stream import Stream, StreamSpec

AUDIT = ["--image-size", "32", "--permutations", "4", "--bootstrap", "20", "--quiet"]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    from fairgen.models import build_classifier

    path = tmp_path_factory.mktemp("enc") / "r18.safetensors"
    net = build_classifier("torchvision", "resnet18", num_classes=10)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return ["--encoder", "torchvision:resnet18", "--encoder-weights", str(path)]


def test_a_png_export_of_a_steered_stream_audits_with_no_editing(tmp_path, encoder):
    card, spec, png = tmp_path / "card", tmp_path / "stream.json", tmp_path / "png"
    steer = ["steer", "--n", "600", "--eval-n", "200", "--quiet", "--out", str(card)]
    assert main(steer) == 0
    assert main(["stream", "--new", str(spec), "--eraser", str(card)]) == 0
    export = ["--export", str(png), "--n", "80", "--batch-size", "40", "--quiet"]
    assert main(["stream", "--spec", str(spec), *export]) == 0

    table = pd.read_csv(png / "labels.csv")
    assert list(table.columns) == ["path", "key", "class", "step", "texture"]
    assert set(table["texture"]) <= {"plain", "stripes", "dots", "checker"}
    assert all((png / p).is_file() and p.endswith("_v0.png") for p in table["path"])
    assert load_file(png / "latents.safetensors")["latents"].shape[0] == len(table)

    out = tmp_path / "audit"
    args = ["--data", str(png / "labels.csv"), "--target", "class", "--protected", "texture"]
    assert main(["audit", *encoder, *args, *AUDIT, "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert "texture leakage" in report["sections"]


def test_shards_carry_the_protected_labels_and_audit_as_a_folder(tmp_path, encoder):
    generator = load_generator(StreamSpec().generator)
    judge = load_labeler("world:texture", generator=generator)
    stream = Stream(StreamSpec(seed=3), 40, generator=generator)
    out = export_stream(
        stream, tmp_path / "wds", 80, "webdataset", progress=False, labelers={"texture": judge}
    )
    table = load_data(out)
    assert {"class", "step", "texture"} <= set(table.columns)
    # the label is the judge's reading of the sample's anchor image, before augmentation
    again = Stream(StreamSpec(seed=3), 40, generator=generator).next_batch()
    anchors = generator.synthesize(again["latents"], again["labels"])
    expected = [judge.values[i] for i in judge.predict(anchors).tolist()]
    assert list(table.frame["texture"][:40]) == expected
    args = ["--data", str(out), "--target", "class", "--protected", "texture"]
    assert main(["audit", *encoder, *args, *AUDIT, "--out", str(tmp_path / "a")]) == 0


def test_export_refuses_a_column_name_it_writes_itself(tmp_path):
    stream = Stream(StreamSpec(), 4, generator=load_generator(StreamSpec().generator))
    with pytest.raises(ValueError, match="labelers: 'class' is not a usable column name"):
        export_stream(stream, tmp_path / "x", 4, labelers={"class": lambda im: torch.zeros(4)})
