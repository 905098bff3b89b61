"""Which adapter serves a model: a small table, keyed on what the model is and what its configuration asks
for (``Needs``), read by ``loading.load_adapter``.

An entry (``AdapterEntry``) names the model kind it serves (``spec.kind``: ``"text"`` or ``"vision"``), the
features it provides, how to make it (unloaded) and, optionally, what follows its load (``then``: the vision
entry's gives a vision checkpoint its batched text-only path, ``vision_text.RoutedAdapter``, where mlx-lm
runs its language model on the same weights; else the vision adapter serves every request). A feature is
something a configuration asks for that the plain adapters do not do; ``register_feature`` names it and
says when a configuration asks for it. ``choose_adapter`` takes, among the entries of the model's kind that
provide every feature asked for, the one with the fewest features beyond those (the latest registered on a
tie); none: ``UnsupportedFeatureError``.

Adding an adapter (e.g. speculative decoding, a quantized KV cache): implement ``adapter.ModelAdapter``, then::

    register_feature("speculative", lambda config: bool(config.get("draft_model")))
    register_adapter(AdapterEntry("speculative-text", kind="text", provides=frozenset({"speculative"}),
                                  make=SpeculativeTextAdapter))

The distributed provider loads its ``distributed.ShardedTextAdapter`` itself (every rank together), outside
this table.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from ...exceptions import UnsupportedFeatureError
from .source import ModelSpec

if TYPE_CHECKING:
    from .adapter import ModelAdapter

__all__ = ["Needs", "AdapterEntry", "needs_of", "register_feature", "register_adapter", "choose_adapter",
           "adapter_entries"]


@dataclass(frozen=True)
class Needs:
    """What a model needs of its adapter: its ``kind`` and the ``features`` its configuration asks for."""

    kind: str
    features: frozenset[str] = frozenset()


@dataclass(frozen=True)
class AdapterEntry:
    """One adapter in the table (see the module docstring). ``make(spec, config, on_gpu)`` returns it
    unloaded; ``then(adapter)``, after its load, the adapter the engine uses."""

    name: str
    kind: str
    make: Callable[[ModelSpec, dict[str, Any], bool], "ModelAdapter"]
    provides: frozenset[str] = frozenset()
    then: Callable[["ModelAdapter"], "ModelAdapter"] | None = None


_LOCK = threading.Lock()
_FEATURES: dict[str, Callable[[dict[str, Any]], bool]] = {}
_ENTRIES: list[AdapterEntry] = []


def register_feature(name: str, asked: Callable[[dict[str, Any]], bool]) -> None:
    """Name a feature; ``asked(config)`` says whether a configuration asks for it."""
    with _LOCK:
        _FEATURES[name] = asked


def register_adapter(entry: AdapterEntry) -> None:
    """Add ``entry`` (one of the same name is replaced); a later entry wins a tie."""
    with _LOCK:
        _ENTRIES[:] = [e for e in _ENTRIES if e.name != entry.name] + [entry]


def adapter_entries() -> list[AdapterEntry]:
    """The table, in registration order."""
    with _LOCK:
        return list(_ENTRIES)


def needs_of(spec: ModelSpec, config: dict[str, Any]) -> Needs:
    """What ``spec`` loaded with ``config`` needs."""
    with _LOCK:
        features = frozenset(name for name, asked in _FEATURES.items() if asked(config))
    return Needs(spec.kind, features)


def choose_adapter(needs: Needs) -> AdapterEntry:
    """The entry that serves ``needs`` (see the module docstring)."""
    fits = [(len(e.provides - needs.features), -i, e) for i, e in enumerate(adapter_entries())
            if e.kind == needs.kind and needs.features <= e.provides]
    if not fits:
        asked = ", ".join(sorted(needs.features)) or "nothing more"
        raise UnsupportedFeatureError(f"No MLX adapter serves {needs.kind} models that ask for {asked}.",
                                      provider="mlx")
    return min(fits, key=lambda fit: fit[:2])[2]


# ---------------------------------------------------------------------------------------------- built in
def _text(spec: ModelSpec, config: dict[str, Any], on_gpu: bool) -> "ModelAdapter":
    from .text import TextAdapter

    return TextAdapter(spec, config, on_gpu)


def _vision(spec: ModelSpec, config: dict[str, Any], on_gpu: bool) -> "ModelAdapter":
    from .backend import import_backend

    import_backend("mlx_vlm")
    from .vision import VisionAdapter

    return VisionAdapter(spec, config, on_gpu)


def _with_text_path(adapter: "ModelAdapter") -> "ModelAdapter":
    from .vision_text import with_text_batching

    return with_text_batching(adapter)  # type: ignore[arg-type]


register_adapter(AdapterEntry("text", kind="text", make=_text))
register_adapter(AdapterEntry("vision", kind="vision", make=_vision, then=_with_text_path))
