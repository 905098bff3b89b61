"""Data types shared by every provider: the ``Response`` (also used for stream chunks) and its ``Usage``,
and the normalized chat ``Message`` a provider receives."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Usage", "Response", "Message", "GenerationRequest"]


@dataclass
class Usage:
    """Token accounting of one generation.

    ``completion_tokens`` counts the tokens the model generated, the end-of-sequence token included when
    it ended the generation (as mlx-lm counts). ``cached_tokens`` is how many prompt tokens were served
    from the prompt cache instead of being recomputed.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0


@dataclass
class Response:
    """The result of a generation, or one chunk of a streamed generation.

    In a stream, each chunk's ``content`` is the new text only; the last chunk carries ``finish_reason``,
    ``usage`` and the timings. Concatenating the chunks' ``content`` gives exactly the non-streamed text.
    """

    content: str = ""
    model: str | None = None
    finish_reason: str | None = None  # "stop" | "length" | "cancelled"
    usage: Usage | None = None
    ttft_s: float | None = None  # time to first token, seconds
    total_s: float | None = None  # whole generation, seconds
    tokens_per_second: float | None = None  # decode speed
    prompt_tokens_per_second: float | None = None  # prefill speed
    peak_memory_bytes: int | None = None
    token_ids: list[int] = field(default_factory=list)  # ids generated (in a chunk: this chunk's)
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict of every field."""
        return asdict(self)

    def __str__(self) -> str:
        return self.content


@dataclass
class Message:
    """One normalized chat message: its role, its text, and the media inputs (images, videos) it holds,
    in order. Media are kept as the user gave them; providers resolve them through ``abstractllm.media``."""

    role: str
    text: str = ""
    images: list[Any] = field(default_factory=list)
    videos: list[Any] = field(default_factory=list)


@dataclass
class GenerationRequest:
    """What a provider's streaming primitive receives: normalized messages and validated parameters."""

    messages: list[Message]
    params: dict[str, Any]

    @property
    def has_images(self) -> bool:
        return any(m.images for m in self.messages)

    @property
    def has_videos(self) -> bool:
        return any(m.videos for m in self.messages)
