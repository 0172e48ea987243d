"""Images are decoded to what they look like, or refused by name: every format against its 8-bit
RGB twin."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from handmade_png import png
from PIL import Image

from fairgen.data import load_data
from fairgen.data.images import BACKGROUND, decode_rgb8


def pil_bytes(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


@pytest.fixture
def rgb():
    return np.random.default_rng(0).integers(0, 256, size=(12, 10, 3)).astype(np.uint8)


def test_a_16_bit_colour_png_decodes_exactly_as_its_8_bit_twin(rgb):
    assert np.array_equal(decode_rgb8(png(rgb.astype(np.uint16) * 257, 16, 2), "16.png"), rgb)
    assert np.array_equal(decode_rgb8(png(rgb, 8, 2), "8.png"), rgb)


def test_a_16_bit_grey_png_decodes_exactly_as_its_8_bit_twin(rgb):
    grey = rgb[..., 0]
    decoded = decode_rgb8(png(grey.astype(np.uint16) * 257, 16, 0), "grey16.png")
    assert np.array_equal(decoded, np.repeat(grey[..., None], 3, axis=2))
    assert np.array_equal(
        decoded, decode_rgb8(pil_bytes(Image.fromarray(grey, "L"), "PNG"), "grey8.png")
    )


def test_palette_and_bilevel_images_decode_as_their_rgb_twins(rgb):
    palette = Image.fromarray(rgb).quantize(16)
    assert np.array_equal(
        decode_rgb8(pil_bytes(palette, "PNG"), "p.png"), np.asarray(palette.convert("RGB"))
    )
    bilevel = Image.fromarray(rgb[..., 0] > 127)
    expected = np.repeat((rgb[..., :1] > 127).astype(np.uint8) * 255, 3, axis=2)
    assert np.array_equal(decode_rgb8(pil_bytes(bilevel, "PNG"), "1.png"), expected)


def test_a_cmyk_image_decodes_as_its_rgb_twin(rgb):
    cmyk = Image.fromarray(rgb).convert("CMYK")
    assert np.array_equal(
        decode_rgb8(pil_bytes(cmyk, "TIFF"), "cmyk.tif"), rgb
    )  # lossless: identical
    smooth = np.repeat(np.linspace(0, 255, 64, dtype=np.uint8)[None, :, None], 64, axis=0).repeat(
        3, axis=2
    )
    from_jpeg = decode_rgb8(
        pil_bytes(Image.fromarray(smooth).convert("CMYK"), "JPEG", quality=95), "cmyk.jpg"
    )
    assert (
        np.abs(from_jpeg.astype(int) - smooth).mean() < 3
    )  # JPEG is lossy; not inverted, not black


def test_transparency_is_composited_on_white_never_the_hidden_colour(rgb):
    alpha = np.random.default_rng(1).integers(0, 256, size=rgb.shape[:2]).astype(np.uint8)
    decoded = decode_rgb8(png(np.dstack([rgb, alpha]), 8, 6), "rgba.png").astype(float)
    a = alpha[..., None] / 255.0
    expected = np.round(rgb * a + np.asarray(BACKGROUND) * (1 - a))
    assert np.abs(decoded - expected).max() <= 1  # integer rounding of the same blend
    hidden = decode_rgb8(png(np.dstack([rgb, np.zeros_like(alpha)]), 8, 6), "clear.png")
    assert (hidden == 255).all()  # a fully transparent image is white, whatever RGB it hides
    opaque = decode_rgb8(png(np.dstack([rgb, np.full_like(alpha, 255)]), 16 // 2, 6), "opaque.png")
    assert np.array_equal(opaque, rgb)
    sixteen = decode_rgb8(
        png(np.dstack([rgb, np.full_like(alpha, 255)]).astype(np.uint16) * 257, 16, 6), "o16.png"
    )
    assert np.array_equal(sixteen, rgb)


def test_animated_gif_and_apng_are_refused_by_name(rgb):
    frames = [Image.fromarray(rgb), Image.fromarray(255 - rgb)]
    gif = pil_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:])
    with pytest.raises(ValueError, match=r"anim\.gif is animated \(2 frames\)"):
        decode_rgb8(gif, "anim.gif")
    apng = pil_bytes(frames[0], "PNG", save_all=True, append_images=frames[1:])
    with pytest.raises(ValueError, match="anim.png is animated"):
        decode_rgb8(apng, "anim.png")
    assert (
        decode_rgb8(pil_bytes(frames[0], "GIF"), "still.gif").shape == rgb.shape
    )  # a still GIF is fine


def test_an_image_over_the_pixel_cap_is_refused_from_its_header_before_decoding(rgb, tmp_path):
    with pytest.raises(
        ValueError, match=r"big\.png declares 10x12 = 120 pixels, more than the 100 allowed"
    ):
        decode_rgb8(png(rgb, 8, 2), "big.png", max_pixels=100)
    liar = png(rgb, 8, 2, size=(20000, 20000))  # a few hundred bytes that declare 400 megapixels
    with pytest.raises(
        ValueError, match="liar.png declares 400,000,000 pixels, more than the 40,000,000 allowed"
    ):
        decode_rgb8(liar, "liar.png")
    modest = png(rgb, 8, 2, size=(5000, 5000))  # under Pillow's limit: our header check refuses it
    with pytest.raises(
        ValueError,
        match="modest.png declares 5000x5000 = 25,000,000 pixels, more than the 1,000,000",
    ):
        decode_rgb8(modest, "modest.png", max_pixels=10**6)
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "liar.png").write_bytes(liar)
    with pytest.raises(ValueError, match="liar.png .*declares 400,000,000 pixels"):
        next(load_data(tmp_path / "imgs").images())
    with pytest.raises(ValueError, match="max_pixels must be a positive integer"):
        load_data(tmp_path / "imgs", max_pixels=0)


def test_corrupt_and_float_images_are_refused_by_name(rgb):
    with pytest.raises(ValueError, match="cut.png cannot be read"):
        decode_rgb8(png(rgb, 8, 2)[:60], "cut.png")
    with pytest.raises(ValueError, match="f.tif holds 32-bit float pixels"):
        decode_rgb8(pil_bytes(Image.fromarray(rgb[..., 0].astype(np.float32)), "TIFF"), "f.tif")


def _tiny_encoder(path):
    from fairgen.contrastive import TrainConfig
    from fairgen.contrastive.encoders import build_encoder
    from plumbing.files import save_safetensors

    torch.manual_seed(0)
    config = TrainConfig(encoder="small_cnn")
    backbone, _ = build_encoder(config.encoder, config.small_images)
    save_safetensors(backbone.state_dict(), path, metadata={"config": config.to_dict()})
    return path


def test_an_audit_of_16_bit_images_gives_the_numbers_of_their_8_bit_twins(tmp_path):
    from fairgen.audit import audit_encoder_on_data

    rng = np.random.default_rng(0)
    for i in range(40):
        kind, tone = "ab"[i % 2], "xy"[(i // 2) % 2]
        image = (
            rng.integers(0, 120, size=(16, 16, 3))
            + (100 if tone == "y" else 0)
            + (20 if kind == "b" else 0)
        )
        for bits, folder in ((8, "eight"), (16, "sixteen")):
            path = tmp_path / folder / f"kind={kind}" / f"tone={tone}" / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(png(image.astype(np.uint16) * (257 if bits == 16 else 1), bits, 2))
    encoder = _tiny_encoder(tmp_path / "encoder.safetensors")
    sections = {}
    for folder in ("eight", "sixteen"):
        audit_encoder_on_data(
            str(encoder),
            str(tmp_path / folder),
            "kind",
            ["tone"],
            tmp_path / f"audit-{folder}",
            n_permutations=19,
            n_bootstrap=50,
            progress=False,
        )
        sections[folder] = json.loads((tmp_path / f"audit-{folder}" / "report.json").read_text())[
            "sections"
        ]
    assert sections["eight"] == sections["sixteen"]
    assert sections["eight"]["tone leakage"]["balanced_accuracy"] > 0.9  # the leak is seen, in both
