"""The text adapter: mlx-lm's ``load``, the chat template, mlx-lm's ``LRUPromptCache`` and its
``BatchGenerator``, which decodes every admitted request together. Runs on the provider's worker thread.

Per request (``admit``): the conversation is templated to token ids, the prompt cache gives the nearest
cached prefix (a deep copy, trimmed), the KV memory check runs, and the request joins the batch with its
own sampler (``sampling.make_request_sampler``: its own random key), its own logits processors, its own
``max_tokens``, and the cached tokens as the processors' history. Each step of the batch gives each
decoding request one token, detokenized by the request's own streaming detokenizer exactly as
``mlx_lm.stream_generate`` does it (the end-of-sequence token's text is not added; the last token's text
is finalized). A finished request's KV cache comes back from the batch and goes into the prompt cache;
so does a stopped or cancelled one's (``BatchGenerator.remove(..., return_prompt_caches=True)``).

While requests are decoding, a new prompt is prefilled ``prefill_chunk_size`` tokens per step (between
their decode steps); alone, ``prefill_step_size`` tokens per step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...exceptions import InvalidParameterError, ModelLoadError
from ...types import Message
from .adapter import ModelAdapter
from .memory import check_context_window, check_request_memory, kv_bytes_per_token
from .pipeline import Step
from .constrain import GrammarCompiler, active_tools, chat_dict, constrain_request, is_constrained
from .reasoning import (ReasoningFormat, detect_reasoning, grammar_thinking, opens_reasoning, request_reasoning,
                        template_kwargs)
from .special import hidden_tokens, reply_detokenizer
from .sampling import fill_logprobs, make_request_processors, make_request_sampler
from .toolcalls import text_tool_format
from .weights import cast_for_device, float_itemsize, quantize_bits

if TYPE_CHECKING:
    from .engine import EngineRequest

__all__ = ["TextAdapter", "plain_prompt"]


def plain_prompt(messages: list[Message]) -> str:
    """The documented fallback for base models without a chat template::

        <system text>

        User: <text>
        Assistant: <text>
        ...
        Assistant:
    """
    lines = []
    for m in messages:
        if m.role == "system":
            lines.append(m.text + "\n")
        else:
            lines.append(f"{'User' if m.role == 'user' else 'Assistant'}: {m.text}")
    lines.append("Assistant:")
    return "\n".join(lines)


@dataclass
class _Request:
    """The text adapter's state of one admitted request."""

    req: "EngineRequest"
    uid: int
    prompt_ids: list[int]
    computed: int  # prompt tokens to prefill (not served from the cache)
    cached: int
    detokenizer: Any
    top_logprobs: int
    in_batch: bool = True  # False once the batch itself ended it (its cache already stored)
    decoding: bool = False


