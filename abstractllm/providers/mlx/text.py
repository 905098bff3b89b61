"""The text adapter: mlx-lm's ``load``, chat template, sampler, logits processors, prompt cache and
``stream_generate``, turned into pipeline ``Step``s. Runs on the provider's worker thread only."""

from __future__ import annotations

from typing import Any, Iterator

from ...exceptions import ContextWindowExceededError, InvalidParameterError, MemoryLimitError, ModelLoadError
from ...memory import available_memory
from ...params import format_bytes
from ...types import GenerationRequest, Message
from ..worker import CancelToken
from .pipeline import Step
from .source import ModelSpec

__all__ = ["TextAdapter", "plain_prompt", "cast_for_device", "float_itemsize_for", "kv_bytes_per_token",
           "check_request_memory", "check_context_window", "quantize_bits", "logits_processors"]


def quantize_bits(config: dict[str, Any]) -> int | None:
    """Bits to quantize to on load: ``quantize``, or 1.x's ``load_in_4bit`` / ``load_in_8bit``."""
    if config.get("quantize"):
        return config["quantize"]
    if config.get("load_in_4bit"):
        return 4
    if config.get("load_in_8bit"):
        return 8
    return None


def check_context_window(prompt_tokens: int, params: dict[str, Any]) -> None:
    """``max_input_tokens``: the prompt's limit; ``context_window``: the limit of prompt + ``max_tokens``.
    Past either, ``ContextWindowExceededError`` (nothing is generated)."""
    limit = params.get("max_input_tokens")
    if limit and prompt_tokens > limit:
        raise ContextWindowExceededError(
            f"The prompt has {prompt_tokens} tokens, above max_input_tokens={limit}. Shorten it or raise the limit.",
            context_window=limit, content_length=prompt_tokens)
    window = params.get("context_window")
    if window and prompt_tokens + params["max_tokens"] > window:
        raise ContextWindowExceededError(
            f"{prompt_tokens} prompt tokens + max_tokens={params['max_tokens']} exceed context_window={window}. "
            "Shorten the prompt or lower max_tokens.", context_window=window,
            content_length=prompt_tokens + params["max_tokens"])


def logits_processors(params: dict[str, Any]) -> list[Any]:
    """mlx-lm's logits processors for the request: ``logit_bias``, then the repetition, presence and
    frequency penalties over the last ``repetition_context_size`` tokens (prompt included)."""
    from mlx_lm.sample_utils import make_logits_processors

    ctx = params["repetition_context_size"]
    rep = params["repetition_penalty"]
    return make_logits_processors(
        logit_bias=params.get("logit_bias") or None,
        repetition_penalty=rep if rep != 1.0 else None, repetition_context_size=ctx,
        presence_penalty=params.get("presence_penalty") or None, presence_context_size=ctx,
        frequency_penalty=params.get("frequency_penalty") or None, frequency_context_size=ctx,
    )


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


def float_itemsize_for(dtype: str, spec: ModelSpec, on_gpu: bool) -> int | None:
    """Bytes per float weight after load (None: kept as stored). ``auto`` casts half-precision weights
    to float32 on CPU, where bfloat16/float16 matmuls are several times slower; keeps them on GPUs
    (Apple Metal, CUDA)."""
    if dtype == "auto":
        return None if on_gpu else 4
    return {"float32": 4, "float16": 2, "bfloat16": 2}[dtype]


def cast_for_device(model: Any, dtype: str, on_gpu: bool) -> str | None:
    """Cast the float weights of ``model`` as ``dtype`` says (of a quantized model: its scales, biases
    and unquantized layers; the packed integer weights stay); return the dtype name applied (or None)."""
    import mlx.core as mx

    target = None
    if dtype == "auto":
        target = None if on_gpu else mx.float32
    else:
        target = getattr(mx, dtype)
    if target is None:
        return None
    model.set_dtype(target, lambda x: mx.issubdtype(x, mx.floating))
    return str(target).replace("mlx.core.", "")


