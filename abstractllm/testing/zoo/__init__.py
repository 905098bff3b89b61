"""The zoo: one tiny model per real model family, built offline in about a second each.

    from abstractllm.testing.zoo import FAMILIES, build_family_model
    path = build_family_model("qwen3", "/tmp/qwen3")                       # random weights
    path = build_family_model("qwen3", "/tmp/q", script="<think>\\nA</think>\\n\\nB")  # greedy writes that reply

Each family reproduces what real checkpoints of it differ in: the architecture (``config.json`` at a tiny
size: its cache kind, sliding windows, recurrent layers, experts), the tokenizer layout (added and special
tokens with their real ``special`` flags, eos ids, BOS rules) and the chat template's behaviour (tools,
reasoning, roles). ``FAMILIES`` lists them; docs/testing.md says where each fact comes from. A scripted
model (``script=``) decodes greedily to the reply given, so parsing of real formats is tested exactly.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .family import Family

__all__ = ["Family", "FAMILIES", "build_family_model", "family_model", "text_config"]

#: the modules that define families (each a ``FAMILIES`` list), in the order of the table
_MODULES = ("qwen", "llama", "mistral", "gemma", "smollm3", "gpt_oss", "nemotron", "vision_families")


def _collect() -> dict[str, Family]:
    import importlib

    out: dict[str, Family] = {}
    for name in _MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            continue  # not written yet
        for family in module.FAMILIES:
            out[family.name] = family
    return out


#: every family of the zoo, by name
FAMILIES: dict[str, Family] = _collect()


def text_config(config: dict[str, Any]) -> dict[str, Any]:
    """The part of a ``config.json`` that describes the language model (``text_config`` where it nests)."""
    return config.get("text_config", config)


def build_family_model(name: str, path: str | Path, *, seed: int = 0, script: str | None = None) -> Path:
    """Write a loadable model folder of family ``name`` at ``path`` and return the path.

    ``script``: greedy decoding writes exactly this reply (then end-of-turn) after any prompt; the builder
    checks that it does with mlx-lm before it returns (``ValueError`` if the family cannot be scripted).
    """
    if name not in FAMILIES:
        raise ValueError(f"unknown family {name!r}; choose one of {', '.join(FAMILIES)}")
    family = FAMILIES[name]
    if family.kind != "text":
        from .vision import build_vision_family  # noqa: PLC0415  (mlx-vlm only when asked)

        return build_vision_family(family, Path(path), seed=seed, script=script)
    from .text import build_text_family

    return build_text_family(family, Path(path), seed=seed, script=script)


def family_model(name: str, script: str | None = None, seed: int = 0) -> Path:
    """Build (once) and return a cached model folder of family ``name`` (see ``build_family_model``), under
    ``abstractllm.testing.demo_cache_dir()``."""
    from .. import BUILDER_VERSION, _cached

    key = hashlib.sha256(json.dumps([script, seed]).encode()).hexdigest()[:10] if script or seed else "random"
    return _cached(f"family-{name}-v{BUILDER_VERSION}-{key}",
                   lambda tmp: build_family_model(name, tmp, seed=seed, script=script))
