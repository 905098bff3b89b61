"""The vision adapter: mlx-vlm's ``load``, chat templating with the images in place, its processor and
``stream_generate``, turned into pipeline ``Step``s. Runs on the provider's worker thread only.

``request_steps`` does all the checking before it returns the generator: media read and planned from
their headers, the memory check, one bounded decode per image / sampled video, templating and the
model's processor. So a bad input raises a typed error before any token is generated.

Prompt cache: one ``mlx_vlm`` ``PromptCacheState`` per *media content* (a hash of the decoded pixels),
so a follow-up question about the same images reuses the cached prefix, while a different image of the
same size (same token ids!) never meets the old image's state. The KV cache is our own list (passed
to ``stream_generate`` as ``prompt_cache``), so a stream stopped early (cancelled, closed, or a stop
string) still stores a correct state: the cache holds exactly the prompt plus the tokens mlx-vlm
yielded, and those ids are recorded with it. A generation that fails drops its image's entry.

Known limitation: the prefill of a vision request cannot be cancelled. mlx-vlm 0.7's ``stream_generate``
takes no prompt-progress callback (its only prefill hook, ``prompt_cache_checkpoint``, is reserved for
its own automatic prefix cache), so a cancel is seen once the first token exists. Vision prompts are
short (the image tokens are bounded by ``max_image_pixels`` and the processor's ``max_pixels``).
"""

from __future__ import annotations

import functools
import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator

from ...enums import ModelCapability
from ...exceptions import (
    ImageProcessingError,
    InvalidParameterError,
    ModelLoadError,
)
from ...types import GenerationRequest, Message
from ..worker import CancelToken
from .adapter import ModelAdapter
from .reasoning import (ReasoningFormat, detect_reasoning, grammar_thinking, opens_reasoning, request_reasoning,
                        template_kwargs)
from .special import hidden_tokens
from .constrain import GrammarCompiler, active_tools, chat_dict, constrain_request, is_constrained
from .toolcalls import vision_tool_format
from .vision_media import load_media
from .memory import check_context_window
from .pipeline import Step
from .sampling import MinTokens, fill_logprobs
from .source import ModelSpec

if TYPE_CHECKING:
    from .engine import EngineRequest

__all__ = ["vision_capabilities", "VisionAdapter", "PreparedVisionRequest"]

#: config.json keys that declare a video placeholder token: the family takes video input in mlx-vlm.
_VIDEO_KEYS = ("video_token_id", "video_token_index", "video_token")
_MAX_CACHE_ENTRIES = 8


def vision_capabilities(spec: ModelSpec) -> set[ModelCapability]:
    """VISION always; MULTI_IMAGE unless mlx-vlm lists the family as single-image; VIDEO when the
    config declares a video token (the mlx-vlm processors of those families take frames)."""
    caps = {ModelCapability.VISION}
    if spec.model_type not in _single_image_models():
        caps.add(ModelCapability.MULTI_IMAGE)
    text_cfg = spec.config.get("text_config") if isinstance(spec.config.get("text_config"), dict) else {}
    if any(k in spec.config or k in text_cfg for k in _VIDEO_KEYS):
        caps.add(ModelCapability.VIDEO)
    return caps


@functools.lru_cache(maxsize=1)
def _single_image_models() -> frozenset[str]:
    """mlx-vlm's ``SINGLE_IMAGE_ONLY_MODELS`` (imports mlx-vlm, after the backend's speed setup)."""
    from .backend import import_backend

    return frozenset(getattr(import_backend("mlx_vlm.prompt_utils"), "SINGLE_IMAGE_ONLY_MODELS", ()))


@dataclass
class PreparedVisionRequest:
    """Everything ``stream_generate`` needs, computed before generation starts."""

    prompt: str
    input_ids: Any
    pixel_values: Any
    mask: Any
    extra: dict[str, Any]
    media_key: str


def _cache_nbytes(cache: Any) -> int:
    total = 0
    for c in cache or []:
        try:
            total += int(c.nbytes)
        except Exception:
            pass
    return total


