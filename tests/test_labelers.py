"""Labelers from the command line's names: classifiers and CLIP with local weights (tiny random
models built here), entry points, and the one contract they all meet."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from fairgen.labelers import Labeler, load_labeler
from plumbing.validation import check_labeler_output


def test_the_contract_turns_scores_into_labels_and_refuses_the_rest():
    assert check_labeler_output(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), 2, "x").tolist() == [1, 0]
    assert check_labeler_output([0, 2, 1], 3, "x").dtype == torch.int64
    with pytest.raises(ValueError, match=r"returned shape \[2\] for 3 images"):
        check_labeler_output([0, 1], 3, "x")
    with pytest.raises(ValueError, match="non-integer"):
        check_labeler_output(torch.tensor([0.5, 1.0]), 2, "x")
    with pytest.raises(ValueError, match="negative"):
        check_labeler_output([-1, 0], 2, "x")
    with pytest.raises(ValueError, match="not a callable"):
        Labeler(3, "three")


def _classifier_config(tmp_path, library="torchvision", arch="resnet18", **extra):
    from fairgen.models import build_classifier

    torch.manual_seed(0)
    model = build_classifier(library, arch, num_classes=4)
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        str(tmp_path / "net.safetensors"),
    )
    config = {
        "kind": "classifier",
        "library": library,
        "arch": arch,
        "weights": "net.safetensors",
        "num_classes": 4,
        "image_size": 32,
        "values": ["a", "b"],
        "classes": {"a": [0, 1], "b": [2, 3]},
        **extra,
    }
    (tmp_path / "labeler.json").write_text(json.dumps(config))
    return tmp_path / "labeler.json", model


@pytest.mark.parametrize("library, arch", [("torchvision", "resnet18"), ("timm", "resnet10t")])
def test_a_classifier_with_local_weights_labels_by_its_class_groups(tmp_path, library, arch):
    pytest.importorskip(library)
    path, model = _classifier_config(tmp_path, library, arch)
    labeler = load_labeler(str(path))
    images = torch.rand(6, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    from fairgen.models import ImageModel

    reference = ImageModel(model.eval(), 32)(images).softmax(1)
    expected = (reference[:, 2:].sum(1) > reference[:, :2].sum(1)).long()
    assert torch.equal(labeler(images), expected)
    assert (
        labeler.provenance()["values"] == ["a", "b"] and len(labeler.provenance()["sha256"]) == 64
    )


def test_clip_zero_shot_with_one_prompt_per_value(tmp_path):
    open_clip = pytest.importorskip("open_clip")
    tiny = {
        "embed_dim": 16,
        "vision_cfg": {
            "image_size": 32,
            "layers": 1,
            "width": 32,
            "head_width": 16,
            "patch_size": 16,
        },
        "text_cfg": {
            "context_length": 77,
            "vocab_size": 49408,
            "width": 32,
            "heads": 2,
            "layers": 1,
        },
    }
    (tmp_path / "tiny-clip-test.json").write_text(json.dumps(tiny))
    open_clip.add_model_config(str(tmp_path / "tiny-clip-test.json"))
    torch.manual_seed(0)
    model = open_clip.create_model("tiny-clip-test")
    torch.save(model.state_dict(), tmp_path / "clip.pt")
    config = {
        "kind": "clip",
        "arch": "tiny-clip-test",
        "weights": "clip.pt",
        "model_config": "tiny-clip-test.json",
        "values": ["cat", "dog"],
        "prompts": ["a photo of a cat", "a photo of a dog"],
    }
    (tmp_path / "clip.json").write_text(json.dumps(config))
    labels = load_labeler(str(tmp_path / "clip.json"))(torch.rand(5, 3, 40, 40))
    assert labels.shape == (5,) and set(labels.tolist()) <= {0, 1}


@pytest.mark.parametrize(
    "change, error, match",
    [
        ({"arch": "resnet_nope"}, ValueError, "unknown torchvision model 'resnet_nope'"),
        ({"weights": "../outside.safetensors"}, ValueError, "inside the card's folder"),
        ({"weights": "absent.safetensors"}, FileNotFoundError, "absent.safetensors"),
        ({"classes": {"a": [0]}}, ValueError, "'classes' must map every value"),
        ({"values": ["only"]}, ValueError, "at least two protected values"),
    ],
)
def test_a_bad_classifier_config_is_a_clear_error(tmp_path, change, error, match):
    path, _ = _classifier_config(tmp_path)
    config = {**json.loads(path.read_text()), **change}
    path.write_text(json.dumps(config))
    with pytest.raises(error, match=match):
        load_labeler(str(path))


def test_weights_that_do_not_fit_the_model_are_named(tmp_path):
    path, _ = _classifier_config(tmp_path)
    save_file({"fc.weight": torch.zeros(4, 3)}, str(tmp_path / "net.safetensors"))
    with pytest.raises(ValueError, match="net.safetensors does not fit the model"):
        load_labeler(str(path))


def test_unknown_labeler_names_are_refused():
    with pytest.raises(ValueError, match="is none of"):
        load_labeler("just-a-word")
    with pytest.raises(ValueError, match="world:nope is not a world judge"):
        load_labeler("world:nope")
