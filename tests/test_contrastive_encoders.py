"""Encoders produce the advertised feature width; the small-image stem keeps resolution."""

import pytest
import torch
from torch import nn

from fairgen.contrastive import (
    ProjectionHead,
    build_encoder,
    build_optimizer,
    list_encoders,
    warmup_cosine,
)


@pytest.mark.parametrize(
    ("name", "dim"), [("small_cnn", 256), ("resnet18", 512), ("resnet50", 2048)]
)
@pytest.mark.parametrize("small_images", [True, False])
def test_encoder_maps_images_to_its_feature_dim(name, dim, small_images):
    backbone, feature_dim = build_encoder(name, small_images=small_images)
    assert feature_dim == dim
    assert backbone.eval()(torch.rand(2, 3, 32, 32)).shape == (2, dim)


def test_small_image_stem_replaces_strided_conv_and_maxpool():
    big, _ = build_encoder("resnet18")
    small, _ = build_encoder("resnet18", small_images=True)
    assert big.conv1.stride == (2, 2) and isinstance(big.maxpool, nn.MaxPool2d)
    assert small.conv1.kernel_size == (3, 3) and small.conv1.stride == (1, 1)
    assert isinstance(small.maxpool, nn.Identity)


def test_unknown_encoder_name_is_rejected():
    with pytest.raises(ValueError, match="unknown encoder 'vgg_h'.*torchvision:NAME"):
        build_encoder("vgg_h")
    with pytest.raises(ValueError, match="unknown encoder 'torchvision:nope'"):
        build_encoder("torchvision:nope")
    assert list_encoders() == ["resnet18", "resnet50", "small_cnn"]


@pytest.mark.parametrize("name", ["torchvision:mobilenet_v3_small", "shufflenet_v2_x0_5"])
def test_any_torchvision_architecture_trains_from_scratch_as_a_backbone(name):
    backbone, dim = build_encoder(name, small_images=True)
    assert backbone.eval()(torch.rand(2, 3, 64, 64)).shape == (2, dim)


def test_a_torchvision_model_without_a_linear_classifier_is_a_clear_error():
    with pytest.raises(ValueError, match="squeezenet1_0.*no Linear classifier"):
        build_encoder("squeezenet1_0")


def test_timm_names_need_the_timm_extra_or_build_a_headless_model():
    try:
        import timm  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"fairgen\[timm\]"):
            build_encoder("timm:resnet18")
        return
    backbone, dim = build_encoder("timm:resnet18")
    assert backbone.eval()(torch.rand(2, 3, 32, 32)).shape == (2, dim)


def test_projection_head_output_width():
    head = ProjectionHead(256, hidden_dim=64, out_dim=32, num_layers=3)
    assert head(torch.randn(5, 256)).shape == (5, 32)


def test_warmup_then_cosine_schedule_shape():
    model = nn.Linear(2, 2)
    optimizer = build_optimizer(model, "sgd", lr=1.0)
    schedule = warmup_cosine(optimizer, warmup_steps=4, total_steps=12, final_fraction=0.1)
    lrs = []
    for _ in range(12):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:], strict=False))
    assert lrs[-1] == pytest.approx(
        0.1 + 0.9 * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * 7 / 8)).item())
    )


@pytest.mark.parametrize("name", ["sgd", "lars", "adamw"])
def test_every_optimizer_decreases_a_simple_loss_and_spares_biases_from_decay(name):
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    optimizer = build_optimizer(model, name, lr=0.1, weight_decay=0.1)
    no_decay = [g for g in optimizer.param_groups if g["weight_decay"] == 0.0]
    assert [p.ndim for g in no_decay for p in g["params"]] == [1]
    x, y = torch.randn(64, 4), torch.randn(64, 1)
    start = nn.functional.mse_loss(model(x), y).item()
    for _ in range(30):
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
    assert nn.functional.mse_loss(model(x), y).item() < start


def test_unknown_optimizer_is_rejected():
    with pytest.raises(ValueError, match="unknown optimizer"):
        build_optimizer(nn.Linear(2, 2), "adagrad", lr=0.1)
