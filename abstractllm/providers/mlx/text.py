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

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...exceptions import InvalidParameterError, ModelLoadError
from ...params import PROMPT_CACHE_MAX_ENTRIES, default_of
from ...types import Message
from .adapter import ModelAdapter
from .memory import check_context_window, check_request_memory, kv_bytes_per_token
from .pipeline import Step
from .prefix_cache import PrefixCache, message_bounds, model_key, trimmable_layout
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


def _quantized_kv(cache: list[Any]) -> bool:
    from .kv_quant import is_quantized_cache  # imports mlx: lazily, as the rest of this module

    return is_quantized_cache(cache)


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
    pending: set[int] = field(default_factory=set)  # snapshot bounds its prefill has not reached yet
    kinds: dict[int, str] = field(default_factory=dict)  # bound -> the snapshot's kind
    variant: str = ""  # the prefix-cache variant of its KV layout (PrefixCache.fetch)


@dataclass(eq=False)
class _Plan:
    """A request ready to join the batch but for its cache (``TextAdapter._plan``)."""

    state: _Request
    bounds: dict[int, str]
    use_cache: bool
    max_tokens: int
    sampler: Any
    processors: list[Any]
    quantized: bool = False  # its KV cache is quantized (kv_bits)


class TextAdapter(ModelAdapter):
    """Loads a text model with mlx-lm and generates for many requests at once with its BatchGenerator."""

    kind = "text"

    def __init__(self, spec: Any, config: dict[str, Any], on_gpu: bool) -> None:
        super().__init__(spec, config, on_gpu)
        self.model = None
        self.tokenizer = None
        self._cache = None  # mlx_lm LRUPromptCache
        self.kv_bytes_per_token = 0
        self.kv_bits: int | None = None
        self._trimmable = False  # every layer's cache is plain attention (prefix_cache.trimmable_layout)
        self._batch: Any = None  # mlx_lm BatchGenerator
        self._batch_kv: tuple[Any, ...] | None = None  # (max_kv_size, batch size, prefill step) it was made for
        self._by_uid: dict[int, _Request] = {}  # the batch's requests by their uid in the BatchGenerator
        self._states: dict["EngineRequest", _Request] = {}  # every admitted request not yet released
        self._deferred: list[_Plan] = []  # admitted, waiting for a prefix another request is computing
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
        self.info["quantization"] = config.get("quantization")
        self._cache = self._prefix_cache()
        self.kv_bits = self._check_kv_bits(model)
        self._trimmable = trimmable_layout(model)
        self.kv_bytes_per_token = kv_bytes_per_token(self.spec.config, float_itemsize(model), self.kv_bits,
                                                     self.config.get("kv_group_size"))
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

    def _check_kv_bits(self, model: Any) -> int | None:
        """``kv_bits``: checked against the model (its head size, its attention) by one probe token."""
        bits = self.config.get("kv_bits")
        if not bits:
            return None
        from .kv_attention import install
        from .kv_quant import check_kv_quantization, probe_kv_quantization

        group = int(self.config["kv_group_size"])
        check_kv_quantization(int(bits), group, int(self.config.get("quantized_kv_start") or 0))
        install(model)  # quantized attention on every CPU core
        probe_kv_quantization(model, int(bits), group)
        self.info["kv_bits"] = int(bits)
        return int(bits)

    def _quantized(self, prompt_tokens: int, max_kv: int | None) -> bool:
        """Whether a request's KV cache is quantized (``kv_quant.use_quantized_kv``; decided once, at
        admission)."""
        if not self.kv_bits or max_kv is not None:
            return False
        from .kv_quant import use_quantized_kv

        return use_quantized_kv(prompt_tokens, self.kv_bits, int(self.config.get("quantized_kv_start") or 0))

    def _prefix_cache(self) -> PrefixCache | None:
        """The prefix cache (RAM within ``prompt_cache_bytes``; on disk too with ``prompt_cache_dir``), keyed
        by what changes this model's KV; None when both tiers are off."""
        ram = int(self.config.get("prompt_cache_bytes") or 0)
        folder = self.config.get("prompt_cache_dir")
        if ram <= 0 and not folder:
            return None
        settings = {k: self.info.get(k) for k in ("dtype", "quantization", "quantized_on_load")}
        settings.update({k: self.config.get(k) for k in ("kv_bits", "kv_group_size", "quantized_kv_start")})
        key = model_key(self.spec.path, settings)
        disk = None
        if folder:
            from .prefix_disk import DiskPrefixStore

            disk = DiskPrefixStore(folder, int(self.config.get("prompt_cache_disk_bytes") or 0), key)
        return PrefixCache(key, ram, max_entries=PROMPT_CACHE_MAX_ENTRIES, disk=disk)

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
        if self._cache is not None:
            self._cache.close()  # pending disk writes finish
        self.model = self.tokenizer = self._cache = None

    def clear_cache(self) -> None:
        if self._cache is not None:
            self._cache.clear()

    @property
    def cache_stats(self) -> dict[str, Any]:
        if self._cache is None:
            return {"entries": 0, "bytes": 0, "hits": self.cache_hits}
        return {**self._cache.stats(), "hits": self.cache_hits}

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
        return int(self.config["max_batch_size"])  # the provider fills it in (its default: abstractllm.params)

    def _ensure_batch(self, max_kv: int | None, quantized: bool = False) -> bool:
        """The BatchGenerator for ``max_kv`` and a quantized or full-precision KV cache (one cache kind per
        batch): made when needed; False when the current batch has another and still runs requests (this one
        waits for it to drain)."""
        from mlx_lm.generate import BatchGenerator

        shape = (max_kv, self.capacity, int(self.config["prefill_step_size"]), quantized)
        if self._batch is not None and self._batch_kv == shape:
            return True
        if self._by_uid or self._deferred:
            return False
        self.reset()
        self._batch = BatchGenerator(
            self.model, max_tokens=default_of("max_tokens"), stop_tokens=[[e] for e in self.tokenizer.eos_token_ids],
            completion_batch_size=self.capacity, prefill_batch_size=self.capacity,
            prefill_step_size=int(self.config["prefill_step_size"]), max_kv_size=max_kv,
        )
        self._batch_kv = shape
        return True

    def admit(self, req: "EngineRequest") -> bool:
        plan = self._plan(req)
        if plan is None:
            return False
        if self._leader_for(plan) is not None:  # another request is computing this prefix: join from it
            self._deferred.append(plan)
            self._states[req] = plan.state
        else:
            self._insert(plan)
        return True

    def _plan(self, req: "EngineRequest") -> "_Plan | None":
        """Everything about ``req`` but its cache: the prompt ids and their message bounds, the checks
        (context window, memory), the sampler and logits processors, the output pipeline. None: the current
        batch has another KV-cache kind (it waits)."""
        params = req.params
        self.check_params(params)
        tools = active_tools(req)
        tools_json = [t.to_openai() for t in tools] if tools else None
        kwargs = template_kwargs(self.reasoning_format, params, is_constrained(req), str(self.config.get("model") or self.spec.path))
        prompt_ids = self.encode_messages(req.request.messages, tools_json, kwargs)
        if not prompt_ids:
            raise InvalidParameterError("The prompt is empty after templating.", param="prompt")
        check_context_window(len(prompt_ids), params)
        max_kv = params.get("max_kv_size")
        quantized = self._quantized(len(prompt_ids), max_kv)
        if not self._ensure_batch(max_kv, quantized):
            return None
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
        req.pipeline.hidden = self.hidden
        use_cache = self._cache is not None and max_kv is None
        bounds = self._bounds(req.request.messages, tools_json, kwargs, prompt_ids) if use_cache else {}
        state = _Request(req, -1, prompt_ids, len(prompt_ids), 0, reply_detokenizer(self.tokenizer),
                         int(params.get("top_logprobs") or 0) if params.get("logprobs") else -1, in_batch=False)
        return _Plan(state, bounds, use_cache, int(params["max_tokens"]), make_request_sampler(params), processors,
                     quantized)

    def _bounds(self, messages: list[Message], tools: list[Any] | None, kwargs: dict[str, Any],
                prompt_ids: list[int]) -> dict[int, str]:
        """Where this prompt's KV is worth a snapshot (``prefix_cache.message_bounds``), with the snapshot's
        kind (``system`` / ``user``: they outlive whole-reply entries)."""
        if not self.tokenizer.has_chat_template or (self._trimmable and (not messages or messages[0].role != "system")):
            return {}
        extra = {**kwargs, **({"tools": tools} if tools else {})}

        def render(msgs: list[Any], gen: bool) -> list[int]:
            chat = [{"role": "user", "content": ""} if m is None else chat_dict(m) for m in msgs]
            ids = self.tokenizer.apply_chat_template(chat, add_generation_prompt=gen, **extra)
            return list(ids["input_ids"] if isinstance(ids, dict) else ids)

        # plain attention: a whole-reply entry serves every shorter prefix, so only the system prompt's end is
        # worth a snapshot (another conversation, or a concurrent request, starts from it); each costs a pass
        bounds = message_bounds(render, messages, prompt_ids, lambda m: m.role == "system",
                                system_only=self._trimmable)
        first = bounds[0] if bounds and messages and messages[0].role == "system" else None
        return {b: "system" if b == first else "user" for b in bounds}

    def _variant(self, quantized: bool) -> str:
        """The prefix-cache variant of a request's KV layout: with ``kv_bits``, the requests below
        ``quantized_kv_start`` keep full-precision caches, apart from the quantized ones."""
        return "full" if self.kv_bits and not quantized else ""

    def _leader_for(self, plan: "_Plan") -> "_Request | None":
        """An admitted request still prefilling a prefix this one shares up to one of its snapshot bounds:
        this one waits for that snapshot instead of computing the same tokens again."""
        if not plan.use_cache or not self._cache.in_ram:
            return None
        ids = plan.state.prompt_ids
        for st in self._by_uid.values():
            if st.variant != self._variant(plan.quantized):
                continue
            for b in st.pending:
                if b < len(ids) and st.prompt_ids[:b] == ids[:b]:
                    return st
        return None

    def _insert(self, plan: "_Plan") -> None:
        """``plan``'s request into the batch: from the longest cached prefix, in segments that end at its
        snapshot bounds."""
        st = plan.state
        prompt_ids = st.prompt_ids
        variant = self._variant(plan.quantized)
        cache, cached = self._cache.fetch(prompt_ids, variant) if plan.use_cache else (None, 0)
        if cache is not None and self.kv_bits and _quantized_kv(cache) != plan.quantized:
            cache, cached = None, 0  # never another KV layout's entry (a batch holds one kind)
        if cache is None and plan.quantized:
            from .kv_quant import make_quantized_cache

            cache = make_quantized_cache(self.model, self.kv_bits, int(self.config["kv_group_size"]))
        rest = prompt_ids[cached:]
        cuts = [b for b in sorted(plan.bounds) if cached < b < len(prompt_ids)]
        segments = [prompt_ids[a:b] for a, b in zip([cached, *cuts], [*cuts, len(prompt_ids)])]
        self.cache_lookups += plan.use_cache
        self.cache_hits += cached > 0
        if self._cache is not None:
            self._cache.prefill_tokens += len(rest)
        (uid,) = self._batch.insert_segments(
            [segments], max_tokens=[plan.max_tokens], caches=[cache], all_tokens=[list(prompt_ids[:cached])],
            samplers=[plan.sampler], logits_processors=[plan.processors],
        )
        st.uid, st.computed, st.cached, st.in_batch = uid, len(rest), cached, True
        st.pending = set(cuts)
        st.kinds = plan.bounds
        st.variant = variant
        self._by_uid[uid] = self._states[st.req] = st

    def _insert_ready(self) -> None:
        """Deferred requests whose shared prefix is now cached (or whose leader left) join the batch."""
        for plan in list(self._deferred):
            if self._leader_for(plan) is None:
                self._deferred.remove(plan)
                self._insert(plan)

    def _snapshot(self, prompt_responses: list[Any]) -> None:
        """Store the KV cache of each request that just finished prefilling up to one of its bounds."""
        due = []
        for r in prompt_responses:
            st = self._by_uid.get(r.uid)
            if st is not None and r.end_of_segment and st.cached + int(r.progress[0]) in st.pending:
                due.append(r.uid)
        if not due:
            return
        for uid, (cache, tokens) in self._batch.extract_cache(due).items():
            st = self._by_uid[uid]
            st.pending.discard(len(tokens))
            self._cache.store(tokens, cache, st.kinds.get(len(tokens), "user"), st.variant)

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
        self._insert_ready()
        batch = self._batch
        batch.prefill_step_size = self._chunk_size()
        prompt_responses, responses = batch.next()
        self._snapshot(prompt_responses)
        out = []
        for r in responses:
            st = self._by_uid.get(r.uid)
            if st is None:
                continue
            req = st.req
            st.decoding = True
            st.pending.clear()
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
                self._store(r.all_tokens, r.prompt_cache, st)
            out.append((req, step))
        return out

    def _store(self, tokens: list[int] | None, cache: Any, st: _Request) -> None:
        """A finished request's cache, under its own KV layout's variant."""
        if self._cache is not None and tokens and cache is not None and st.req.params.get("max_kv_size") is None:
            self._cache.store(tokens, cache, "assistant", st.variant)

    def release(self, req: "EngineRequest", *, failed: bool = False) -> None:
        st = self._states.pop(req, None)
        self._deferred = [p for p in self._deferred if p.state.req is not req]
        if st is None or not st.in_batch:
            return
        st.in_batch = False
        self._by_uid.pop(st.uid, None)
        if self._batch is None:
            return
        caches = self._batch.remove([st.uid], return_prompt_caches=not failed)
        if not failed and st.uid in caches:
            cache, tokens = caches[st.uid]
            self._store(tokens, cache, st)

    def reset(self) -> None:
        self._by_uid.clear()
        self._states.clear()
        self._deferred.clear()
        if self._batch is not None:
            try:
                self._batch.close()
            finally:
                self._batch, self._batch_kv = None, None
