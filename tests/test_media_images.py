"""The image pipeline on images made here with Pillow: orientation, modes, alpha, 16-bit, palette, CMYK,
animation, bomb guard, draft-mode JPEG reduction, downscaling, every input form. No MLX."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from abstractllm.exceptions import ImageProcessingError, MemoryLimitError
from abstractllm.media import check_memory_requirements, load_image, plan_image, read_source
from abstractllm.media.images import target_size
from media_helpers import png_header


def encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()




def test_exif_orientation_is_applied():
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 10, 20))  # blue strip on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    out = load_image(encode(img, "JPEG", exif=exif, quality=95))
    assert out.size == (20, 40)
    top = np.asarray(out)[2, 10]
    assert top[2] > 200 and top[0] < 60  # the left strip is now on top


@pytest.mark.parametrize("mode", ["L", "1", "P", "CMYK", "YCbCr", "LA", "RGBA", "I;16", "I", "F"])
def test_every_mode_becomes_rgb(mode):
    base = Image.new("RGB", (16, 12), (10, 200, 30))
    if mode in ("I;16", "I"):
        img = Image.fromarray(
            np.full((12, 16), 65535 if mode == "I;16" else 40000, dtype=np.uint16 if mode == "I;16" else np.int32)
        )
    elif mode == "F":
        img = Image.fromarray(np.full((12, 16), 0.5, dtype=np.float32))
    else:
        img = base.convert(mode)
    out = load_image(img)
    assert out.mode == "RGB" and out.size == (16, 12)
    if mode == "I;16":
        assert np.asarray(out).min() == 255  # full-scale 16-bit white stays white
    if mode == "I":
        assert 150 <= np.asarray(out)[0, 0, 0] <= 160  # 40000 / 257
    if mode == "F":
        assert np.asarray(out)[0, 0, 0] in (127, 128)


def test_16bit_png_file_is_scaled_not_clipped(tmp_path: Path):
    arr = np.full((10, 12), 32768, dtype=np.uint16)
    path = tmp_path / "grey16.png"
    Image.fromarray(arr).save(path)
    out = np.asarray(load_image(path))
    assert 125 <= out[0, 0, 0] <= 130


def test_alpha_is_composited_over_white():
    img = Image.new("RGBA", (10, 10), (0, 0, 0, 0))  # fully transparent black
    img.paste((255, 0, 0, 255), (0, 0, 5, 10))
    out = np.asarray(load_image(encode(img)))
    assert tuple(out[5, 8]) == (255, 255, 255)  # transparent -> white, not black
    assert tuple(out[5, 1]) == (255, 0, 0)


def test_palette_with_transparency_goes_over_white():
    img = Image.new("P", (10, 10), 0)
    img.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    img.paste(1, (0, 0, 5, 10))
    data = encode(img, transparency=0)
    out = np.asarray(load_image(data))
    assert tuple(out[5, 8]) == (255, 255, 255) and tuple(out[5, 1]) == (0, 255, 0)


def test_cmyk_jpeg():
    img = Image.new("CMYK", (20, 20), (0, 255, 255, 0))  # red in CMYK
    out = np.asarray(load_image(encode(img, "JPEG", quality=95)))
    r, g, b = out[10, 10]
    assert r > 200 and g < 60 and b < 60


def test_animated_gif_takes_first_frame():
    frames = [Image.new("RGB", (12, 12), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    out = np.asarray(load_image(buf.getvalue()))
    assert out[6, 6, 0] > 200 and out[6, 6, 2] < 60


def test_bomb_guard_refuses_from_the_header():
    data = png_header(30000, 30000)  # no pixel data at all: only the header can be read
    with pytest.raises(ImageProcessingError, match="decompression-bomb|decompression bomb"):
        load_image(data)


def test_memory_check_runs_before_decoding():
    plan = plan_image(read_source(png_header(8000, 8000)), max_pixels=1_000_000)
    assert plan.decode_bytes >= 8000 * 8000 * 3 and plan.output_size == (1000, 1000)
    with pytest.raises(MemoryLimitError) as info:
        check_memory_requirements([plan], memory_limit=64_000_000)
    assert info.value.required_bytes > info.value.available_bytes == 64_000_000
    with pytest.raises(MemoryLimitError):
        load_image(png_header(8000, 8000), memory_limit=64_000_000)


def test_draft_mode_reduces_huge_jpeg_decode():
    img = Image.new("RGB", (4000, 3000), (90, 120, 150))
    data = encode(img, "JPEG", quality=80)
    plan = plan_image(read_source(data), max_pixels=500_000)
    assert plan.decode_size[0] <= 1000 and plan.decode_size[0] * plan.decode_size[1] < 4000 * 3000 / 10
    out = load_image(data, max_pixels=500_000)
    assert out.size[0] * out.size[1] <= 500_000
    assert abs(out.size[0] / out.size[1] - 4 / 3) < 0.01


@pytest.mark.parametrize("size,limit", [((3000, 1000), 100_000), ((999, 1001), 250_000), ((64, 64), 4096)])
def test_downscale_preserves_aspect_and_bound(size, limit):
    out = load_image(Image.new("RGB", size, "white"), max_pixels=limit)
    assert out.size[0] * out.size[1] <= limit
    assert abs(out.size[0] / out.size[1] - size[0] / size[1]) < 0.02
    assert target_size(*size, limit) == out.size


def test_numpy_layouts_and_dtypes():
    hwc = np.zeros((10, 20, 3), dtype=np.uint8)
    hwc[..., 0] = 255
    assert np.asarray(load_image(hwc))[0, 0, 0] == 255
    chw = np.transpose(hwc, (2, 0, 1))
    assert load_image(chw).size == (20, 10)
    assert load_image(np.full((10, 20), 0.5, dtype=np.float32)).size == (20, 10)
    assert np.asarray(load_image(np.ones((10, 10, 3), dtype=np.float64)))[0, 0, 0] == 255
    with pytest.raises(ImageProcessingError, match="0..1"):
        load_image(np.full((10, 10, 3), 7.0))
    with pytest.raises(ImageProcessingError, match="shape"):
        load_image(np.zeros((10, 10, 7), dtype=np.uint8))


def test_input_forms(tmp_path: Path):
    img = Image.new("RGB", (30, 20), (1, 2, 3))
    data = encode(img)
    path = tmp_path / "x.png"
    path.write_bytes(data)
    b64 = base64.b64encode(data).decode()
    forms = [
        str(path),
        path,
        f"file://{path}",
        data,
        bytearray(data),
        io.BytesIO(data),
        b64,
        f"data:image/png;base64,{b64}",
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64}"}},
        {"url": str(path)},
        img,
    ]
    for form in forms:
        out = load_image(form)
        assert out.size == (30, 20) and tuple(np.asarray(out)[0, 0]) == (1, 2, 3), type(form)


@pytest.mark.parametrize(
    "bad,match",
    [
        (b"", "empty"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 50, "corrupt|not an image|decoded"),
        ("data:text/plain;base64,aGVsbG8=", "type"),
        ("data:image/png;base64,!!!!", "base64"),
        ({"foo": 1}, "Unknown media dict"),
        (12345, "Unsupported"),
    ],
)
def test_bad_inputs_raise_typed_errors(bad, match):
    with pytest.raises(ImageProcessingError, match=match):
        load_image(bad)


def test_size_limit_on_bytes():
    data = encode(Image.new("RGB", (64, 64)))
    with pytest.raises(ImageProcessingError, match="too large"):
        load_image(data, max_bytes=len(data) - 1)


def test_video_part_types_are_the_messages_definition():
    """``is_video_input`` tells parts by ``VIDEO_PART_TYPES`` (one definition, in ``media.kinds``), and the
    module still imports first on its own (no circular import with ``abstractllm.messages``)."""
    import subprocess
    import sys

    from abstractllm.media import is_video_input
    from abstractllm.messages import IMAGE_PART_TYPES, VIDEO_PART_TYPES

    assert all(is_video_input({"type": t}) for t in VIDEO_PART_TYPES)
    assert not any(is_video_input({"type": t}) for t in IMAGE_PART_TYPES)
    code = "from abstractllm.media.kinds import is_video_input as f; print(f({'type': 'video_url'}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "True", out.stderr[-1000:]
