"""Video input: sample frames at ``fps`` (at most ``max_frames``, evenly spread over the clip when the
clip is longer) with PyAV, decoded from memory (nothing written to disk), each frame scaled to at most
``max_pixels`` while decoding. The result is a ``(T, H, W, 3)`` uint8 array, what mlx-vlm's video
processors take as already-decoded frames."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from ..exceptions import ImageProcessingError
from ..params import default_of
from .images import target_size
from .sources import MediaSource, read_source

__all__ = ["VideoPlan", "plan_video", "decode_video", "load_video", "sample_times"]


@dataclass
class VideoPlan:
    """An opened video (container parsed, nothing decoded) and the frames the decode will produce."""

    label: str
    data: bytes
    size: tuple[int, int]  # (width, height) of the stream
    duration: float  # seconds
    times: list[float]  # the sample times, seconds
    output_size: tuple[int, int]

    @property
    def decode_bytes(self) -> int:
        """Transient bytes: one decoded full-size frame (YUV and RGB) at a time."""
        return self.size[0] * self.size[1] * 6

    @property
    def output_bytes(self) -> int:
        return len(self.times) * self.output_size[0] * self.output_size[1] * 3


def sample_times(duration: float, fps: float, max_frames: int) -> list[float]:
    """Times at ``fps`` from 0, or ``max_frames`` evenly spread times when that would be more."""
    n = max(1, int(duration * fps + 1e-9))
    if n <= max_frames:
        return [i / fps for i in range(n)]
    step = duration / max_frames
    return [i * step for i in range(max_frames)]


def _open(data: bytes, label: str) -> Any:
    try:
        import av
    except ImportError as exc:  # pragma: no cover - part of the mlx extra
        raise ImageProcessingError(
            'Video input needs PyAV: pip install "abstractllm[mlx]" (or pip install av).'
        ) from exc
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except Exception as exc:
        raise ImageProcessingError(f"{label} is not a readable video: {type(exc).__name__}: {exc}") from exc
    if not container.streams.video:
        container.close()
        raise ImageProcessingError(f"{label} has no video stream.")
    return container


def plan_video(
    source: MediaSource, *, fps: float = default_of("video_fps"), max_frames: int = default_of("video_max_frames"),
    max_pixels: int = default_of("max_image_pixels"),
) -> VideoPlan:
    """Parse the container of ``source`` (no frame decoded) and plan the sampling."""
    if source.data is None:
        raise ImageProcessingError(f"{source.label}: a video must be a file, bytes, URL or data URI.")
    container = _open(source.data, source.label)
    try:
        stream = container.streams.video[0]
        width, height = int(stream.codec_context.width or 0), int(stream.codec_context.height or 0)
        duration = 0.0
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / 1_000_000
        if duration <= 0 and stream.frames and stream.average_rate:
            duration = stream.frames / float(stream.average_rate)
    finally:
        container.close()
    if width <= 0 or height <= 0:
        raise ImageProcessingError(f"{source.label}: the video stream declares no frame size.")
    if width * height > 50_000_000:
        raise ImageProcessingError(f"{source.label}: {width}x{height} frames are refused (over 50 MP).")
    times = sample_times(max(duration, 0.0), fps, max_frames)
    return VideoPlan(
        source.label, source.data, (width, height), duration, times, target_size(width, height, max_pixels)
    )


def decode_video(plan: VideoPlan) -> Any:
    """Decode the planned frames: a ``(T, H, W, 3)`` uint8 numpy array."""
    import numpy as np

    container = _open(plan.data, plan.label)
    frames: list[Any] = []
    w, h = plan.output_size
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        targets = list(plan.times)
        last = None
        for frame in container.decode(stream):
            t = float(frame.time) if frame.time is not None else len(frames) / max(1e-6, len(targets))
            last = frame
            while targets and t + 1e-6 >= targets[0]:
                frames.append(frame.to_ndarray(format="rgb24", width=w, height=h))
                targets.pop(0)
            if not targets:
                break
        if targets and last is not None and frames:  # the clip ended early: repeat the last frame
            frames.extend(frames[-1] for _ in targets)
        elif targets and last is not None:
            frames.append(last.to_ndarray(format="rgb24", width=w, height=h))
    except ImageProcessingError:
        raise
    except Exception as exc:
        raise ImageProcessingError(
            f"{plan.label} cannot be decoded (corrupt video): {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        container.close()
    if not frames:
        raise ImageProcessingError(f"{plan.label} has no decodable frames.")
    return np.stack(frames, axis=0)


def load_video(
    item: Any,
    *,
    fps: float = default_of("video_fps"),
    max_frames: int = default_of("video_max_frames"),
    max_pixels: int = default_of("max_image_pixels"),
    max_bytes: int = 500_000_000,
    timeout: float = default_of("image_fetch_timeout"),
) -> Any:
    """Read and decode a video input (path, bytes, URL, data URI...) into sampled ``(T, H, W, 3)`` frames."""
    source = read_source(item, max_bytes=max_bytes, timeout=timeout, accept=("video/",))
    return decode_video(plan_video(source, fps=fps, max_frames=max_frames, max_pixels=max_pixels))
