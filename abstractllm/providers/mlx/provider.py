"""``MLXProvider``: local text models through mlx-lm and vision models through mlx-vlm.

Request flow: ``generate`` (base) validates and normalizes on the caller's thread, then ``_stream`` runs
on this provider's worker thread: load the model if needed (memory guard first), template the prompt,
let the adapter produce ``Step``s, and ``run_pipeline`` turn them into ``Response`` chunks.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterator

from ...enums import ModelCapability, ModelParameter
from ...exceptions import (
    AbstractLLMError,
    GenerationError,
    InvalidParameterError,
    ModelLoadError,
    UnsupportedFeatureError,
)
from ...params import defaults
from ...types import Capabilities, GenerationRequest, Response, Usage
from ..base import BaseProvider
from ..worker import CancelToken
from .backend import import_backend, on_gpu as _on_gpu
from .memory import available_bytes, check_load_memory, estimate_load_bytes
from .pipeline import run_pipeline
from .source import ModelSpec, inspect_model, resolve_model
from .text import quantize_bits

__all__ = ["MLXProvider"]

P = ModelParameter
_TEXT_CAPS = frozenset({
    ModelCapability.TEXT, ModelCapability.STREAMING, ModelCapability.ASYNC, ModelCapability.SYSTEM_PROMPT,
    ModelCapability.CHAT_HISTORY, ModelCapability.STOP_SEQUENCES, ModelCapability.SEED,
    ModelCapability.PROMPT_CACHE, ModelCapability.QUANTIZATION,
})
#: keys a remote provider uses; accepted here as documented no-ops so that one config serves every provider
_IGNORED = frozenset(str(p) for p in (
    P.API_KEY, P.BASE_URL, P.ORGANIZATION, P.TIMEOUT, P.REQUEST_TIMEOUT, P.MAX_RETRIES, P.RETRY_COUNT, P.PROXY,
    P.USER, P.IMAGE_DETAIL, P.DEVICE_MAP, P.TRUNCATION_STRATEGY, P.CONTENT_FILTER, P.MODERATION,
    P.LOGGING_ENABLED,
))
#: keys whose change (update_config) makes the next call reload the model
_RELOAD_KEYS = frozenset(str(p) for p in (
    P.MODEL, P.REVISION, P.TRUST_REMOTE_CODE, P.QUANTIZE, P.LOAD_IN_4BIT, P.LOAD_IN_8BIT, P.DTYPE, P.DEVICE,
    P.CACHE_DIR, P.PROMPT_CACHE_BYTES,
))


def _context_length(config: dict[str, Any]) -> int | None:
    for cfg in (config.get("text_config") or {}, config):
        for key in ("max_position_embeddings", "max_sequence_length", "seq_length", "n_positions"):
            value = cfg.get(key) if isinstance(cfg, dict) else None
            if isinstance(value, int) and value > 0:
                return value
    return None


def _set_device(mx: Any, device: str) -> None:
    """Apply the ``device`` config on the worker: MLX's default device (one per process)."""
    if device == "auto":
        return
    target = mx.cpu if device == "cpu" else mx.gpu
    if device == "gpu" and not mx.is_available(mx.gpu):
        raise UnsupportedFeatureError(
            "device='gpu' was asked for, but this MLX build has no GPU backend (Apple Silicon has Metal; on "
            "Linux install mlx[cuda12] for NVIDIA GPUs). Use device='cpu' or 'auto'.", provider="mlx")
    if mx.default_device() != target:
        mx.set_default_device(target)


def _clear_streams() -> None:
    """Runs on the worker thread as it stops: MLX aborts the process at exit otherwise (mlx >= 0.32)."""
    import sys

    mx = sys.modules.get("mlx.core")
    if mx is not None:  # only if this process ever used MLX
        mx.clear_streams()


