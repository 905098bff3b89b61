"""Text-only requests of a vision model, batched through mlx-lm on the vision model's own weights.

The vision adapter (mlx-vlm) serves one request at a time. Many vision checkpoints (Qwen2-VL, Qwen2.5-VL,
Qwen3-VL, Gemma 3, ...) have a model in mlx-lm too, which builds the language model and drops the vision
tower. When, for this checkpoint, the data says so, ``with_text_batching`` composes:

- ``RoutedAdapter``: the engine's one adapter. A request with no image or video anywhere in its
  conversation goes to the text adapter (mlx-lm's ``BatchGenerator``: batched with the other text
  requests); any other to the vision adapter (one at a time, stepped alongside the text batch). It reports
  the text adapter's capacity; a media request that finds the vision adapter busy waits (``admit`` False).
- ``SharedTextAdapter``: a ``TextAdapter`` whose model is mlx-lm's class for the config, with every
  parameter pointing at the mlx-vlm model's array of the same name (no second copy of the weights), and
  whose prompt ids are exactly mlx-vlm's (the vision adapter's own template and processor, no media), so
  greedy output equals raw mlx-vlm token for token; its text is mlx-vlm's streaming detokenizer's. Its
  tool-call format, reasoning format, hidden tokens and grammar compiler are the vision adapter's, so both
  paths parse and constrain alike.

The text path is used only when all of these hold (else the vision adapter serves everything, as before,
and ``info["text_batching"]`` says why): mlx-lm has a model for the config's ``model_type``; its parameter
names after mlx-lm's own ``sanitize`` are exactly the vision model's (same set, same shapes), and every one
of them *is* an array the vision model holds (a sanitize that transforms a weight would copy it); and a
probe, one short text prompt through both models, gives the same next-token logits.

On the text path a request is the text adapter's in every way: a seeded sample comes from its own random key
(the same tokens alone or batched, not mlx-vlm's for that seed), penalties see the whole prompt, and its prompt
cache is the text adapter's (the two caches share ``prompt_cache_bytes``; the text one gives way). While a
media request waits for the vision adapter, the requests behind it in the queue wait too (the engine's
admission stops at a refused request).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ...types import GenerationRequest, Message
from .adapter import ModelAdapter
from .text import TextAdapter

if TYPE_CHECKING:
    from .engine import EngineRequest
    from .pipeline import Step
    from .vision import VisionAdapter

__all__ = ["RoutedAdapter", "SharedTextAdapter", "shared_language_model", "with_text_batching", "is_text_only"]

log = logging.getLogger(__name__)


def is_text_only(request: GenerationRequest) -> bool:
    """No image or video anywhere in the conversation."""
    return not any(m.images or m.videos for m in request.messages)


# ---------------------------------------------------------------------------------------------- the model
def _mlx_lm_config(vision: "VisionAdapter") -> dict[str, Any]:
    """The checkpoint's config as mlx-lm reads it, with the language model's vocabulary size at the top level
    when only ``text_config`` declares it (mlx-lm's gemma3 otherwise assumes the real models' 262208)."""
    import copy

    try:
        from mlx_lm.utils import load_config

        config = load_config(vision.spec.path)
    except Exception:
        config = copy.deepcopy(vision.spec.config)
    text_cfg = config.get("text_config")
    if isinstance(text_cfg, dict) and "vocab_size" not in config and "vocab_size" in text_cfg:
        config["vocab_size"] = text_cfg["vocab_size"]
    return config


def shared_language_model(vision: "VisionAdapter") -> tuple[Any, str | None]:
    """mlx-lm's model for the vision checkpoint, its parameters the vision model's own arrays: ``(model,
    None)``, or ``(None, why not)``."""
    from mlx.utils import tree_flatten, tree_unflatten
    from mlx_lm.utils import _get_classes

    config = _mlx_lm_config(vision)
    model_type = config.get("model_type")
    try:
        model_class, args_class = _get_classes(config)
    except (ValueError, ImportError, KeyError, AttributeError) as exc:
        return None, f"mlx-lm has no model of type {model_type!r} ({exc})"
    try:
        model = model_class(args_class.from_dict(config))  # lazy: its own random init is never evaluated
        own = dict(tree_flatten(vision.model.parameters()))
        weights = model.sanitize(dict(own)) if hasattr(model, "sanitize") else dict(own)
        quant = config.get("quantization")
        if quant is None and config.get("quantization_config"):
            return None, "the checkpoint's quantization_config is not mlx's own 'quantization'"
        if quant is not None:
            _quantize_like(model, quant, weights)
    except Exception as exc:  # mlx-lm's class or sanitize does not fit this checkpoint
        return None, f"mlx-lm's {model_type!r} model does not fit the checkpoint ({type(exc).__name__}: {exc})"
    want = dict(tree_flatten(model.parameters()))
    missing, extra = sorted(set(want) - set(weights)), sorted(set(weights) - set(want))
    if missing or extra:
        return None, f"parameter names differ (mlx-lm only: {missing[:3]}, mlx-vlm only: {extra[:3]})"
    shapes = [k for k in want if tuple(want[k].shape) != tuple(weights[k].shape)]
    if shapes:
        k = shapes[0]
        return None, f"parameter shapes differ ({k}: mlx-lm {tuple(want[k].shape)}, mlx-vlm {tuple(weights[k].shape)})"
    ids = {id(v) for v in own.values()}
    copies = [k for k, v in weights.items() if id(v) not in ids]
    if copies:
        return None, f"mlx-lm's sanitize transforms {copies[0]} (sharing it would copy it)"
    model.update(tree_unflatten(list(weights.items())))
    model.eval()
    return model, None


def _quantize_like(model: Any, quant: dict[str, Any], weights: dict[str, Any]) -> None:
    """Quantize ``model``'s layers as the checkpoint's are (mlx-lm's ``load_model`` rule: the layers that
    have scales, per-layer settings where the config names the layer)."""
    import mlx.nn as nn

    try:
        from mlx_lm.utils import infer_quant_config
    except ImportError:  # older mlx-lm
        infer_quant_config = None

    def predicate(path: str, module: Any) -> Any:
        if path in quant and path not in ("group_size", "bits", "mode"):  # a per-layer setting (or False)
            return quant[path]
        if not hasattr(module, "to_quantized") or f"{path}.scales" not in weights:
            return False
        return infer_quant_config(path, module, weights) if infer_quant_config else True

    nn.quantize(model, group_size=quant["group_size"], bits=quant["bits"], mode=quant.get("mode", "affine"),
                class_predicate=predicate)


def _probe(vision: "VisionAdapter", model: Any) -> str | None:
    """None when mlx-vlm (as the vision adapter calls it) and ``model`` give the same next-token logits for a
    short text-only prompt; else why not."""
    import mlx.core as mx
    from mlx_vlm import stream_generate

    from .weights import float_itemsize

    prepared = vision.prepare(GenerationRequest([Message("user", "Hi")], {}))
    seen: list[Any] = []

    def capture(tokens: Any, logits: Any) -> Any:
        if not seen:
            seen.append(logits)
        return logits

    gen = stream_generate(vision.model, vision.processor, prepared.prompt, input_ids=prepared.input_ids,
                          pixel_values=None, mask=prepared.mask, max_tokens=1, temperature=0.0,
                          logits_processors=[capture], **prepared.extra)
    try:
        next(gen, None)
    finally:
        gen.close()
    if not seen:
        return "the probe got no logits from mlx-vlm"
    expected = seen[0].astype(mx.float32).reshape(-1)
    got = model(prepared.input_ids.reshape(1, -1))[:, -1, :].astype(mx.float32).reshape(-1)
    if expected.shape != got.shape:
        return f"the probe's logits differ in size (mlx-vlm {expected.shape}, mlx-lm {got.shape})"
    rel = float(mx.linalg.norm(expected - got) / mx.maximum(mx.linalg.norm(expected), 1e-6))
    tol = 1e-3 if float_itemsize(model) >= 4 else 5e-2
    if not rel <= tol:
        return f"the probe's next-token logits differ (relative error {rel:.2g} > {tol:g})"
    return None


def with_text_batching(vision: "VisionAdapter") -> ModelAdapter:
    """``RoutedAdapter`` over ``vision`` and a ``SharedTextAdapter`` where the checkpoint allows it (see the
    module docstring), else ``vision`` itself; ``info["text_batching"]`` says which and why."""
    import gc

    try:
        model, why = shared_language_model(vision)
        if model is not None:
            why = _probe(vision, model)
        if why is None:
            text = SharedTextAdapter(vision, model)
            text.load()
            routed = RoutedAdapter(vision, text)
            vision.info["text_batching"] = f"mlx-lm {type(model).__module__.rsplit('.', 1)[-1]} (shared weights)"
            return routed
    except Exception as exc:  # never worse than before: the vision adapter serves everything
        why = f"{type(exc).__name__}: {exc}"
    model = None
    gc.collect()
    log.info("Text-only requests of %s are served one at a time by mlx-vlm: %s", vision.spec.path, why)
    vision.info["text_batching"] = f"off: {why}"
    return vision


# ---------------------------------------------------------------------------------------------- adapters
class _Tool:
    """A tool given in OpenAI form, as ``GenerationRequest.tools`` holds them (``to_openai``)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self._spec = spec

    def to_openai(self) -> dict[str, Any]:
        return self._spec


