"""Decode one image file to 8-bit RGB, or refuse it with a clear error naming it.

Every image becomes what it looks like on screen, 8 bits per channel:

* 16-bit PNGs (grey or colour) are rounded to 8 bits (``v16 * 255 / 65535``), so a 16-bit image
  and its 8-bit twin give identical tensors (torchvision's decoder read them as white);
* palette, grey, bilevel and CMYK images are converted to RGB (Pillow's conversions);
* images with transparency (RGBA, LA, palette or grey with a transparent colour) are
  **composited on white** (``BACKGROUND``): a fully transparent pixel reads as white, never as the
  colour hidden under it;
* **animated images (GIF, APNG, WebP) are refused**: which frame is "the" image is not ours to
guess;
* 32-bit float images are refused;
* an image whose header declares more than ``max_pixels`` pixels is refused *before* it is
  decoded (as Pillow's decompression-bomb limit does), so a small file cannot exhaust memory.
"""

from __future__ import annotations

import io
import re
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

MAX_PIXELS = 40_000_000  # 40 megapixels: 120 MB as 8-bit RGB; 20000 x 20000 is refused
BACKGROUND = (255, 255, 255)  # transparent pixels are composited on white
FORMATS = (
    "PNG",
    "JPEG",
    "WEBP",
    "GIF",
    "BMP",
    "TIFF",
)  # Pillow plug-ins we let parse received bytes
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def decode_rgb8(raw: bytes, name: str, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """``raw`` file bytes as an ``[H, W, 3]`` uint8 array; a ValueError naming ``name``
    otherwise."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter(
                "ignore", Image.DecompressionBombWarning
            )  # we apply our own cap below
            image = Image.open(io.BytesIO(raw), formats=FORMATS)
    except (
        Image.DecompressionBombError
    ) as error:  # Pillow's own limit (2 x Image.MAX_IMAGE_PIXELS) came first
        found = re.search(r"\((\d+) pixels\)", str(error))
        declared = f"{int(found.group(1)):,}" if found else "too many"
        raise ValueError(
            f"data: image {name} declares {declared} pixels, more than the {max_pixels:,} allowed "
            "(max_pixels); it was not decoded"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ValueError(
            f"data: image {name} cannot be read ({type(error).__name__}: {_first_line(error)})"
        ) from None
    width, height = image.size
    if width * height > max_pixels:
        raise ValueError(
            f"data: image {name} declares {width}x{height} = {width * height:,} pixels, more than "
            f"the {max_pixels:,} allowed (max_pixels); it was not decoded"
        )
    frames = getattr(image, "n_frames", 1)
    if frames > 1:
        raise ValueError(
            f"data: image {name} is animated ({frames} frames); fairgen reads still images only "
            "(save the frame you mean as its own file)"
        )
    try:
        image.load()
        return _to_rgb8(image, name)
    except ValueError:
        raise
    except Exception as error:  # truncated or corrupt pixel data: Pillow raises OSError and friends
        raise ValueError(
            f"data: image {name} cannot be read ({type(error).__name__}: {_first_line(error)})"
        ) from None


def _to_rgb8(image: Image.Image, name: str) -> np.ndarray:
    mode = image.mode
    if mode in _SIXTEEN_BIT:
        values = np.asarray(image).astype(np.int64)
        grey = ((values.clip(0, 65535) * 255 + 32767) // 65535).astype(
            np.uint8
        )  # round(v * 255 / 65535)
        return np.repeat(grey[..., None], 3, axis=2)
    if mode == "F":
        raise ValueError(
            f"data: image {name} holds 32-bit float pixels; save it as 8- or 16-bit PNG"
        )
    transparent = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    try:
        converted = image.convert("RGBA" if transparent else "RGB")
    except ValueError as error:
        raise ValueError(
            f"data: image {name} has pixel mode {mode!r}, which cannot be converted to RGB "
            f"({_first_line(error)})"
        ) from None
    pixels = np.asarray(converted)
    if not transparent:
        return np.array(pixels)  # a writable copy (torch.from_numpy warns on read-only arrays)
    rgb, alpha = pixels[..., :3].astype(np.uint32), pixels[..., 3:].astype(np.uint32)
    background = np.asarray(BACKGROUND, dtype=np.uint32)
    blended = (
        rgb * alpha + background * (255 - alpha) + 127
    ) // 255  # round(a rgb + (1 - a) background)
    return blended.astype(np.uint8)


def _first_line(error: BaseException) -> str:
    text = str(error)
    return text.splitlines()[0] if text else ""
