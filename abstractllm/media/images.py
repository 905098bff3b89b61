"""The image pipeline: header first, memory check, then one bounded decode to an RGB ``PIL.Image``.

``plan_image`` opens an image lazily (Pillow reads only the header) and decides the decode size (JPEG
draft mode for huge JPEGs) and the output size (aspect-preserving, at most ``max_pixels``). It refuses
decompression bombs from the header's size, before any pixel is decoded. ``decode_image`` then decodes
once: EXIF orientation applied, the first frame of an animation, any mode converted to RGB (alpha over
white; palette, CMYK, 16-bit, grey), downscaled. Normalization is left to the model's processor.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from typing import Any

from ..exceptions import ImageProcessingError
from ..params import default_of
from .sources import MediaSource, read_source

__all__ = [
    "ImagePlan",
    "plan_image",
    "decode_image",
    "load_image",
    "to_rgb",
    "array_to_image",
    "target_size",
    "BOMB_PIXELS",
    "MIN_IMAGE_SIDE",
    "MAX_ASPECT_RATIO",
]

#: Header sizes above this many pixels are refused before decoding (Pillow's own error threshold).
BOMB_PIXELS = 178_956_970
#: Images smaller than this on a side are refused (a broken upload or a tracking pixel, not a picture).
MIN_IMAGE_SIDE = 8
#: Vision processors (Qwen2-VL's ``smart_resize``) refuse longer/shorter side ratios above this.
MAX_ASPECT_RATIO = 200


@dataclass
class ImagePlan:
    """An opened (not yet decoded) image and the sizes the decode will produce."""

    label: str
    image: Any  # PIL.Image.Image, lazily opened (or already decoded when given as an object)
    size: tuple[int, int]  # (width, height) from the header
    decode_size: tuple[int, int]  # after JPEG draft reduction
    output_size: tuple[int, int]  # final, at most max_pixels
    encoded: bool  # True when decoding from bytes is still to come
    bands: int = 4
    max_pixels: int = 0

    @property
    def decode_bytes(self) -> int:
        """Bytes the decode allocates (the decoded bitmap, at most 4 bytes a pixel)."""
        return self.decode_size[0] * self.decode_size[1] * self.bands if self.encoded else 0

    @property
    def output_bytes(self) -> int:
        return self.output_size[0] * self.output_size[1] * 3


def target_size(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """The aspect-preserving size with at most ``max_pixels`` pixels (unchanged when already smaller)."""
    if width * height <= max_pixels:
        return width, height
    scale = math.sqrt(max_pixels / (width * height))
    w, h = max(1, int(width * scale)), max(1, int(height * scale))
    while w * h > max_pixels:  # float rounding
        w, h = (w - 1, h) if w >= h else (w, h - 1)
    return w, h


def array_to_image(arr: Any, label: str = "array") -> Any:
    """A numpy array (HWC, HW or CHW; uint8, uint16, bool, or float in 0..1) as a PIL image."""
    import numpy as np
    from PIL import Image

    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 3, 4):
        a = np.transpose(a, (1, 2, 0))  # CHW -> HWC
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)) or a.size == 0:
        raise ImageProcessingError(
            f"{label}: an image array must be HW, HWC or CHW with 1, 3 or 4 channels, got shape {a.shape}."
        )
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise ImageProcessingError(f"{label}: the float image array has NaN or infinite values.")
        lo, hi = float(a.min()), float(a.max())
        if lo < 0.0 or hi > 1.0:
            raise ImageProcessingError(
                f"{label}: float image arrays must hold values in 0..1, got {lo:g}..{hi:g}. Scale it, or pass uint8."
            )
        a = np.round(a * 255.0).astype(np.uint8)
    elif a.dtype == np.uint16:
        a = (a // 257).astype(np.uint8)
    elif np.issubdtype(a.dtype, np.integer):
        if a.min() < 0 or a.max() > 255:
            raise ImageProcessingError(f"{label}: integer image arrays must hold values in 0..255 (or be uint16).")
        a = a.astype(np.uint8)
    else:
        raise ImageProcessingError(f"{label}: unsupported array dtype {a.dtype}.")
    return Image.fromarray(np.ascontiguousarray(a), "L" if a.ndim == 2 else ("RGB" if a.shape[-1] == 3 else "RGBA"))


def _check_size(label: str, width: int, height: int) -> None:
    if width * height > BOMB_PIXELS:
        raise ImageProcessingError(
            f"{label} declares {width}x{height} pixels ({width * height / 1e6:.0f} MP), above the "
            f"{BOMB_PIXELS / 1e6:.0f} MP decompression-bomb limit; refused before decoding."
        )
    if min(width, height) < MIN_IMAGE_SIDE:
        raise ImageProcessingError(
            f"{label} is {width}x{height} pixels: images need at least {MIN_IMAGE_SIDE} pixels on each side."
        )
    if max(width, height) / min(width, height) > MAX_ASPECT_RATIO:
        raise ImageProcessingError(
            f"{label} is {width}x{height} pixels: an aspect ratio above {MAX_ASPECT_RATIO}:1 is refused "
            "by vision processors; crop it."
        )


def plan_image(source: MediaSource, *, max_pixels: int) -> ImagePlan:
    """Open ``source`` (header only), refuse bombs and degenerate sizes, and plan the decode."""
    from PIL import Image, UnidentifiedImageError

    if source.obj is not None:
        img = source.obj if isinstance(source.obj, Image.Image) else array_to_image(source.obj, source.label)
        w, h = img.size
        _check_size(source.label, w, h)
        return ImagePlan(
            source.label, img, (w, h), (w, h), target_size(w, h, max_pixels), encoded=False, max_pixels=max_pixels
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(source.data))
    except Image.DecompressionBombError as exc:
        raise ImageProcessingError(f"{source.label} is refused as a decompression bomb: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ImageProcessingError(
            f"{source.label} is not an image Pillow can read (unknown or corrupt format)."
        ) from exc
    except Exception as exc:  # Pillow raises many types on broken headers
        raise ImageProcessingError(f"{source.label} has a corrupt image header: {type(exc).__name__}: {exc}") from exc
    w, h = img.size
    _check_size(source.label, w, h)
    out = target_size(w, h, max_pixels)
    decode = (w, h)
    if img.format == "JPEG" and out != (w, h):
        # draft() picks the largest DCT scale (1/2, 1/4, 1/8) that keeps at least the requested size.
        scale = 1
        while scale < 8 and math.ceil(w / (scale * 2)) >= out[0] and math.ceil(h / (scale * 2)) >= out[1]:
            scale *= 2
        decode = (math.ceil(w / scale), math.ceil(h / scale))
    bands = len(img.getbands()) if img.mode not in ("P", "1") else 4
    return ImagePlan(
        source.label, img, (w, h), decode, out, encoded=True, bands=max(1, min(bands, 4)), max_pixels=max_pixels
    )


def to_rgb(img: Any) -> Any:
    """Convert any Pillow mode to RGB: alpha (and palette transparency) composited over white,
    16-bit and 32-bit grey scaled to 8 bits, CMYK/YCbCr/LAB/palette/1-bit converted."""
    from PIL import Image

    mode = img.mode
    if mode == "RGB" and "transparency" not in img.info:
        return img
    if mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        out = Image.new("RGB", rgba.size, (255, 255, 255))
        out.paste(rgba, mask=rgba.getchannel("A"))
        return out
    if mode.startswith("I;16") or mode in ("I", "F"):
        import numpy as np

        a = np.asarray(img).astype(np.float32)
        hi = float(a.max()) if a.size else 0.0
        if mode == "F" and hi <= 1.0:
            a = a * 255.0
        elif mode.startswith("I;16") or hi > 255.0:
            a = a / 257.0 if hi <= 65535.0 else a * (255.0 / hi)
        grey = Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8), "L")
        return grey.convert("RGB")
    return img.convert("RGB")


def decode_image(plan: ImagePlan) -> Any:
    """Decode a planned image once into an RGB ``PIL.Image`` of ``plan.output_size`` (orientation fixed)."""
    from PIL import ImageOps

    img = plan.image
    try:
        if plan.encoded:
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)  # animated: the first frame
            if plan.decode_size != plan.size:
                img.draft("RGB" if img.mode in ("RGB", "YCbCr") else img.mode, plan.output_size)
            img.load()
        if hasattr(img, "getexif") and img.getexif().get(0x0112, 1) != 1:  # EXIF orientation
            img = ImageOps.exif_transpose(img)
        img = to_rgb(img)
    except ImageProcessingError:
        raise
    except Exception as exc:  # truncated / corrupt data, decoder errors
        raise ImageProcessingError(
            f"{plan.label} cannot be decoded (corrupt or truncated): {type(exc).__name__}: {exc}"
        ) from exc
    w, h = img.size
    if (w, h) == plan.size:
        out = plan.output_size
    elif (h, w) == plan.size:  # EXIF rotated by 90 degrees
        out = plan.output_size[::-1]
    else:  # draft-reduced
        out = target_size(w, h, plan.max_pixels or plan.output_size[0] * plan.output_size[1])
    if out != (w, h):
        img = _resize_in_strips(img, out)
    return img


def _resize_in_strips(img: Any, size: tuple[int, int], rows: int = 128) -> Any:
    """Antialiased bilinear downscale, done in bands of output rows: Pillow's one-call resize keeps a
    full-height intermediate image (output width x input height), this keeps only a band of it."""
    from PIL import Image

    (W, H), (w, h) = img.size, size
    if w * h < 1_000_000:
        return img.resize(size, Image.Resampling.BILINEAR)
    out = Image.new("RGB", size)
    for y0 in range(0, h, rows):
        y1 = min(h, y0 + rows)
        band = img.resize((w, y1 - y0), Image.Resampling.BILINEAR, box=(0, y0 * H / h, W, y1 * H / h))
        out.paste(band, (0, y0))
    return out


def load_image(
    item: Any,
    *,
    max_pixels: int = default_of("max_image_pixels"),
    max_bytes: int = default_of("max_image_bytes"),
    timeout: float = default_of("image_fetch_timeout"),
    memory_limit: int | None = None,
) -> Any:
    """Read, check and decode one image input into an RGB ``PIL.Image`` of at most ``max_pixels``.

    Accepts every input form of ``sources.read_source``. The memory check (``check_memory_requirements``)
    runs on the header sizes before decoding. Raises ``ImageProcessingError`` / ``MemoryLimitError``.
    """
    from .memory import check_memory_requirements

    plan = plan_image(read_source(item, max_bytes=max_bytes, timeout=timeout), max_pixels=max_pixels)
    check_memory_requirements([plan], memory_limit=memory_limit)
    return decode_image(plan)