class _VlmText:
    """mlx-lm's tokenizer with mlx-vlm's streaming detokenizer: a reply's text is what mlx-vlm gives for its
    ids (it drops incomplete UTF-8 where mlx-lm's writes a replacement character)."""

    def __init__(self, tokenizer: Any, processor: Any) -> None:
        self._wrapped, self._processor = tokenizer, processor

    def __getattr__(self, name: str) -> Any:
        if name in ("_wrapped", "_processor"):
            raise AttributeError(name)
        return getattr(self._wrapped, name)

    @property
    def detokenizer(self) -> Any:
        from mlx_vlm.tokenizer_utils import make_streaming_detokenizer

        return make_streaming_detokenizer(self._processor)


class SharedTextAdapter(TextAdapter):
    """A ``TextAdapter`` on a vision checkpoint: mlx-lm's model over the vision model's arrays, mlx-vlm's
    prompt ids, the vision adapter's formats (see the module docstring)."""

    def __init__(self, vision: "VisionAdapter", model: Any) -> None:
        super().__init__(vision.spec, vision.config, vision.on_gpu)
        self.vision = vision
        self._shared_model = model
        self._admitting: "EngineRequest | None" = None

    def _load_weights(self) -> tuple[Any, Any, dict[str, Any]]:
        from pathlib import Path

        from mlx_lm.utils import load_tokenizer

        vision = self.vision
        tok = getattr(vision.processor, "tokenizer", vision.processor)
        criteria = getattr(tok, "stopping_criteria", None) or getattr(vision.processor, "stopping_criteria", None)
        eos = list(getattr(criteria, "eos_token_ids", None) or vision.eos_ids)  # where mlx-vlm stops
        tokenizer = _VlmText(load_tokenizer(Path(self.spec.path), eos_token_ids=eos), vision.processor)
        model, self._shared_model = self._shared_model, None
        return model, tokenizer, dict(self.spec.config)

    def _cast_weights(self, model: Any) -> str | None:
        return self.vision.info.get("dtype")  # the vision model's arrays, as the vision adapter cast them

    def load(self) -> None:
        super().load()
        vision = self.vision  # one behaviour for both paths
        self.tool_format, self.reasoning_format = vision.tool_format, vision.reasoning_format
        self.hidden, self.grammars = vision.hidden, vision.grammars

    def admit(self, req: "EngineRequest") -> bool:
        self._admitting = req
        try:
            return super().admit(req)
        finally:
            self._admitting = None

    def encode_messages(self, messages: list[Message], tools: list[Any] | None = None,
                        template_kwargs: dict[str, Any] | None = None) -> list[int]:
        """mlx-vlm's prompt ids for a text-only conversation: the vision adapter's template and processor."""
        req = self._admitting
        if req is not None and req.request.messages is messages:
            request = req.request
        else:
            request = GenerationRequest(list(messages), {}, tools=[_Tool(t) for t in tools] if tools else None)
        prepared = self.vision.prepare(request, template_kwargs)
        return [int(t) for t in prepared.input_ids.reshape(-1).tolist()]


