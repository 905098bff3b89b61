"""Small media files for tests, written without heavy dependencies: a PNG (pure Python), a WAV, a
bare MP4 header (detected as video without decoding), and a real short video (PyAV, when installed)."""

from __future__ import annotations

import io
import struct
import wave
import zlib
from pathlib import Path

__all__ = ["png_bytes", "wav_bytes", "mp4_header_bytes", "write_video"]


def png_bytes(width: int = 32, height: int = 32, color: tuple[int, int, int] = (200, 40, 20)) -> bytes:
    """An RGB PNG of one color, with a darker diagonal stripe (so it is not entirely flat)."""
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter: none
        for x in range(width):
            rows.extend(bytes(c // 3 for c in color) if abs(x - y) < 2 else bytes(color))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(rows))) + \
        chunk(b"IEND", b"")


def wav_bytes(seconds: float = 0.1, rate: int = 8000) -> bytes:
    """A silent mono 16-bit WAV."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x00\x00" * int(seconds * rate))
    return buf.getvalue()


def mp4_header_bytes() -> bytes:
    """The first box of an MP4 file: enough to be recognised as video, not to be decoded."""
    return struct.pack(">I", 24) + b"ftypisom" + b"\x00\x00\x02\x00" + b"isomiso2"


def write_video(path: str | Path, seconds: float = 1.0, fps: int = 8, size: tuple[int, int] = (64, 48)) -> Path:
    """A short MPEG-4 video with a moving bar (needs PyAV and numpy: the ``mlx`` extra has them)."""
    import av
    import numpy as np

    path = Path(path)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(int(seconds * fps)):
            arr = np.zeros((size[1], size[0], 3), dtype=np.uint8)
            arr[:, : (i * 5) % size[0]] = (200, 50, 20)
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