class TextAdapter(ModelAdapter):
    """Loads a text model with mlx-lm and generates for many requests at once with its BatchGenerator."""

    kind = "text"

    def __init__(self, spec: Any, config: dict[str, Any], on_gpu: bool) -> None:
        super().__init__(spec, config, on_gpu)
        self.model = None
        self.tokenizer = None
        self._cache = None  # mlx_lm LRUPromptCache
        self.kv_bytes_per_token = 0
        self._batch: Any = None  # mlx_lm BatchGenerator
        self._batch_kv: tuple[Any, ...] | None = None  # (max_kv_size, batch size, prefill step) it was made for
        self._by_uid: dict[int, _Request] = {}  # the batch's requests by their uid in the BatchGenerator
        self._states: dict["EngineRequest", _Request] = {}  # every admitted request not yet released
        self.hidden: dict[int, str] = {}  # control tokens kept out of content (special.py)
        self.reasoning_format: ReasoningFormat | None = None

    # ------------------------------------------------------------------ load
    def _load_weights(self) -> tuple[Any, Any, dict[str, Any]]:
        """The model (lazy), its tokenizer and its config, from mlx-lm's ``load`` (``distributed.py``'s
        sharded adapter loads this process's shard instead)."""
        from mlx_lm import load

        try:
            return load(str(self.spec.path), lazy=True, return_config=True,
                        trust_remote_code=bool(self.config.get("trust_remote_code")))
        except (ValueError, KeyError, TypeError, OSError, ImportError, RuntimeError) as exc:
            raise ModelLoadError(f"mlx-lm could not load {str(self.spec.path)!r}: {type(exc).__name__}: {exc}") from exc

    def load(self) -> None:
        import mlx.core as mx
        from mlx_lm.models.cache import LRUPromptCache
        from mlx_lm.utils import quantize_model

        bits = quantize_bits(self.config)
        model, tokenizer, config = self._load_weights()
        if not tokenizer.encode("a", add_special_tokens=False):
            raise ModelLoadError(
                f"mlx-lm could not load {str(self.spec.path)!r}: its tokenizer is empty (no tokenizer.json, "
                "tokenizer.model or vocabulary files in the folder?)."
            )
        # Quantized models too: their scales, biases, norms and unquantized layers are floats, and on
        # CPU a 4-bit Qwen3-0.6B decodes ~8x faster with float32 scales than with bfloat16 ones.
        self.info["dtype"] = self._cast_weights(model)
        if bits and config.get("quantization") is None:
            model, config = quantize_model(model, config, group_size=64, bits=bits)
            self.info["quantized_on_load"] = bits
        try:
            mx.eval(model.parameters())
        except RuntimeError as exc:  # e.g. a weight file that cannot be read
            raise ModelLoadError(f"mlx-lm could not load {str(self.spec.path)!r}: {exc}") from exc
        self.model, self.tokenizer = model, tokenizer
        from .guards import apply_guards  # known mlx-lm defects of this model_type, fixed on this model

        apply_guards(self)
        budget = self.config.get("prompt_cache_bytes")
        self._cache = LRUPromptCache(max_size=32, max_bytes=budget) if budget else None
        self.info["quantization"] = config.get("quantization")
        self.kv_bytes_per_token = kv_bytes_per_token(self.spec.config, float_itemsize(model))
        self.tool_format = text_tool_format(tokenizer)
        self.reasoning_format = detect_reasoning(
            getattr(tokenizer, "chat_template", None), tokenizer.get_vocab(),
            lambda: tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True,
                                                  tokenize=False))
        self.hidden = hidden_tokens(getattr(tokenizer, "_tokenizer", tokenizer), self._markers())
        self.grammars = GrammarCompiler(getattr(tokenizer, "_tokenizer", tokenizer),
                                        int(self.spec.vocab_size or len(tokenizer.get_vocab())),
                                        list(tokenizer.eos_token_ids))
        from mlx_lm.utils import get_total_parameters

        self.info["num_parameters"] = int(get_total_parameters(model))

    def _cast_weights(self, model: Any) -> str | None:
        """Cast the float weights as the ``dtype`` config says; the dtype applied (``vision_text.py``'s adapter
        shares a vision model's arrays and casts nothing)."""
        return cast_for_device(model, self.config.get("dtype") or "auto", self.on_gpu)

    def _markers(self) -> list[str | None]:
        """The markup this model's parsers read (kept in the text for them to take out)."""
        fmt, tok = self.tool_format, self.tokenizer
        return [fmt.start if fmt else None, fmt.end if fmt else None,
                *(self.reasoning_format.markers if self.reasoning_format else ())]

    def unload(self) -> None:
        self.reset()
        self.model = self.tokenizer = self._cache = None

    def clear_cache(self) -> None:
        if self._cache is not None:
            self._cache.trim_to(n_sequences=0)

    @property
    def cache_stats(self) -> dict[str, int]:
        if self._cache is None:
            return {"entries": 0, "bytes": 0, "hits": self.cache_hits}
        return {"entries": len(self._cache), "bytes": int(self._cache.nbytes), "hits": self.cache_hits}

    # ------------------------------------------------------------------ prompt
    def encode_messages(self, messages: list[Message], tools: list[Any] | None = None,
                        template_kwargs: dict[str, Any] | None = None) -> list[int]:
        """Template the conversation (tool calls and results included, and the ``tools`` in OpenAI form)
        with the model's chat template (ids) and ``template_kwargs``, or the plain fallback."""
        tok = self.tokenizer
        if tok.has_chat_template:
            chat = [chat_dict(m) for m in messages]
            extra = {**(template_kwargs or {}), **({"tools": tools} if tools else {})}
            try:
                ids = tok.apply_chat_template(chat, add_generation_prompt=True, **extra)
            except Exception as exc:
                raise InvalidParameterError(
                    f"The model's chat template rejected these messages: {type(exc).__name__}: {exc}",
                    param="messages",
                ) from exc
            if isinstance(ids, dict):  # some tokenizers return a BatchEncoding
                ids = ids["input_ids"]
            return list(ids)
        return list(tok.encode(plain_prompt(messages), add_special_tokens=True))

    # ------------------------------------------------------------------ batching
    @property
    def capacity(self) -> int:
        return int(self.config.get("max_batch_size") or 8)

    def _ensure_batch(self, max_kv: int | None) -> bool:
        """The BatchGenerator for ``max_kv`` (one cache kind per batch): made when needed; False when the
        current batch has another and still runs requests (this one waits for it to drain)."""
        from mlx_lm.generate import BatchGenerator

        shape = (max_kv, self.capacity, int(self.config["prefill_step_size"]))
        if self._batch is not None and self._batch_kv == shape:
            return True
        if self._by_uid:
            return False
        self.reset()
        self._batch = BatchGenerator(
            self.model, max_tokens=512, stop_tokens=[[e] for e in self.tokenizer.eos_token_ids],
            completion_batch_size=self.capacity, prefill_batch_size=self.capacity,
            prefill_step_size=int(self.config["prefill_step_size"]), max_kv_size=max_kv,
        )
        self._batch_kv = shape
        return True

    def admit(self, req: "EngineRequest") -> bool:
        from mlx_lm.models.cache import can_trim_prompt_cache, trim_prompt_cache

        params = req.params
        self.check_params(params)
        tools = active_tools(req)
        kwargs = template_kwargs(self.reasoning_format, params, is_constrained(req), str(self.config.get("model") or self.spec.path))
        prompt_ids = self.encode_messages(req.request.messages, [t.to_openai() for t in tools] if tools else None,
                                          kwargs)
        if not prompt_ids:
            raise InvalidParameterError("The prompt is empty after templating.", param="prompt")
        check_context_window(len(prompt_ids), params)
        max_kv = params.get("max_kv_size")
        if not self._ensure_batch(max_kv):
            return False
        cache, rest = None, prompt_ids
        if self._cache is not None and max_kv is None:
            self.cache_lookups += 1
            cache, rest = self._cache.fetch_nearest_cache(str(self.spec.path), prompt_ids)
            if cache is not None and not rest:  # exact hit: recompute the last token to get its logits
                if can_trim_prompt_cache(cache):
                    trim_prompt_cache(cache, 1)
                    rest = prompt_ids[-1:]
                else:
                    cache, rest = None, prompt_ids
        if cache is None:
            rest = prompt_ids
        cached = len(prompt_ids) - len(rest)
        check_request_memory(len(prompt_ids), params["max_tokens"], max_kv, self.kv_bytes_per_token,
                             self.config.get("memory_limit"))
        processors = make_request_processors(params, list(self.tokenizer.eos_token_ids))
        tail = self.tokenizer.decode(prompt_ids[-8:])
        thinking = grammar_thinking(self.reasoning_format, kwargs, opens_reasoning(self.reasoning_format, tail),
                                    self.grammars.marker)
        processors += constrain_request(req, self.grammars, self.tool_format, thinking)
        req.pipeline.reasoning, budget = request_reasoning(
            self.reasoning_format, params, tail, lambda text: list(self.tokenizer.encode(text, add_special_tokens=False)))
        processors += budget
        self.cache_hits += cached > 0
        (uid,) = self._batch.insert(
            [list(rest)], max_tokens=[int(params["max_tokens"])], caches=[cache],
            all_tokens=[list(prompt_ids[:cached])], samplers=[make_request_sampler(params)],
            logits_processors=[processors],
        )
        detokenizer = reply_detokenizer(self.tokenizer)
        req.pipeline.hidden = self.hidden
        st = _Request(req, uid, prompt_ids, len(rest), cached, detokenizer,
                      int(params.get("top_logprobs") or 0) if params.get("logprobs") else -1)
        self._by_uid[uid] = self._states[req] = st
        return True

    def cached_tokens(self, req: "EngineRequest") -> int:
        st = self._states.get(req)
        return st.cached if st is not None else 0

    def _chunk_size(self) -> int:
        """Prompt tokens per step: small while other requests are decoding (they wait for it)."""
        full = int(self.config["prefill_step_size"])
        if any(st.decoding for st in self._by_uid.values()):
            return min(full, int(self.config.get("prefill_chunk_size") or full))
        return full

    def step(self) -> list[tuple["EngineRequest", Step]]:
        batch = self._batch
        batch.prefill_step_size = self._chunk_size()
        _, responses = batch.next()
        out = []
        for r in responses:
            st = self._by_uid.get(r.uid)
            if st is None:
                continue
            req = st.req
            st.decoding = True
            token = int(r.token)
            detok = st.detokenizer
            # end of sequence: its text is not added (as stream_generate); nor is a control token's (special.py)
            if r.finish_reason != "stop" and token not in self.hidden:
                detok.add_token(token)
            if r.finish_reason is not None:
                detok.finalize()
            step = Step(text=detok.last_segment, token=token, finish_reason=r.finish_reason,
                        prompt_tokens=st.computed, cached_tokens=st.cached)
            if st.top_logprobs >= 0:
                fill_logprobs(step, r.logprobs, st.top_logprobs, self.tokenizer.decode)
            if r.finish_reason is not None:  # the batch dropped it: store its cache now
                st.in_batch = False
                del self._by_uid[r.uid]
                self._store(r.all_tokens, r.prompt_cache, req)
            out.append((req, step))
        return out

    def _store(self, tokens: list[int] | None, cache: Any, req: "EngineRequest") -> None:
        if self._cache is not None and tokens and cache is not None and req.params.get("max_kv_size") is None:
            self._cache.insert_cache(str(self.spec.path), list(tokens), cache)

    def release(self, req: "EngineRequest", *, failed: bool = False) -> None:
        st = self._states.pop(req, None)
        if st is None or not st.in_batch:
            return
        st.in_batch = False
        self._by_uid.pop(st.uid, None)
        if self._batch is None:
            return
        caches = self._batch.remove([st.uid], return_prompt_caches=not failed)
        if not failed and st.uid in caches:
            cache, tokens = caches[st.uid]
            self._store(tokens, cache, req)

    def reset(self) -> None:
        self._by_uid.clear()
        self._states.clear()
        if self._batch is not None:
            try:
                self._batch.close()
            finally:
                self._batch, self._batch_kv = None, None
