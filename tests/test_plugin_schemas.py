"""The plug-in files' JSON Schemas (docs/schemas) say exactly what the code accepts, and a
misspelt key is refused with the closest known key suggested."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from fairgen.labelers.models import KEYS, load_model_labeler
from fairgen.spec import REQUIRED_KEYS, StreamSpec
from fairgen.views import VIEW_KINDS, ViewRecipe

jsonschema = pytest.importorskip("jsonschema")
SCHEMAS = Path(__file__).resolve().parents[1] / "docs" / "schemas"


def schema(name: str) -> dict:
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text())


def test_the_labeler_schema_lists_the_keys_the_loader_accepts_per_kind():
    defs = schema("labeler")["$defs"]
    for kind, keys in KEYS.items():
        assert set(defs[kind]["properties"]) == set(keys), kind
        assert defs[kind]["additionalProperties"] is False


def test_the_stream_spec_schema_lists_the_specs_fields_and_required_keys():
    spec = schema("stream-spec")
    assert set(spec["properties"]) == {f.name for f in dataclasses.fields(StreamSpec)}
    assert spec["required"] == list(REQUIRED_KEYS)
    views = spec["properties"]["views"]
    assert set(views["properties"]) == {f.name for f in dataclasses.fields(ViewRecipe)}
    assert views["properties"]["kinds"]["items"]["enum"] == list(VIEW_KINDS)


def test_a_written_stream_spec_and_the_documented_labelers_validate(tmp_path):
    written = json.loads(StreamSpec(seed=4).save(tmp_path / "stream.json").read_text())
    jsonschema.validate(written, schema("stream-spec"))
    classifier = {
        "kind": "classifier",
        "library": "torchvision",
        "arch": "resnet18",
        "weights": "resnet18.pth",
        "num_classes": 1000,
        "image_size": 224,
        "values": ["dog", "cat"],
        "classes": {"dog": [151, 152], "cat": [281, 282]},
    }
    clip = {
        "kind": "clip",
        "arch": "ViT-B-32",
        "weights": "clip.safetensors",
        "model_config": "ViT-B-32.json",
        "values": ["man", "woman"],
        "prompts": ["a photo of a man", "a photo of a woman"],
    }
    for config in (classifier, clip):
        jsonschema.validate(config, schema("labeler"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**classifier, "num_clases": 2}, schema("labeler"))


def test_a_steering_card_from_save_card_validates(tmp_path):
    import torch

    from steering import LatentSteerer, save_card

    g = torch.Generator().manual_seed(0)
    z, y = torch.randn(200, 4, generator=g), torch.randint(2, (200,), generator=g)
    steerer = LatentSteerer().fit(z, y, (z[:, 0] > 0).long())
    provenance = {"generator": {"name": "g", "sha256": "0" * 64, "options": {}}, "n": 200}
    card = json.loads(save_card(steerer, tmp_path / "card", provenance).read_text())
    jsonschema.validate(card, schema("steering-card"))


@pytest.mark.parametrize(
    "kind, typo, suggestion",
    [("classifier", "num_clases", "num_classes"), ("clip", "promts", "prompts")],
)
def test_a_misspelt_labeler_key_is_refused_with_the_closest_key(tmp_path, kind, typo, suggestion):
    config = {"kind": kind, "values": ["a", "b"], "weights": "w.pt", typo: 2}
    path = tmp_path / "labeler.json"
    path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match=rf"'{typo}' \(did you mean '{suggestion}'\?\)"):
        load_model_labeler(path)


def test_a_misspelt_stream_spec_key_is_refused_with_the_closest_key():
    data = {**StreamSpec().to_dict(), "sed": 3}
    with pytest.raises(
        ValueError, match=r"unknown stream spec keys: 'sed' \(did you mean 'seed'\?\)"
    ):
        StreamSpec.from_dict(data)
