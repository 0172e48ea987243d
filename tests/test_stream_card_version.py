"""Stream cards stay exact across releases: they hold full recipes and the fairgen version, and a
card from another version (or one naming a preset) loads with a warning."""

import json

import pytest

import fairgen
from fairgen.augment import PRESETS
from fairgen.stream import StreamSpec, StreamVersionWarning


def test_a_card_records_the_full_augmentation_recipe_and_the_version(tmp_path):
    spec = StreamSpec(generator_sha256="x", augment="light")
    data = json.loads(spec.save(tmp_path / "s.json").read_text())
    assert data["augment"] == PRESETS["light"].to_dict()
    assert data["views"]["kinds"] and "sigma" in data["views"]
    assert data["fairgen_version"] == fairgen.__version__


def test_a_card_of_this_version_loads_without_warnings(tmp_path, recwarn):
    StreamSpec.load(StreamSpec(generator_sha256="x").save(tmp_path / "s.json"))
    assert not [w for w in recwarn if issubclass(w.category, StreamVersionWarning)]


def test_a_card_of_another_version_loads_with_a_warning(tmp_path):
    data = {**StreamSpec(generator_sha256="x").to_dict(), "fairgen_version": "0.0.1"}
    (tmp_path / "s.json").write_text(json.dumps(data))
    with pytest.warns(StreamVersionWarning, match="fairgen 0.0.1"):
        spec = StreamSpec.load(tmp_path / "s.json")
    assert spec.augment == data["augment"]  # the recipe the card holds, not this release's preset


def test_an_old_card_naming_a_preset_warns_and_records_the_preset_in_full(tmp_path):
    data = StreamSpec(generator_sha256="x").to_dict()
    del data["fairgen_version"]
    data["augment"] = "simclr"
    (tmp_path / "s.json").write_text(json.dumps(data))
    with pytest.warns(StreamVersionWarning, match="preset 'simclr'"):
        spec = StreamSpec.load(tmp_path / "s.json")
    assert spec.augment == PRESETS["simclr"].to_dict()
