"""The media memory check: before any pixel is decoded, estimate what the decoded images (or video
frames) and their vision tokens will take, and refuse with ``MemoryLimitError`` and the numbers when that
exceeds what is available (or what ``memory_limit`` allows)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..exceptions import MemoryLimitError
from ..memory import available_memory
from ..params import format_bytes as _fmt

__all__ = ["MediaMemoryEstimate", "check_memory_requirements", "media_available_bytes"]


@dataclass
class MediaMemoryEstimate:
    """Bytes one request's media need, and what was available to them."""

    decode_bytes: int  # transient decoded bitmaps (before downscaling)
    output_bytes: int  # the RGB images / frames handed to the processor
    vision_bytes: int  # processor tensors, vision tower and the vision tokens in the KV cache
    available_bytes: int
    source: str

    @property
    def total(self) -> int:
        return self.decode_bytes + self.output_bytes + self.vision_bytes


def media_available_bytes(memory_limit: int | None = None, in_use: int = 0) -> tuple[int, str]:
    """What media may use now (see ``abstractllm.memory.available_memory``)."""
    return available_memory(memory_limit, in_use)


def check_memory_requirements(
    images: Sequence[object] = (),
    *,
    extra_decode_bytes: int = 0,
    extra_output_bytes: int = 0,
    vision_bytes: int = 0,
    memory_limit: int | None = None,
    in_use: int = 0,
    available: int | None = None,
) -> MediaMemoryEstimate:
    """Check that decoding ``images`` (``ImagePlan``s: their header sizes) plus ``vision_bytes`` (the
    model-specific cost of their vision tokens) fits; raise ``MemoryLimitError`` otherwise.

    Images are decoded one at a time, so the transient cost is the largest decode, while every output
    image is held until generation. ``extra_*`` add video frames. Returns the estimate.
    """
    decode = max([int(getattr(p, "decode_bytes", 0)) for p in images] + [0]) + extra_decode_bytes
    output = sum(int(getattr(p, "output_bytes", 0)) for p in images) + extra_output_bytes
    if available is None:
        available, source = media_available_bytes(memory_limit, in_use)
    else:
        source = "the given budget"
    estimate = MediaMemoryEstimate(decode, output, int(vision_bytes), int(available), source)
    if estimate.total > available:
        raise MemoryLimitError(
            f"These media need about {_fmt(estimate.total)} (decoding {_fmt(decode)} + images/frames "
            f"{_fmt(output)} + vision tokens {_fmt(vision_bytes)}), but only {_fmt(available)} is "
            f"available ({source}). Send fewer or smaller images, lower max_image_pixels / "
            "video_max_frames, or raise memory_limit.",
            required_bytes=estimate.total,
            available_bytes=int(available),
        )
    return estimate