class RoutedAdapter(ModelAdapter):
    """One vision checkpoint, two paths: text-only requests batched (``text``), the others through mlx-vlm
    one at a time (``vision``). Anything else is the vision adapter's (``processor``, ``caps``, ``prepare``,
    ``tool_format``, ...)."""

    kind = "vision"

    def __init__(self, vision: "VisionAdapter", text: SharedTextAdapter) -> None:
        self.vision, self.text = vision, text
        super().__init__(vision.spec, vision.config, vision.on_gpu)
        self.info = vision.info
        self._routes: dict["EngineRequest", ModelAdapter] = {}
        self._media: "EngineRequest | None" = None

    def __getattr__(self, name: str) -> Any:
        if name in ("vision", "text"):
            raise AttributeError(name)
        return getattr(self.vision, name)

    # the two adapters read one config, and their counters add up
    @property  # type: ignore[override]
    def config(self) -> dict[str, Any]:
        return self.vision.config

    @config.setter
    def config(self, value: dict[str, Any]) -> None:
        self.vision.config = self.text.config = value

    @property  # type: ignore[override]
    def cache_hits(self) -> int:
        return self.vision.cache_hits + self.text.cache_hits

    @cache_hits.setter
    def cache_hits(self, value: int) -> None:
        self.vision.cache_hits, self.text.cache_hits = value, 0

    @property  # type: ignore[override]
    def cache_lookups(self) -> int:
        return self.vision.cache_lookups + self.text.cache_lookups

    @cache_lookups.setter
    def cache_lookups(self, value: int) -> None:
        self.vision.cache_lookups, self.text.cache_lookups = value, 0

    # ------------------------------------------------------------------ lifecycle
    def load(self) -> None:
        """Both are loaded when this is made (``with_text_batching``)."""

    def unload(self) -> None:
        self._routes.clear()
        self._media = None
        self.text.unload()
        self.vision.unload()

    def clear_cache(self) -> None:
        self.text.clear_cache()
        self.vision.clear_cache()

    @property
    def cache_stats(self) -> dict[str, int]:
        t, v = self.text.cache_stats, self.vision.cache_stats
        return {k: int(t.get(k, 0)) + int(v.get(k, 0)) for k in ("entries", "bytes", "hits")}

    def _trim_text_cache(self) -> None:
        """Both prompt caches together within ``prompt_cache_bytes`` (the text one gives way)."""
        cache = self.text._cache
        if cache is None:
            return
        room = max(0, int(self.config.get("prompt_cache_bytes") or 0) - self.vision.cache_stats["bytes"])
        if cache.nbytes > room:
            cache.trim_to(n_bytes=room)

    # ------------------------------------------------------------------ batching
    @property
    def capacity(self) -> int:
        return self.text.capacity

    def admit(self, req: "EngineRequest") -> bool:
        if is_text_only(req.request):
            if not self.text.admit(req):
                return False
            self._routes[req] = self.text
            return True
        if self._media is not None:  # one media request at a time: this one waits for it
            return False
        if not self.vision.admit(req):
            return False
        self._routes[req], self._media = self.vision, req
        return True

    def step(self) -> list[tuple["EngineRequest", "Step"]]:
        out: list[tuple["EngineRequest", "Step"]] = []
        if any(a is self.text for a in self._routes.values()):
            out += self.text.step()
            if any(step.finish_reason is not None for _, step in out):
                self._trim_text_cache()
        if self._media is not None:
            out += self.vision.step()
        return out

    def release(self, req: "EngineRequest", *, failed: bool = False) -> None:
        adapter = self._routes.pop(req, None)
        if adapter is None:
            return
        if req is self._media:
            self._media = None
        adapter.release(req, failed=failed)
        self._trim_text_cache()

    def cached_tokens(self, req: "EngineRequest") -> int:
        adapter = self._routes.get(req)
        return adapter.cached_tokens(req) if adapter is not None else 0

    def reset(self) -> None:
        self._routes.clear()
        self._media = None
        try:
            self.text.reset()
        finally:
            self.vision.reset()
