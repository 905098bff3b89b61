"""``MLXProvider``: local text models through mlx-lm and vision models through mlx-vlm, served by one
batching engine per loaded model.

Request flow: ``generate`` (base) validates and normalizes on the caller's thread and submits the request
to the provider's ``Engine`` (``engine.py``); the engine, a job on this provider's worker thread, loads
the model if needed (``loading.load_adapter``: memory guard first), and its ``Scheduler`` admits the
request into the batch (the adapter templates it, looks up the prompt cache, checks its memory) and steps
the batch; each request's tokens become ``Response`` chunks in its own ``RequestPipeline`` and reach the
caller through its ``ChunkStream``.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from ...enums import ModelCapability, ModelParameter
from ...exceptions import InvalidParameterError, UnsupportedFeatureError
from ...params import LOCAL, RELOAD_KEYS, defaults, provider_keys  # RELOAD_KEYS: re-exported
from ...types import Capabilities, GenerationRequest
from ..base import BaseProvider
from ..worker import CancelToken, ChunkStream
from .engine import Engine, EngineBase, convert_backend_error
from .loading import clear_streams, load_adapter
from .memory import available_bytes
from .source import ModelSpec, inspect_model, resolve_model
from .weights import quantize_bits

__all__ = ["MLXProvider", "RELOAD_KEYS"]


def _backend_call(fn: Callable[[], Any]) -> Any:
    """``fn()``, its backend exceptions converted into the tree (``convert_backend_error``)."""
    try:
        return fn()
    except Exception as exc:
        converted = convert_backend_error(exc)
        if converted is exc:
            raise
        raise converted from exc

P = ModelParameter
_TEXT_CAPS = frozenset({
    ModelCapability.TEXT, ModelCapability.STREAMING, ModelCapability.ASYNC, ModelCapability.SYSTEM_PROMPT,
    ModelCapability.CHAT_HISTORY, ModelCapability.STOP_SEQUENCES, ModelCapability.SEED,
    ModelCapability.PROMPT_CACHE, ModelCapability.QUANTIZATION, ModelCapability.PARALLEL_INFERENCE,
})
#: config-only keys whose defaults are filled in at creation (what the engine and the adapters read)
_CONFIG_DEFAULTS = ("dtype", "device", "prompt_cache_bytes", "prefill_step_size", "max_batch_size",
                    "max_queue_size", "prefill_chunk_size", "kv_group_size", "quantized_kv_start",
                    "prompt_cache_disk_bytes")


def _has_llguidance() -> bool:
    import importlib.util

    return importlib.util.find_spec("llguidance") is not None


def _vocab(path: Any) -> dict[str, int]:
    """The vocabulary in ``tokenizer.json`` (mlx-lm falls back to it when the template names no format)."""
    import json

    try:
        data = json.loads((path / "tokenizer.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    vocab = dict((data.get("model") or {}).get("vocab") or {})
    vocab.update({t["content"]: t["id"] for t in data.get("added_tokens") or [] if "content" in t})
    return vocab


class MLXProvider(BaseProvider):
    """Runs MLX models locally. ``create_llm("mlx", model="path/or/org/repo", **config)``.

    Config (all optional but ``model``): generation defaults (``max_tokens``, ``temperature``, ``top_p``,
    ``top_k``, ``min_p``, the penalties, ``seed``, ``stop``, ...), loading (``quantize``, ``dtype``,
    ``device``, ``memory_limit``, ``revision``, ``cache_dir``, ``trust_remote_code``), the prompt cache
    (``prompt_cache_bytes``), batching (``max_batch_size``, ``max_queue_size``, ``prefill_step_size``,
    ``prefill_chunk_size``) and vision (``max_image_pixels``, ``video_fps``, ``video_max_frames``, ...).
    """

    name = "mlx"
    #: derived from abstractllm.params: local keys accepted; remote-only 1.x keys accepted with a warning
    accepted_config, ignored_config = provider_keys(LOCAL)
    #: True on the provider that shards the model over mlx.launch's processes (``distributed_provider.py``)
    distributed_capable = False

    def __init__(self, config: dict[Any, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._spec: ModelSpec | None = None
        self._adapter: Any = None
        self._estimate: Any = None
        self._reload = False
        self._engine: EngineBase | None = None
        self._engine_lock = threading.Lock()
        self.load_time_s: float | None = None

    def _normalize_config(self, config: dict[str, Any]) -> dict[str, Any]:
        if not config.get("model"):
            raise InvalidParameterError(
                "The MLX provider needs a model: create_llm('mlx', model='mlx-community/Qwen3-0.6B-4bit') "
                "or a local folder.", param="model")
        flags = [bits for key, bits in (("load_in_4bit", 4), ("load_in_8bit", 8)) if config.get(key)]
        if len(flags) > 1 or (flags and config.get("quantize") not in (None, flags[0])):
            raise InvalidParameterError(
                "load_in_4bit, load_in_8bit and quantize say different things: give one of them.", param="quantize")
        for name in _CONFIG_DEFAULTS:
            config.setdefault(name, defaults([name])[name])
        if config.get("distributed") and not self.distributed_capable:
            raise UnsupportedFeatureError(
                "distributed is chosen when the provider is created, under mlx.launch: create_llm('mlx', "
                "model=..., distributed='tensor'); neither MLXProvider(...) nor update_config can turn it on.",
                feature="distributed")
        return config

    def _config_changed(self, keys: set[str]) -> None:
        adapter = self._adapter
        if adapter is not None:  # the loaded model reads the new values (memory_limit, batch sizes...)
            adapter.config = self.config
        if keys & RELOAD_KEYS:
            self._spec = None  # resolved and inspected again on next use
            self._reload = True  # the engine unloads the old model before it serves the next request
        engine = self._engine
        if engine is not None:
            engine.max_batch_size = int(self.config["max_batch_size"])
            engine.max_queue_size = int(self.config["max_queue_size"])

    # ------------------------------------------------------------------ model
    @property
    def spec(self) -> ModelSpec:
        """The inspected model (resolved and read on first use; no weights loaded)."""
        if self._spec is None:
            path = resolve_model(self.config["model"], self.config.get("revision"),
                                 trust_remote_code=bool(self.config.get("trust_remote_code")),
                                 cache_dir=self.config.get("cache_dir"))
            self._spec = inspect_model(path)
        return self._spec

    @property
    def is_loaded(self) -> bool:
        return self._adapter is not None

    def get_capabilities(self) -> Capabilities:
        """Decided from the model's ``config.json`` (never its name): every model has the text ones;
        vision models add ``VISION`` (and ``MULTI_IMAGE``, ``VIDEO`` where mlx-vlm's family takes them);
        ``MAX_TOKENS`` is the context length the config declares."""
        spec = self.spec
        caps = set(_TEXT_CAPS)
        if spec.kind == "vision":
            caps |= self._vision_capabilities()
        if self._tool_format_name() is not None:
            caps |= {ModelCapability.FUNCTION_CALLING, ModelCapability.TOOL_USE}
        if _has_llguidance():
            caps.add(ModelCapability.JSON_MODE)
        return Capabilities(caps, max_tokens=spec.context_length)

    def _vision_capabilities(self) -> set[ModelCapability]:
        """The loaded adapter's, else mlx-vlm's answer (asked on a thread of its own: ``on_own_thread``)."""
        caps = getattr(self._adapter, "caps", None)
        if caps is not None:
            return set(caps)
        spec = self.spec
        cached = getattr(spec, "_vision_caps", None)
        if cached is None:
            from .backend import on_own_thread
            from .vision import vision_capabilities

            cached = spec._vision_caps = on_own_thread(vision_capabilities, spec)  # type: ignore[attr-defined]
        return set(cached)

    def _tool_format_name(self) -> str | None:
        """The model's tool-call format: the loaded tokenizer's, else what mlx-lm / mlx-vlm infer from
        its chat template (asked once)."""
        adapter = self._adapter
        if adapter is not None:
            fmt = getattr(adapter, "tool_format", None)
            return fmt.name if fmt is not None else None
        spec = self.spec
        cached = getattr(spec, "_tool_format", False)
        if cached is False:
            from .backend import import_backend, on_own_thread
            from .source import read_chat_template
            from .toolcalls import tool_format_name

            def infer() -> str | None:
                import_backend("mlx_vlm.tools" if spec.kind == "vision" else "mlx_lm.tokenizer_utils")
                return tool_format_name(spec.kind, read_chat_template(spec.path), lambda: _vocab(spec.path))

            cached = on_own_thread(infer)  # it imports mlx-lm / mlx-vlm: never on the caller's thread
            spec._tool_format = cached  # type: ignore[attr-defined]
        return cached

    def _worker_on_exit(self) -> Callable[[], None]:
        return clear_streams

    def _load_on_worker(self) -> Any:
        if self._reload:
            self._reload = False
            self._unload_on_worker()
        if self._adapter is None:
            self._adapter, self._estimate, self.load_time_s = load_adapter(self.spec, self.config)
        return self._adapter

    def load(self) -> "MLXProvider":
        """Load the model now (otherwise the first generation loads it). Returns self."""
        self.worker.call(self._load_on_worker)
        return self

    def _on_worker_if_started(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the worker (between two engine steps when it is busy); nothing to do if no worker
        was started. The state ``fn`` looks at is read on the worker, never from the caller's thread."""
        worker = self._worker
        if worker is None or worker.thread is None or worker.closed:
            return None
        engine = self._engine
        return engine.call(fn) if engine is not None else worker.call(fn)

    def _unload_on_worker(self) -> None:
        import gc

        if self._adapter is None:
            return
        self._adapter.unload()
        self._adapter = None
        gc.collect()
        import mlx.core as mx

        mx.clear_cache()

    def unload(self) -> None:
        """Free the model's memory (weights, prompt cache, MLX buffer cache); the next call reloads it.
        Waits for the requests in flight to finish."""
        worker = self._worker
        if worker is not None and worker.thread is not None and not worker.closed:
            worker.call(self._unload_on_worker)

    def _release(self) -> None:
        self.unload()

    def clear_cache(self) -> None:
        """Drop the prompt (KV) cache and MLX's buffer cache (between two steps of a busy batch)."""

        def _clear() -> None:
            if self._adapter is None:
                return
            import mlx.core as mx

            self._adapter.clear_cache()
            mx.clear_cache()

        self._on_worker_if_started(_clear)

    # ------------------------------------------------------------------ the engine
    @property
    def engine(self) -> EngineBase:
        """The batching engine of this provider (made with the worker, on first use)."""
        with self._engine_lock:
            if self._engine is None:
                self._engine = Engine(
                    self.worker, model=self.config["model"], max_batch_size=int(self.config["max_batch_size"]),
                    max_queue_size=int(self.config["max_queue_size"]), adapter_for_run=self._load_on_worker,
                    convert=convert_backend_error, reload_pending=lambda: self._reload)
            return self._engine

    def _chunks(self, request: GenerationRequest, cancel: CancelToken, *, loop: Any = None,
                whole: bool = False) -> ChunkStream:
        """The primitive: ``request`` submitted to the engine at once (a full queue raises here, on the
        caller's thread), its chunks carried back by a ``ChunkStream`` to a reader on ``loop`` (``None``: a
        synchronous one). A whole reply is the same chunks, folded by the caller."""
        engine = self.engine
        return ChunkStream(lambda emit: engine.submit(request, emit, cancel), cancel, loop=loop, eager=True)

    def get_stats(self) -> dict[str, Any]:
        adapter = self._adapter
        hits, lookups = (adapter.cache_hits, adapter.cache_lookups) if adapter is not None else (0, 0)
        engine = self._engine
        if engine is None:
            return self._stats.as_dict(cache_hits=hits, cache_lookups=lookups)
        return engine.stats_dict(hits, lookups)

    def clear_stats(self) -> None:
        if self._engine is not None:
            self._engine.stats.clear()
        adapter = self._adapter
        if adapter is not None:
            adapter.cache_hits = adapter.cache_lookups = 0

    # ------------------------------------------------------------------ information
    def get_model_info(self) -> dict[str, Any]:
        """What is known about the model: ``model_name``, ``device``, ``dtype``, ``quantization``,
        ``architecture``, ``max_seq_length``, ``vocab_size``, ``num_parameters``, ``capabilities`` (and
        more: the folder, the kind, sizes, the prompt cache once loaded)."""
        import sys

        spec = self.spec
        adapter = self._adapter
        mx = sys.modules.get("mlx.core")
        info: dict[str, Any] = {
            "provider": self.name,
            "model": self.config["model"],
            "model_name": spec.path.name if spec.path.name else self.config["model"],
            "path": str(spec.path),
            "kind": spec.kind,
            "model_type": spec.model_type,
            "architecture": (spec.config.get("architectures") or [spec.model_type])[0],
            "device": str(mx.default_device()) if mx is not None and adapter is not None else self.config["device"],
            "dtype": (adapter.info.get("dtype") if adapter is not None else None) or self.config["dtype"],
            "weight_bytes": spec.weight_bytes,
            "num_parameters": (adapter.info.get("num_parameters") if adapter is not None else None) or spec.float_params,
            "parameters": spec.float_params,
            "quantization": spec.quantization,
            "quantize_on_load": None if spec.is_quantized else quantize_bits(self.config),
            "max_seq_length": spec.context_length,
            "context_length": spec.context_length,
            "vocab_size": spec.vocab_size,
            "has_chat_template": spec.has_chat_template,
            "loaded": self.is_loaded,
            "capabilities": sorted(str(c) for c in self.get_capabilities() if c is not ModelCapability.MAX_TOKENS),
            "max_batch_size": int(self.config["max_batch_size"]),
        }
        if adapter is not None:
            info["estimated_memory_bytes"] = self._estimate.total
            info["load_time_s"] = self.load_time_s
            info["prompt_cache"] = adapter.cache_stats
            info.update({k: v for k, v in adapter.info.items() if v is not None and k not in info})
            if adapter.info.get("quantization") and not info["quantization"]:
                info["quantization"] = adapter.info["quantization"]
        return info

    def thinking_support(self) -> dict[str, Any] | None:
        """How the model reasons, read from its files: ``{"format": "think" | "harmony", "switch": bool
        (thinking=False works), "levels": bool (a level reaches the template's reasoning_effort), "opens":
        bool (the generation prompt opens the reasoning)}``; ``None`` when it has no reasoning format. Loads
        the model if needed."""
        adapter = self._adapter
        if adapter is None:
            try:
                adapter = self.engine.call(lambda: _backend_call(self._load_on_worker))
            except BaseException as exc:
                self._tagged(exc)
                raise
        fmt = getattr(adapter, "reasoning_format", None)
        if fmt is None:
            return None
        return {"format": fmt.kind, "switch": bool(fmt.switch), "levels": bool(fmt.effort),
                "opens": bool(fmt.starts_inside)}

    def count_tokens(self, prompt: str | None = None, system_prompt: str | None = None, files: Any = None,
                     tools: Any = None, *, messages: Any = None, **params: Any) -> int:
        """The prompt's length in tokens, as a generation with the same arguments would see it: the
        conversation through the model's chat template (the tools included); for a vision model, its images
        and videos expanded to their vision tokens. Loads the model if needed; nothing is generated. Runs
        on the worker between two steps of a busy batch."""
        from .constrain import active_tools

        request = self._prepare(prompt, system_prompt, files, messages, params, tools)

        def count() -> int:
            adapter = self._adapter if self._adapter is not None else self._load_on_worker()
            if adapter.kind == "text":
                tools_shown = active_tools(request)
                return len(adapter.encode_messages(request.messages,
                                                   [t.to_openai() for t in tools_shown] if tools_shown else None))
            return int(adapter.prepare(request).input_ids.shape[-1])

        try:
            return self.engine.call(lambda: _backend_call(count))
        except BaseException as exc:
            self._tagged(exc)
            raise

    def memory_status(self) -> dict[str, int]:
        """Process and MLX memory numbers (bytes)."""
        import os
        import sys

        import psutil

        out = {"process_rss": psutil.Process(os.getpid()).memory_info().rss}
        out["available"], _ = available_bytes(self.config.get("memory_limit"))
        mx = sys.modules.get("mlx.core")
        if mx is not None:  # allocator counters: safe to read from any thread, never wait for a generation
            out.update(mlx_active=mx.get_active_memory(), mlx_peak=mx.get_peak_memory(),
                       mlx_cache=mx.get_cache_memory())
        return out

    def runtime_info(self) -> dict[str, Any]:
        """``BaseProvider.runtime_info`` with MLX's numbers, read on the caller's thread without waiting for a
        generation (``mlx.core`` is never imported here): the device once the model is loaded, the OpenBLAS status
        (``fast_blas_status``) once MLX is imported, MLX's allocator counters (``memory``: ``mlx_active``,
        ``mlx_peak``, ``mlx_cache``, ``None`` before MLX is imported) and, on a GPU with its own memory, its size."""
        import sys

        info = super().runtime_info()
        mx = sys.modules.get("mlx.core")
        counters: dict[str, int | None] = {"mlx_active": None, "mlx_peak": None, "mlx_cache": None}
        device = blas = None
        if mx is not None:
            from .backend import fast_blas_status

            try:  # process-wide counters: safe to read from any thread
                counters = {"mlx_active": int(mx.get_active_memory()), "mlx_peak": int(mx.get_peak_memory()),
                            "mlx_cache": int(mx.get_cache_memory())}
                if self.is_loaded:
                    device = str(mx.default_device().type).replace("DeviceType.", "")
                blas = str(fast_blas_status())
            except Exception:
                pass
        info.update(loaded=self.is_loaded, device=device, blas=blas)
        info["memory"].update(counters)
        memory = info["device_memory"]
        active, cache = counters["mlx_active"], counters["mlx_cache"]
        memory.update(allocated=active, reserved=None if active is None else active + (cache or 0),
                      peak=counters["mlx_peak"])
        if device == "gpu":  # Metal shares the machine's RAM; a CUDA GPU has its own
            try:
                metal = getattr(mx, "metal", None)
                unified = bool(metal is not None and metal.is_available())
                size = mx.device_info() if hasattr(mx, "device_info") else {}
                size = size.get("memory_size") or size.get("total_memory")
                if size:
                    memory.update(total=int(size), unified=unified,
                                  available=memory["available"] if unified else None)
            except Exception:
                pass
        return info
