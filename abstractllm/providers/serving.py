"""``ServingMixin``: what serving libraries' users expect of a provider, on top of ``generate``:
``generate_batch``, ``get_stats`` / ``clear_stats``, ``shutdown``, and the vision conveniences
(``describe_image``, ``answer_about_image``, ``describe_video``). Every method is built on the provider's
public ``generate`` / ``generate_async``, so it works on every provider."""

from __future__ import annotations

from typing import Any, Sequence

from ..exceptions import InvalidParameterError
from ..params import DESCRIBE_IMAGE_PROMPT, DESCRIBE_VIDEO_PROMPT
from ..types import Response

__all__ = ["ServingMixin"]


class ServingMixin:
    """Mixed into ``BaseProvider`` (which supplies ``generate``, ``generate_async``, ``close`` and
    ``_stats``)."""

    def get_stats(self) -> dict[str, Any]:
        """Statistics of the requests this provider served since creation or ``clear_stats()``:
        ``requests_served``, ``requests_failed``, ``requests_cancelled``, ``total_tokens_generated``,
        ``average_response_time``, ``average_ttft``, ``tokens_per_second``, ``cache_hit_rate``,
        ``queue_length``, ``active_requests``, ``batch_size``, ``average_batch_size``,
        ``max_inter_token_latency`` (seconds: the longest a decoding request waited for its next token, e.g.
        while another prompt was prefilled; 0 without a batching engine), ``memory_usage``."""
        return self._stats.as_dict()

    def clear_stats(self) -> None:
        """Start the statistics of ``get_stats()`` over."""
        self._stats.clear()

    async def generate_batch(self, prompts: Sequence[Any], batch_size: int | None = None,
                             **kwargs: Any) -> list[Response]:
        """Generate for every prompt concurrently, at most ``batch_size`` at once (default: all), and
        return the responses in the prompts' order. A prompt is a string, or a dict of ``generate_async``
        arguments (``{"prompt": ..., "files": [...], "max_tokens": ...}``); ``kwargs`` apply to all.
        An error fails the whole call (the others are cancelled)."""
        import asyncio

        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                       or batch_size < 1):
            raise InvalidParameterError(f"batch_size must be a positive integer, got {batch_size!r}.",
                                        param="batch_size")
        items = [p if isinstance(p, dict) else {"prompt": p} for p in prompts]
        limit = asyncio.Semaphore(batch_size or max(1, len(items)))

        async def one(item: dict[str, Any]) -> Response:
            async with limit:
                return await self.generate_async(**{**kwargs, **item})

        return list(await asyncio.gather(*(one(i) for i in items)))

    def shutdown(self) -> None:
        """``close()``: the name serving libraries use."""
        self.close()

    # ----------------------------------------------------------------- vision conveniences
    def describe_image(self, image: Any, prompt: str | None = None, **params: Any) -> str:
        """The model's description of ``image`` (a path, URL, bytes, PIL image or array)."""
        return self.generate(prompt or DESCRIBE_IMAGE_PROMPT, files=[image], **params).content

    def answer_about_image(self, image: Any, question: str, **params: Any) -> str:
        """The model's answer to ``question`` about ``image``."""
        return self.generate(question, files=[image], **params).content

    def describe_video(self, video: Any, fps: float | None = None, max_frames: int | None = None,
                       prompt: str | None = None, **params: Any) -> str:
        """The model's description of ``video``, sampled at ``fps`` frames per second, at most ``max_frames``
        frames (default: the ``video_fps`` / ``video_max_frames`` configuration)."""
        if fps is not None:
            params["video_fps"] = fps
        if max_frames is not None:
            params["video_max_frames"] = max_frames
        return self.generate(prompt or DESCRIBE_VIDEO_PROMPT, files=[{"type": "video", "video": video}],
                             **params).content