class MLXProvider(BaseProvider):
    """Runs MLX models locally. ``create_llm("mlx", model="path/or/org/repo", **config)``.

    Config (all optional but ``model``): generation defaults (``max_tokens``, ``temperature``, ``top_p``,
    ``top_k``, ``min_p``, ``repetition_penalty``, ``repetition_context_size``, ``seed``, ``stop``,
    ``max_kv_size``), loading (``quantize``, ``dtype``, ``memory_limit``, ``revision``,
    ``trust_remote_code``, ``prompt_cache_bytes``, ``prefill_step_size``) and vision
    (``max_image_pixels``, ``video_fps``, ``video_max_frames``, ``image_fetch_timeout``, ``max_image_bytes``).
    """

    name = "mlx"
    ignored_config = _IGNORED
    accepted_config = frozenset(str(p) for p in ModelParameter) - _IGNORED

    def __init__(self, config: dict[Any, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._spec: ModelSpec | None = None
        self._adapter: Any = None
        self._estimate: Any = None
        self._reload = False
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
        for name in ("dtype", "device", "prompt_cache_bytes", "prefill_step_size"):
            config.setdefault(name, defaults([name])[name])
        return config

    def _config_changed(self, keys: set[str]) -> None:
        if keys & _RELOAD_KEYS:
            self._spec = None  # resolved and inspected again on next use
            self._reload = True  # the worker unloads the old model before the next generation

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
        vision models add ``VISION`` (and ``MULTI_IMAGE``, ``VIDEO`` where the family takes them);
        ``MAX_TOKENS`` is the context length the config declares."""
        spec = self.spec
        caps = set(_TEXT_CAPS)
        if spec.kind == "vision":
            from .vision import vision_capabilities

            caps |= vision_capabilities(spec)
        return Capabilities(caps, max_tokens=_context_length(spec.config))

    def _worker_on_exit(self) -> Callable[[], None]:
        return _clear_streams

    def _load_on_worker(self) -> None:
        if self._reload:
            self._reload = False
            self._unload_on_worker()
        if self._adapter is not None:
            return
        mx = import_backend("mlx.core")
        import_backend("mlx_lm")
        spec = self.spec
        _set_device(mx, self.config.get("device") or "auto")
        on_gpu = _on_gpu()
        from .text import TextAdapter, float_itemsize_for

        bits = quantize_bits(self.config)
        if bits and spec.kind == "vision":
            raise UnsupportedFeatureError(
                f"quantize={bits} on load is supported for text models only; {spec.path.name!r} is a vision "
                "model: use a pre-quantized version of it (e.g. an mlx-community '-4bit' repo)."
            )
        # The float parts of a quantized model (scales, biases, norms) are cast too.
        itemsize = float_itemsize_for(self.config["dtype"], spec, on_gpu)
        estimate = estimate_load_bytes(spec, quantize_bits=bits, float_itemsize=itemsize)
        check_load_memory(spec, estimate, self.config.get("memory_limit"))
        t0 = time.perf_counter()
        if spec.kind == "vision":
            import_backend("mlx_vlm")
            from .vision import VisionAdapter

            adapter = VisionAdapter(spec, self.config, on_gpu)
        else:
            adapter = TextAdapter(spec, self.config, on_gpu)
        try:
            adapter.load()
        except AbstractLLMError:
            raise
        except Exception as exc:  # the one boundary for load failures inside mlx / mlx-lm / mlx-vlm
            raise ModelLoadError(f"Could not load {str(spec.path)!r}: {type(exc).__name__}: {exc}") from exc
        self._adapter = adapter
        self._estimate = estimate
        self.load_time_s = time.perf_counter() - t0

    def load(self) -> "MLXProvider":
        """Load the model now (otherwise the first generation loads it). Returns self."""
        self.worker.call(self._load_on_worker)
        return self

    def _on_worker_if_started(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the worker after the jobs queued before it; nothing to do if none was started.
        (The state it looks at is checked inside ``fn``, on the worker, never from the caller's thread.)"""
        worker = self._worker
        if worker is not None and worker.thread is not None and not worker.closed:
            worker.call(fn)

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
        """Free the model's memory (weights, prompt cache, MLX buffer cache); the next call reloads it."""
        self._on_worker_if_started(self._unload_on_worker)

    def _release(self) -> None:
        self.unload()

    def clear_cache(self) -> None:
        """Drop the prompt (KV) cache and MLX's buffer cache."""

        def _clear() -> None:
            if self._adapter is None:
                return
            import mlx.core as mx

            self._adapter.clear_cache()
            mx.clear_cache()

        self._on_worker_if_started(_clear)

    def get_model_info(self) -> dict[str, Any]:
        spec = self.spec
        info: dict[str, Any] = {
            "provider": self.name,
            "model": self.config["model"],
            "path": str(spec.path),
            "kind": spec.kind,
            "model_type": spec.model_type,
            "weight_bytes": spec.weight_bytes,
            "parameters": spec.float_params,
            "quantization": spec.quantization,
            "quantize_on_load": None if spec.is_quantized else quantize_bits(self.config),
            "dtype": self.config["dtype"],
            "has_chat_template": spec.has_chat_template,
            "loaded": self.is_loaded,
            "capabilities": sorted(str(c) for c in self.get_capabilities() if c is not ModelCapability.MAX_TOKENS),
            "context_length": _context_length(spec.config),
        }
        if self._adapter is not None:
            info["estimated_memory_bytes"] = self._estimate.total
            info["load_time_s"] = self.load_time_s
            info["prompt_cache"] = self._adapter.cache_stats
            info.update({k: v for k, v in self._adapter.info.items() if v is not None})
        return info

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

    # ------------------------------------------------------------------ the primitive
    def _stream(self, request: GenerationRequest, cancel: CancelToken) -> Iterator[Response]:
        if cancel.cancelled:  # cancelled (e.g. by close()) while queued: do not load or generate
            yield Response(model=self.config["model"], finish_reason="cancelled", usage=Usage())
            return
        try:
            self._load_on_worker()
            t0 = time.perf_counter()
            steps = self._adapter.request_steps(request, cancel)
            yield from run_pipeline(
                steps, model=self.config["model"], stop=request.params.get("stop") or [], cancel=cancel,
                start_time=t0,
            )
        except AbstractLLMError:
            raise
        except (GeneratorExit, KeyboardInterrupt):
            raise
        except MemoryError as exc:
            from ...exceptions import MemoryLimitError

            raise MemoryLimitError(f"MLX ran out of memory during generation: {exc}") from exc
        except Exception as exc:
            raise GenerationError(f"MLX generation failed: {type(exc).__name__}: {exc}") from exc