class VisionAdapter(ModelAdapter):
    """Loads a vision-language model with mlx-vlm and generates from text, images and video.

    The engine serves its requests one at a time (``capacity`` 1): each one is mlx-vlm's own
    ``stream_generate``, advanced one token per engine step. (Batched vision decoding would need each
    request's own sampler inside mlx-vlm's batch; see docs/architecture.md.)
    """

    kind = "vision"

    def __init__(self, spec: ModelSpec, config: dict[str, Any], on_gpu: bool) -> None:
        super().__init__(spec, config, on_gpu)
        self.model = None
        self.processor = None
        self.caps = vision_capabilities(spec)
        self._states: OrderedDict[str, Any] = OrderedDict()  # media key -> mlx_vlm PromptCacheState
        self._current: "EngineRequest | None" = None
        self._steps: dict["EngineRequest", Iterator[Step]] = {}  # each admitted request's step generator
        self.hidden: dict[int, str] = {}  # control tokens kept out of content (special.py)
        self.reasoning_format: ReasoningFormat | None = None

    # ------------------------------------------------------------------ load
    def load(self) -> None:
        import mlx.core as mx
        from mlx_vlm import load

        from .text import cast_for_device, quantize_bits

        try:
            model, processor = load(
                str(self.spec.path), lazy=True, trust_remote_code=bool(self.config.get("trust_remote_code"))
            )
        except (ValueError, KeyError, TypeError, OSError, ImportError, AttributeError) as exc:
            raise ModelLoadError(
                f"mlx-vlm could not load {str(self.spec.path)!r}: {type(exc).__name__}: {exc}"
            ) from exc
        if self.spec.quantization is None:
            self.info["dtype"] = cast_for_device(model, self.config.get("dtype") or "auto", self.on_gpu)
        if quantize_bits(self.config):
            self.info["quantize_on_load"] = "not applied to vision models (use a pre-quantized mlx-community model)"
        mx.eval(model.parameters())
        self._check_kv_bits()
        self.model, self.processor = model, processor
        self.info["processor"] = type(processor).__name__
        tokenizer = getattr(processor, "tokenizer", processor)
        self.tool_format = vision_tool_format(processor)
        eos = self.spec.config.get("eos_token_id") or (self.spec.config.get("text_config") or {}).get("eos_token_id")
        eos_ids = [eos] if isinstance(eos, int) else list(eos or [])
        if getattr(tokenizer, "eos_token_id", None) is not None and tokenizer.eos_token_id not in eos_ids:
            eos_ids.append(tokenizer.eos_token_id)
        self.eos_ids = eos_ids
        self.grammars = GrammarCompiler(tokenizer, int(self.spec.vocab_size or len(tokenizer.get_vocab())), eos_ids)
        fmt = self.tool_format
        template = getattr(tokenizer, "chat_template", None) or getattr(self.processor, "chat_template", None)
        self.reasoning_format = detect_reasoning(template, tokenizer.get_vocab(), lambda: self._template(
            GenerationRequest([Message("user", "Hi")], {}), [0], [0]))
        markers = [fmt.start, fmt.end] if fmt else []
        self.hidden = hidden_tokens(tokenizer, markers + list(self.reasoning_format.markers if self.reasoning_format else ()))

    def unload(self) -> None:
        self.reset()
        self.model = self.processor = None
        self._states.clear()

    def clear_cache(self) -> None:
        self._states.clear()

    @property
    def cache_stats(self) -> dict[str, int]:
        return {
            "entries": len(self._states),
            "bytes": sum(_cache_nbytes(s.cache) for s in self._states.values()),
            "hits": self.cache_hits,
        }

    # ------------------------------------------------------------------ prompt
    def _template(self, request: GenerationRequest, n_images: list[int], n_videos: list[int],
                  template_kwargs: dict[str, Any] | None = None) -> str:
        from mlx_vlm.prompt_utils import apply_chat_template, get_chat_template

        chat: list[dict[str, Any]] = []
        last_user = max((i for i, m in enumerate(request.messages) if m.role == "user"), default=-1)
        # images only in the last user turn (the usual case): mlx-vlm places them as the model's own format
        # does (image first for most); images in earlier turns: each turn's images after its text
        own_layout = all(ni == 0 or i == last_user for i, ni in enumerate(n_images))
        for i, (msg, ni) in enumerate(zip(request.messages, n_images, strict=True)):
            if msg.role == "user" and own_layout:
                chat.append({"role": "user", "content": msg.text})
            elif msg.role == "user":
                parts: list[dict[str, Any]] = [{"type": "text", "text": msg.text}] if msg.text else []
                parts += [{"type": "image"} for _ in range(ni)]
                chat.append({"role": "user", "content": parts or [{"type": "text", "text": ""}]})
            else:
                chat.append(chat_dict(msg))
        tools = active_tools(request)
        extra = {**(template_kwargs or {}), **({"tools": [t.to_openai() for t in tools]} if tools else {})}
        try:
            if not any(n_videos):
                return apply_chat_template(self.processor, self.model.config, chat, num_images=sum(n_images), **extra)
            formatted = apply_chat_template(
                self.processor, self.model.config, chat, num_images=sum(n_images), return_messages=True
            )
            for m, nv in zip(formatted, n_videos, strict=True):
                if nv:
                    content = (
                        m["content"] if isinstance(m["content"], list) else [{"type": "text", "text": m["content"]}]
                    )
                    m["content"] = content + [{"type": "video"} for _ in range(nv)]
            return get_chat_template(self.processor, formatted, True, **extra)
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidParameterError(
                f"The model's chat template rejected these messages: {type(exc).__name__}: {exc}", param="messages"
            ) from exc

    def prepare(self, request: GenerationRequest, template_kwargs: dict[str, Any] | None = None
                ) -> PreparedVisionRequest:
        """Media, memory check, template and processor: everything before the first token."""
        from mlx_vlm.utils import prepare_inputs, should_add_special_tokens

        images, videos, n_images, n_videos = load_media(request, self)
        prompt = self._template(request, n_images, n_videos, template_kwargs)
        model = self.model
        try:
            inputs = prepare_inputs(
                self.processor,
                images=images or None,
                videos=videos or None,
                prompts=prompt,
                image_token_index=getattr(model.config, "image_token_index", None),
                add_special_tokens=should_add_special_tokens(model.config.model_type, self.processor),
            )
        except (ValueError, TypeError, IndexError, KeyError) as exc:
            raise ImageProcessingError(f"The model's processor refused the media: {type(exc).__name__}: {exc}") from exc
        h = hashlib.blake2b(digest_size=16)
        for img in images:
            h.update(f"I{img.size}".encode())
            h.update(img.tobytes())
        for frames in videos:
            h.update(f"V{frames.shape}".encode())
            h.update(frames.tobytes())
        extra = {k: v for k, v in inputs.items() if k not in ("input_ids", "pixel_values", "attention_mask")}
        return PreparedVisionRequest(
            prompt=prompt,
            input_ids=inputs["input_ids"],
            pixel_values=inputs.get("pixel_values"),
            mask=inputs.get("attention_mask"),
            extra=extra,
            media_key=h.hexdigest(),
        )

    # ------------------------------------------------------------------ generate
    # ------------------------------------------------------------------ batching (one at a time)
    @property
    def capacity(self) -> int:
        return 1

    def admit(self, req: "EngineRequest") -> bool:
        """Media, memory check, template and processor (typed errors raise here, before generation)."""
        self.check_params(req.params)
        fmt = self.reasoning_format
        kwargs = template_kwargs(fmt, req.params, is_constrained(req), str(self.config.get("model") or self.spec.path))
        prepared = self.prepare(req.request, kwargs)
        check_context_window(int(prepared.input_ids.size), req.params)
        tail = prepared.prompt[-64:]
        thinking = grammar_thinking(fmt, kwargs, opens_reasoning(fmt, tail), self.grammars.marker)
        processors = constrain_request(req, self.grammars, self.tool_format, thinking)
        req.pipeline.hidden = self.hidden
        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        req.pipeline.reasoning, budget = request_reasoning(
            fmt, req.params, tail, lambda text: list(tokenizer.encode(text, add_special_tokens=False)))
        processors += budget
        min_tokens = int(req.params.get("min_tokens") or 0)
        if min_tokens and self.eos_ids:
            processors.append(MinTokens(min_tokens, self.eos_ids))
        self.cache_lookups += 1
        self._steps[req] = self.steps(prepared, req.params, req.token, processors)
        self._current = req
        return True

    def step(self) -> list[tuple["EngineRequest", Step]]:
        req = self._current
        if req is None:
            return []
        step = next(self._steps[req], None)
        if step is None:  # the generator ended early (cancelled): the engine sees the cancel next
            return []
        return [(req, step)]

    def release(self, req: "EngineRequest", *, failed: bool = False) -> None:
        gen = self._steps.pop(req, None)
        if self._current is req:
            self._current = None
        if gen is not None and not failed:
            gen.close()  # lets mlx-vlm finish and store the prompt-cache state

    def reset(self) -> None:
        self._current = None
        self._steps.clear()

    def _sampling(self, params: dict[str, Any]) -> dict[str, Any]:
        rep = params.get("repetition_penalty")
        return {
            "temperature": float(params["temperature"]),
            "top_p": float(params.get("top_p") or 1.0),
            "top_k": int(params.get("top_k") or 0),
            "min_p": float(params.get("min_p") or 0.0),
            "repetition_penalty": None if rep in (None, 1.0) else float(rep),
            "repetition_context_size": int(params["repetition_context_size"]),
            "presence_penalty": params.get("presence_penalty") or None,
            "presence_context_size": int(params["repetition_context_size"]),
            "frequency_penalty": params.get("frequency_penalty") or None,
            "frequency_context_size": int(params["repetition_context_size"]),
            "logit_bias": params.get("logit_bias") or None,
            "seed": params.get("seed"),
        }

    def _store(self, key: str, state: Any) -> None:
        self._states[key] = state
        self._states.move_to_end(key)
        budget = self.config.get("prompt_cache_bytes") or 0
        while self._states and (len(self._states) > _MAX_CACHE_ENTRIES or self.cache_stats["bytes"] > budget):
            self._states.popitem(last=False)

    def _check_kv_bits(self) -> None:
        """``kv_bits`` (mlx-vlm's own quantized cache): the settings, and a head size the group size divides."""
        bits = self.config.get("kv_bits")
        if not bits:
            return
        from .kv_quant import check_kv_quantization

        group = int(self.config["kv_group_size"])
        check_kv_quantization(int(bits), group, int(self.config.get("quantized_kv_start") or 0))
        cfg = self.spec.config.get("text_config") or self.spec.config
        heads = int(cfg.get("num_attention_heads") or 1)
        head = int(cfg.get("head_dim") or int(cfg.get("hidden_size") or 0) // heads)
        if head % group:
            raise InvalidParameterError(f"kv_group_size={group} does not divide this model's attention head "
                                        f"dimension ({head}); choose another of 32, 64, 128 that does",
                                        param="kv_group_size", value=group)
        self.info["kv_bits"] = int(bits)

    def _prompt_cache(self, key: str, use_cache: bool) -> tuple[Any, Any]:
        """The media's ``PromptCacheState`` (taken out of the store while it is used; a new one if none) and our
        own KV cache list, or ``(None, None)`` without the prompt cache."""
        from mlx_vlm.generate.common import PromptCacheState
        from mlx_vlm.models.cache import make_prompt_cache

        if not use_cache:
            return None, None
        state = self._states.pop(key, None)
        state = PromptCacheState() if state is None else state
        # our own cache list: mlx-vlm fills it in place, so a stream stopped early can still be stored
        # (on a prefix hit mlx-vlm uses the state's trimmed cache instead)
        return state, make_prompt_cache(self.model.language_model)

    def _generate_kwargs(self, prepared: PreparedVisionRequest, params: dict[str, Any], processors: list[Any] | None,
                         state: Any, fresh: Any) -> dict[str, Any]:
        """mlx-vlm's ``stream_generate`` keywords: the processor's extras, sampling, logits processors, the prompt
        cache (``state`` and ``fresh``, when used), the KV size or quantization, the prefill step."""
        kwargs: dict[str, Any] = dict(prepared.extra)
        kwargs.update(self._sampling(params))
        if processors:
            kwargs["logits_processors"] = list(processors)
        if state is not None:
            kwargs["prompt_cache_state"] = state
            kwargs["prompt_cache"] = fresh
        if params.get("max_kv_size") is not None:
            kwargs["max_kv_size"] = int(params["max_kv_size"])
        elif self.config.get("kv_bits"):  # mlx-vlm's own quantized cache (one request at a time)
            kwargs.update(kv_bits=int(self.config["kv_bits"]), kv_group_size=int(self.config["kv_group_size"]),
                          quantized_kv_start=int(self.config.get("quantized_kv_start") or 0))
        kwargs["prefill_step_size"] = int(self.config["prefill_step_size"])
        return kwargs

    def _stepper(self, params: dict[str, Any]) -> Callable[[Any, str, int, str | None], Step]:
        """Makes a ``Step`` of one mlx-vlm result (with its log-probabilities when the request asked for them)."""
        want_logprobs = bool(params.get("logprobs"))
        top_k = int(params.get("top_logprobs") or 0)
        decode = getattr(self.processor, "tokenizer", self.processor).decode

        def step(r: Any, text: str, token: int, finish: str | None) -> Step:
            cached = int(getattr(r, "cached_tokens", 0) or 0)
            out = Step(text=text, token=int(token), finish_reason=finish, prompt_tokens=int(r.prompt_tokens) - cached,
                       cached_tokens=cached)
            if want_logprobs and getattr(r, "logprobs", None) is not None:
                fill_logprobs(out, r.logprobs, top_k, decode)
            return out

        return step

    def steps(self, prepared: PreparedVisionRequest, params: dict[str, Any], cancel: CancelToken,
              processors: list[Any] | None = None) -> Iterator[Step]:
        import mlx.core as mx
        from mlx_vlm import stream_generate

        use_cache = bool(self.config.get("prompt_cache_bytes")) and params.get("max_kv_size") is None
        key = prepared.media_key
        state, fresh = self._prompt_cache(key, use_cache)
        kwargs = self._generate_kwargs(prepared, params, processors, state, fresh)
        mx.reset_peak_memory()
        gen = stream_generate(
            self.model,
            self.processor,
            prepared.prompt,
            input_ids=prepared.input_ids,
            pixel_values=prepared.pixel_values,
            mask=prepared.mask,
            max_tokens=int(params["max_tokens"]),
            **kwargs,
        )
        run, failed = _Run(), False
        step = self._stepper(params)
        try:
            yield from _steps_of(gen, step, cancel, run)
        except Exception:
            failed = True  # the KV cache may be half-updated: the entry is dropped (the engine reseeds)
            raise
        finally:
            gen.close()
            self.cache_hits += int(run.hit)
            if state is not None and not failed:
                self._keep(key, state, fresh, prepared, run)

    def _keep(self, key: str, state: Any, fresh: Any, prepared: PreparedVisionRequest, run: "_Run") -> None:
        """Store the media's prompt-cache state after a stream that did not fail. A stream stopped early is stored
        when the cache it used (the state's on a prefix hit, else ours) holds the prompt and every id mlx-vlm
        yielded, in that order."""
        import mlx.core as mx

        completed = run.completed
        if not completed and run.generated:
            cache = state.cache if run.hit else fresh
            ids = [int(t) for t in prepared.input_ids.flatten().tolist()] + run.generated
            if cache is not None and all(getattr(c, "offset", len(ids)) == len(ids) for c in cache):
                mx.eval([c.state for c in cache])
                state.update(ids, cache)
                completed = True
        if completed and state.cache is not None:
            self._store(key, state)


class _Run:
    """What one vision stream did, read when it ends (to keep its prompt-cache state): the ids mlx-vlm yielded
    (each already in the KV cache), whether it reached its end, whether it hit the prompt cache."""

    def __init__(self) -> None:
        self.generated: list[int] = []
        self.completed = self.hit = False


def _tok(t: Any) -> int:
    return int(t.item()) if hasattr(t, "item") else int(t)


def _steps_of(gen: Iterator[Any], step: Callable[[Any, str, int, str | None], Step], cancel: CancelToken,
              run: _Run) -> Iterator[Step]:
    """mlx-vlm's results as steps, one result held back (mlx-vlm's last result may repeat the last token); stops
    at the first result after a cancel."""
    prev = None
    for r in gen:
        if r.finish_reason is None:
            run.generated.append(_tok(r.token))
            if prev is not None:
                yield step(prev, prev.text, _tok(prev.token), None)
            prev = r
            run.hit = run.hit or int(getattr(r, "cached_tokens", 0) or 0) > 0
            if cancel.cancelled:
                yield step(prev, prev.text, _tok(prev.token), None)
                return
            continue
        for _ in gen:  # let mlx-vlm save the prompt-cache state after its last result
            pass
        run.completed = True
        if r.finish_reason == "length" and prev is not None:
            yield step(r, prev.text + (r.text or ""), _tok(prev.token), "length")
        elif r.token is None:  # nothing generated
            if prev is not None:
                yield step(r, prev.text, _tok(prev.token), "length")
        else:
            if prev is not None:
                yield step(prev, prev.text, _tok(prev.token), None)
            run.hit = run.hit or int(getattr(r, "cached_tokens", 0) or 0) > 0
            yield step(r, r.text or "", _tok(r.token), r.finish_reason)
        return