def kv_bytes_per_token(config: dict[str, Any], itemsize: int) -> int:
    """Bytes the KV cache grows by per token: 2 x layers x kv_heads x head_dim x itemsize (0: unknown)."""
    cfg = config.get("text_config") or config
    try:
        layers = int(cfg["num_hidden_layers"])
        heads = int(cfg.get("num_attention_heads") or 0)
        kv_heads = int(cfg.get("num_key_value_heads") or heads)
        head_dim = int(cfg.get("head_dim") or int(cfg["hidden_size"]) // heads)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return 0
    return 2 * layers * kv_heads * head_dim * itemsize


def _float_itemsize(model: Any) -> int:
    from mlx.utils import tree_flatten

    import mlx.core as mx

    for _, value in tree_flatten(model.parameters()):
        if mx.issubdtype(value.dtype, mx.floating):
            return value.dtype.size
    return 4


def check_request_memory(prompt_tokens: int, max_tokens: int, max_kv_size: int | None, per_token: int,
                         memory_limit: int | None) -> None:
    """Refuse (``MemoryLimitError``) a request whose KV cache, at ``prompt + max_tokens`` tokens, cannot fit
    in the available memory (or in ``memory_limit`` minus what MLX already holds)."""
    if not per_token:
        return
    import mlx.core as mx

    tokens = prompt_tokens + max_tokens
    if max_kv_size:
        tokens = min(tokens, max_kv_size)
    need = tokens * per_token
    avail, source = available_memory(memory_limit, in_use=mx.get_active_memory())
    if need > avail:
        raise MemoryLimitError(
            f"This request's KV cache needs up to {format_bytes(need)} ({prompt_tokens} prompt + {max_tokens} "
            f"new tokens x {format_bytes(per_token)} per token), but only {format_bytes(avail)} is available "
            f"({source}). Lower max_tokens, shorten the prompt, or bound the cache with max_kv_size.",
            required_bytes=need, available_bytes=avail,
        )


class TextAdapter:
    """Loads a text model with mlx-lm and generates from it."""

    kind = "text"

    def __init__(self, spec: ModelSpec, config: dict[str, Any], on_gpu: bool) -> None:
        self.spec = spec
        self.config = config
        self.on_gpu = on_gpu
        self.model = None
        self.tokenizer = None
        self.info: dict[str, Any] = {}
        self._cache = None  # mlx_lm LRUPromptCache
        self.kv_bytes_per_token = 0
        self.cache_hits = 0

    # ------------------------------------------------------------------ load
    def load(self) -> None:
        import mlx.core as mx
        from mlx_lm import load
        from mlx_lm.models.cache import LRUPromptCache
        from mlx_lm.utils import quantize_model

        bits = quantize_bits(self.config)
        try:
            model, tokenizer, config = load(
                str(self.spec.path), lazy=True, return_config=True,
                trust_remote_code=bool(self.config.get("trust_remote_code")),
            )
        except (ValueError, KeyError, TypeError, OSError, ImportError, RuntimeError) as exc:
            raise ModelLoadError(f"mlx-lm could not load {str(self.spec.path)!r}: {type(exc).__name__}: {exc}") from exc
        if not tokenizer.encode("a", add_special_tokens=False):
            raise ModelLoadError(
                f"mlx-lm could not load {str(self.spec.path)!r}: its tokenizer is empty (no tokenizer.json, "
                "tokenizer.model or vocabulary files in the folder?)."
            )
        # Quantized models too: their scales, biases, norms and unquantized layers are floats, and on
        # CPU a 4-bit Qwen3-0.6B decodes ~8x faster with float32 scales than with bfloat16 ones.
        cast_for_device(model, self.config.get("dtype") or "auto", self.on_gpu)
        if bits and config.get("quantization") is None:
            model, config = quantize_model(model, config, group_size=64, bits=bits)
            self.info["quantized_on_load"] = bits
        try:
            mx.eval(model.parameters())
        except RuntimeError as exc:  # e.g. a weight file that cannot be read
            raise ModelLoadError(f"mlx-lm could not load {str(self.spec.path)!r}: {exc}") from exc
        self.model, self.tokenizer = model, tokenizer
        budget = self.config.get("prompt_cache_bytes")
        self._cache = LRUPromptCache(max_size=32, max_bytes=budget) if budget else None
        self.info["quantization"] = config.get("quantization")
        self.kv_bytes_per_token = kv_bytes_per_token(self.spec.config, _float_itemsize(model))

    def unload(self) -> None:
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
    def encode_messages(self, messages: list[Message]) -> list[int]:
        """Template the conversation with the model's chat template (ids), or the plain fallback."""
        tok = self.tokenizer
        if tok.has_chat_template:
            chat = [{"role": m.role, "content": m.text} for m in messages]
            try:
                ids = tok.apply_chat_template(chat, add_generation_prompt=True)
            except Exception as exc:
                raise InvalidParameterError(
                    f"The model's chat template rejected these messages: {type(exc).__name__}: {exc}",
                    param="messages",
                ) from exc
            if isinstance(ids, dict):  # some tokenizers return a BatchEncoding
                ids = ids["input_ids"]
            return list(ids)
        return list(tok.encode(plain_prompt(messages), add_special_tokens=True))

    # ------------------------------------------------------------------ generate
    def request_steps(self, request: GenerationRequest, cancel: CancelToken) -> Iterator[Step]:
        """Template the request's conversation and start generating (templating errors raise here)."""
        return self.steps(self.encode_messages(request.messages), request.params, cancel)

    def steps(self, prompt_ids: list[int], params: dict[str, Any], cancel: CancelToken) -> Iterator[Step]:
        import mlx.core as mx
        from mlx_lm import stream_generate
        from mlx_lm.models.cache import can_trim_prompt_cache, make_prompt_cache, trim_prompt_cache
        from mlx_lm.sample_utils import make_sampler

        if not prompt_ids:
            raise InvalidParameterError("The prompt is empty after templating.", param="prompt")
        model, tok = self.model, self.tokenizer
        vocab = self.spec.config.get("vocab_size")
        if params["top_k"] and isinstance(vocab, int) and params["top_k"] >= vocab:
            raise InvalidParameterError(
                f"Invalid value for 'top_k': {params['top_k']} must be below the model's vocabulary size "
                f"({vocab}); 0 disables top-k.", param="top_k")
        if params.get("seed") is not None:
            mx.random.seed(params["seed"])
        sampler = make_sampler(
            temp=params["temperature"],
            top_p=params["top_p"] if params["top_p"] < 1.0 else 0.0,
            min_p=params["min_p"],
            top_k=params["top_k"],
        )
        vocab_n = vocab if isinstance(vocab, int) else None
        bias = params.get("logit_bias") or {}
        if vocab_n is not None and any(t >= vocab_n for t in bias):
            bad = next(t for t in bias if t >= vocab_n)
            raise InvalidParameterError(
                f"Invalid value for 'logit_bias': token id {bad} is outside the model's vocabulary (0..{vocab_n - 1}).",
                param="logit_bias")
        check_context_window(len(prompt_ids), params)
        processors = logits_processors(params)
        max_kv = params.get("max_kv_size")
        key = str(self.spec.path)
        cache, rest = (None, prompt_ids)
        if self._cache is not None and max_kv is None:
            cache, rest = self._cache.fetch_nearest_cache(key, prompt_ids)
            if cache is not None and not rest:  # exact hit: recompute the last token to get its logits
                if can_trim_prompt_cache(cache):
                    trim_prompt_cache(cache, 1)
                    rest = prompt_ids[-1:]
                else:
                    cache, rest = None, prompt_ids
        if cache is None:
            cache, rest = make_prompt_cache(model, max_kv_size=max_kv), prompt_ids
        cached = len(prompt_ids) - len(rest)
        check_request_memory(len(prompt_ids), params["max_tokens"], max_kv, self.kv_bytes_per_token,
                             self.config.get("memory_limit"))
        if processors and cached:
            # mlx-lm's processors (repetition penalty) see only the tokens passed in; give them the
            # cached prefix too, so that a cache hit penalizes exactly as a cold call does.
            # (only the last repetition_context_size tokens can matter to mlx-lm's processors)
            prefix = mx.array(prompt_ids[max(0, cached - params["repetition_context_size"]):cached])
            processors = [_with_prefix(p, prefix) for p in processors]
        seen = list(prompt_ids)
        mx.reset_peak_memory()
        failed = False
        self.cache_hits += cached > 0

        def prefill_progress(done: int, total: int) -> None:
            if cancel.cancelled:  # checked between prefill steps: a long prompt is cancellable too
                raise _PrefillCancelled

        try:
            for r in stream_generate(
                model, tok, mx.array(rest), max_tokens=params["max_tokens"], sampler=sampler,
                logits_processors=processors or None, prompt_cache=cache,
                prefill_step_size=self.config.get("prefill_step_size") or 2048,
                prompt_progress_callback=prefill_progress,
            ):
                seen.append(r.token)
                yield Step(
                    text=r.text, token=int(r.token), finish_reason=r.finish_reason,
                    prompt_tokens=int(r.prompt_tokens), generation_tokens=int(r.generation_tokens),
                    prompt_tps=float(r.prompt_tps), generation_tps=float(r.generation_tps),
                    peak_memory_bytes=int(r.peak_memory * 1e9), cached_tokens=cached,
                )
                if cancel.cancelled:
                    break
        except _PrefillCancelled:
            failed = True  # a partly filled cache is not stored
        except Exception:
            failed = True  # the KV cache may be half-updated: never store it
            # An error inside mlx-lm's compiled samplers leaves this thread's random state as an
            # unevaluable placeholder: every later sampling call would fail. Give it a fresh key.
            import os

            mx.random.seed(int.from_bytes(os.urandom(8), "little") >> 1)
            raise
        finally:
            if self._cache is not None and max_kv is None and not failed:
                self._cache.insert_cache(key, seen, cache)


class _PrefillCancelled(Exception):
    """Raised from mlx-lm's prefill progress callback to stop a cancelled request before its first token."""


def _with_prefix(processor: Any, prefix: Any) -> Any:
    """Wrap a logits processor so that the token history it sees starts with ``prefix``."""
    import mlx.core as mx

    def process(tokens: Any, logits: Any) -> Any:
        return processor(mx.concatenate([prefix, tokens.astype(prefix.dtype)]), logits)

    return process
