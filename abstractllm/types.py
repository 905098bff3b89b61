"""Data types shared by every provider: the ``Response`` (also used for stream chunks) and its ``Usage``,
``aggregate_chunks`` (a stream's chunks folded into one ``Response``), the ``Capabilities`` a provider
declares, the normalized chat ``Message`` and the ``GenerationRequest`` a provider's primitive receives.

``GenerateResponse`` is the AbstractLLM 1.x name of ``Response`` (the same class).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Iterable, Iterator

from .enums import ModelCapability

__all__ = ["Usage", "Response", "GenerateResponse", "ToolCall", "ToolCallResponse", "Capabilities", "Message",
           "GenerationRequest", "aggregate_chunks"]


@dataclass
class Usage(Mapping):
    """Token accounting of one generation.

    ``completion_tokens`` counts the tokens the model generated, the end-of-sequence token included when
    it ended the generation (as mlx-lm counts). ``cached_tokens`` is how many prompt tokens were served
    from the prompt cache instead of being recomputed.

    Read it as attributes (``usage.prompt_tokens``) or as a mapping, as AbstractLLM 1.x returned a dict:
    ``usage["prompt_tokens"]``, ``usage.get("total_tokens")``, ``dict(usage)``. The AbstractCore names
    ``input_tokens`` / ``output_tokens`` are read-only aliases of ``prompt_tokens`` / ``completion_tokens``.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0  # of completion_tokens, those of the reasoning (its markers included)

    _ALIASES = {"input_tokens": "prompt_tokens", "output_tokens": "completion_tokens"}

    @property
    def input_tokens(self) -> int:
        return self.prompt_tokens

    @property
    def output_tokens(self) -> int:
        return self.completion_tokens

    def __getitem__(self, key: str) -> int:
        name = self._ALIASES.get(key, key)
        if name not in _USAGE_FIELDS:
            raise KeyError(key)
        return getattr(self, name)

    def __iter__(self) -> Iterator[str]:
        return iter(_USAGE_FIELDS)

    def __len__(self) -> int:
        return len(_USAGE_FIELDS)

    def __eq__(self, other: object) -> bool:  # equal to another Usage, or to the dict of its values
        if isinstance(other, Mapping):
            return dict(self) == dict(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


_USAGE_FIELDS = tuple(f.name for f in fields(Usage))


@dataclass
class ToolCall:
    """One call of a tool the model asked for: its ``id``, the tool's ``name`` and the parsed
    ``arguments``."""

    id: str
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


class ToolCallResponse(list):
    """The tool calls of a reply: a list of ``ToolCall`` (what ``Response.tool_calls`` holds) that also reads
    as AbstractLLM 1.x's ``ToolCallResponse``: ``.tool_calls`` (the list itself), ``.content`` (the text that
    came with the calls) and ``has_tool_calls()``. ``abstractllm.tools.ToolCallRequest`` is this class too."""

    def __init__(self, content: str | None = None, tool_calls: Iterable[ToolCall] | None = None) -> None:
        if tool_calls is None and content is not None and not isinstance(content, str):
            content, tool_calls = None, content  # ToolCallResponse([calls...])
        super().__init__(tool_calls or [])
        self.content = content

    @property
    def tool_calls(self) -> "ToolCallResponse":
        return self

    @tool_calls.setter
    def tool_calls(self, calls: Iterable[ToolCall] | None) -> None:
        self[:] = list(calls or [])

    def has_tool_calls(self) -> bool:
        return len(self) > 0

    def __repr__(self) -> str:
        return f"ToolCallResponse(content={self.content!r}, tool_calls={list.__repr__(self)})"

    def __reduce__(self) -> Any:
        return (ToolCallResponse, (self.content, list(self)))


@dataclass
class Response:
    """The result of a generation, or one chunk of a streamed generation.

    In a stream, each chunk's ``content`` is the new text only; the last chunk carries ``finish_reason``,
    ``usage`` and the timings. Concatenating the chunks' ``content`` gives exactly the non-streamed text.

    With ``response_format``, ``parsed`` holds the reply's JSON as a dict (or an instance of the pydantic
    model given); it is ``None`` when the reply was cut short (``finish_reason`` ``"length"``).
    ``raw_response`` is what the backend returned, where there is such an object (a remote provider's SDK
    response; ``None`` for local MLX generation). With ``logprobs=True``, ``logprobs`` has one entry per
    token counted in ``usage.completion_tokens``: ``{"token": id, "text": str, "logprob": float,
    "top_logprobs": [{"token", "text", "logprob"}, ...]}`` (in a chunk: that chunk's tokens). ``tool_calls`` is a list of ``ToolCall`` when the model
    called tools, else ``None``. ``image_paths`` lists the images (as given) the request carried.
    ``input_tokens``, ``output_tokens`` and ``total_tokens`` read ``usage`` (AbstractCore names).
    ``reasoning`` is a reasoning model's thinking, apart from the answer in ``content`` (in a stream, each
    chunk's new reasoning; ``usage.reasoning_tokens`` counts its tokens).
    """

    content: str = ""
    reasoning: str | None = None  # the model's thinking, without its markup (None: it did not think)
    model: str | None = None
    finish_reason: str | None = None  # "stop" | "length" | "cancelled" (| "tool_calls")
    usage: Usage | None = None
    ttft_s: float | None = None  # time to first token, seconds
    total_s: float | None = None  # whole generation, seconds
    tokens_per_second: float | None = None  # decode speed
    prompt_tokens_per_second: float | None = None  # prefill speed
    peak_memory_bytes: int | None = None
    token_ids: list[int] = field(default_factory=list)  # ids generated (in a chunk: this chunk's)
    metadata: dict[str, Any] = field(default_factory=dict)
    tool_calls: list[ToolCall] | None = None
    image_paths: list[str] | None = None
    logprobs: list[dict[str, Any]] | None = None  # with logprobs=True: one entry per generated token
    parsed: Any = None  # with response_format: the parsed JSON (a dict, or the pydantic model instance)
    raw_response: Any = field(default=None, repr=False, compare=False)
    #: in a Session turn that ran tools: one dict per call run ({"call_id", "name", "arguments", "output",
    #: "error"}), in order (the 1.x field)
    tools_executed: list[dict[str, Any]] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.tool_calls is not None and not isinstance(self.tool_calls, ToolCallResponse):
            self.tool_calls = ToolCallResponse(self.content or None, self.tool_calls)

    def has_tool_calls(self) -> bool:
        """True when the model called at least one tool."""
        return bool(self.tool_calls)

    def get_tools_executed(self) -> list[str]:
        """The names of the tools a Session turn ran (1.x), in order; ``[]`` when none ran."""
        return [t.get("name") for t in self.tools_executed or []]

    @property
    def input_tokens(self) -> int | None:
        return self.usage.prompt_tokens if self.usage is not None else None

    @property
    def output_tokens(self) -> int | None:
        return self.usage.completion_tokens if self.usage is not None else None

    @property
    def total_tokens(self) -> int | None:
        return self.usage.total_tokens if self.usage is not None else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict of every field but ``raw_response``."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "raw_response"}
        out["usage"] = dict(self.usage) if self.usage is not None else None
        out["tool_calls"] = [asdict(c) for c in self.tool_calls] if self.tool_calls is not None else None
        parsed = self.parsed
        out["parsed"] = parsed.model_dump() if hasattr(parsed, "model_dump") else parsed
        out["metadata"] = dict(self.metadata)
        out["token_ids"] = list(self.token_ids)
        return out

    def __str__(self) -> str:
        return self.content


GenerateResponse = Response  # the AbstractLLM 1.x name


def aggregate_chunks(chunks: Iterable[Response]) -> Response:
    """Fold a stream's chunks into one ``Response``: the texts, reasoning, token ids, log-probs and tool calls
    joined in order; the totals (``finish_reason``, ``usage``, timings, ``parsed``, ...) of the last chunk.
    No chunks: an empty reply that stopped. A pure function: the chunks are not changed."""
    texts: list[str] = []
    thoughts: list[str] | None = None
    ids: list[int] = []
    logprobs: list[dict[str, Any]] | None = None
    last: Response | None = None
    calls: list[Any] | None = None
    for chunk in chunks:
        texts.append(chunk.content)
        if chunk.reasoning is not None:
            thoughts = (thoughts or []) + [chunk.reasoning]
        ids.extend(chunk.token_ids)
        if chunk.logprobs is not None:
            logprobs = (logprobs or []) + chunk.logprobs
        if chunk.tool_calls:
            calls = (calls or []) + list(chunk.tool_calls)
        last = chunk
    if last is None:
        return Response(content="", finish_reason="stop", usage=Usage())
    return Response(
        content="".join(texts), reasoning=None if thoughts is None else "".join(thoughts), model=last.model,
        finish_reason=last.finish_reason, usage=last.usage, ttft_s=last.ttft_s, total_s=last.total_s,
        tokens_per_second=last.tokens_per_second, prompt_tokens_per_second=last.prompt_tokens_per_second,
        peak_memory_bytes=last.peak_memory_bytes, token_ids=ids, metadata=dict(last.metadata), tool_calls=calls,
        image_paths=last.image_paths, logprobs=logprobs, parsed=last.parsed, raw_response=last.raw_response,
    )


class Capabilities(Mapping):
    """What a provider can do with its configured model: a read-only mapping keyed by ``ModelCapability``.

    It answers both the set style and the 1.x dict style::

        ModelCapability.VISION in caps            # True only if supported
        caps.get(ModelCapability.VISION)          # True, or False when not supported (never None)
        caps[ModelCapability.STREAMING]           # True
        caps.get(ModelCapability.MAX_TOKENS)      # the context length in tokens (None if unknown)
        list(caps)                                # the supported capabilities

    Keys may be members or their strings, 1.x spellings included (``"supports_vision"``).
    """

    __slots__ = ("_values",)

    def __init__(self, supported: Iterable[ModelCapability | str] = (), **values: Any) -> None:
        self._values: dict[ModelCapability, Any] = {ModelCapability(c): True for c in supported}
        for name, value in values.items():  # e.g. max_tokens=32768
            self._values[ModelCapability(name)] = value

    @staticmethod
    def _member(key: Any) -> ModelCapability:
        try:
            return ModelCapability(key)
        except ValueError:
            raise KeyError(key) from None

    def __getitem__(self, key: Any) -> Any:
        member = self._member(key)
        if member is ModelCapability.MAX_TOKENS:
            return self._values.get(member)
        return self._values.get(member, False)

    def __contains__(self, key: object) -> bool:
        try:
            return bool(self._values.get(self._member(key)))
        except KeyError:
            return False

    def __iter__(self) -> Iterator[ModelCapability]:
        return (c for c, v in self._values.items() if v)

    def __len__(self) -> int:
        return sum(1 for v in self._values.values() if v)

    def with_(self, *supported: ModelCapability, **values: Any) -> "Capabilities":
        """A copy with more capabilities (and values) declared."""
        out = Capabilities()
        out._values = dict(self._values)
        for c in supported:
            out._values[ModelCapability(c)] = True
        for name, value in values.items():
            out._values[ModelCapability(name)] = value
        return out

    def without(self, *capabilities: ModelCapability) -> "Capabilities":
        """A copy with these capabilities removed."""
        out = Capabilities()
        out._values = {c: v for c, v in self._values.items() if c not in set(capabilities)}
        return out

    def to_dict(self) -> dict[str, Any]:
        """Every ``ModelCapability`` (by value) -> its answer, JSON-serializable."""
        return {str(c): self[c] for c in ModelCapability}

    def __repr__(self) -> str:
        return f"Capabilities({sorted(str(c) for c in self)})"


@dataclass(init=False)
class Message:
    """One normalized chat message: its role, its text, and the media inputs (images, videos) it holds,
    in order. Media are kept as the user gave them; providers resolve them through ``abstractllm.media``.

    ``Message(role, content)`` (the AbstractLLM 1.x form) and ``Message(role=..., text=...)`` are the
    same; ``content`` reads and writes ``text``. ``name`` and ``metadata`` are optional extras (a
    ``Session`` keeps each turn's timestamp in ``metadata``). An assistant message may carry the
    ``tool_calls`` it made; a ``"tool"`` message carries a tool's result for ``tool_call_id``. An assistant
    message of a reasoning model may carry its ``reasoning`` (the chat template decides whether the model sees
    it again).
    """

    role: str
    text: str
    images: list[Any]
    videos: list[Any]
    name: str | None
    metadata: dict[str, Any]
    tool_calls: list[ToolCall]
    tool_call_id: str | None
    reasoning: str | None

    def __init__(self, role: str, content: str | None = None, *, text: str | None = None,
                 images: Iterable[Any] | None = None, videos: Iterable[Any] | None = None,
                 name: str | None = None, metadata: dict[str, Any] | None = None,
                 tool_calls: Iterable[ToolCall] | None = None, tool_call_id: str | None = None,
                 reasoning: str | None = None) -> None:
        if content is not None and text is not None and content != text:
            raise ValueError("Message: give the text as content or as text, not both.")
        self.role = str(role.value) if hasattr(role, "value") else role
        self.text = text if text is not None else (content if content is not None else "")
        self.images = list(images or [])
        self.videos = list(videos or [])
        self.name = name
        self.metadata = dict(metadata or {})
        self.tool_calls = list(tool_calls or [])
        self.tool_call_id = tool_call_id
        self.reasoning = reasoning

    @property
    def content(self) -> str:
        return self.text

    @content.setter
    def content(self, value: str) -> None:
        self.text = value

    @property
    def tool_results(self) -> list[dict[str, Any]]:
        """1.x: on an assistant message whose calls a Session ran, their results (``{"call_id", "name",
        "arguments", "output", "error"}`` each; kept in ``metadata["tool_results"]``); else ``[]``."""
        return self.metadata.get("tool_results") or []

    @tool_results.setter
    def tool_results(self, value: list[dict[str, Any]]) -> None:
        self.metadata["tool_results"] = list(value or [])

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI chat form: ``{"role", "content"}``, content as parts when the message has media."""
        out: dict[str, Any] = {"role": self.role}
        if self.images or self.videos:
            parts: list[dict[str, Any]] = [{"type": "text", "text": self.text}] if self.text else []
            parts += [{"type": "image", "image": _media_ref(i)} for i in self.images]
            parts += [{"type": "video", "video": _media_ref(v)} for v in self.videos]
            out["content"] = parts
        else:
            out["content"] = self.text
        if self.name:
            out["name"] = self.name
        if self.tool_calls:
            out["tool_calls"] = [{"id": c.id, "type": "function",
                                  "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
                                 for c in self.tool_calls]
            if not self.text:
                out["content"] = None
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.reasoning is not None:
            out["reasoning_content"] = self.reasoning
        return out


def _media_ref(item: Any) -> Any:
    """A path-like media item as a string (for JSON); other inputs unchanged."""
    import os

    return os.fspath(item) if isinstance(item, os.PathLike) else item


@dataclass
class GenerationRequest:
    """What a provider's streaming primitive receives: normalized messages and validated parameters."""

    messages: list[Message]
    params: dict[str, Any]
    tools: list[Any] | None = None

    @property
    def has_images(self) -> bool:
        return any(m.images for m in self.messages)

    @property
    def has_videos(self) -> bool:
        return any(m.videos for m in self.messages)

    @property
    def image_count(self) -> int:
        return sum(len(m.images) for m in self.messages)
