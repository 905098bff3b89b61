"""Deterministic random weights for the offline test models (text and vision builders share them)."""

from __future__ import annotations

from typing import Any

__all__ = ["randomize_weights"]


def randomize_weights(model: Any, seed: int, init_scale: float = 1.0) -> None:
    """Replace every parameter of ``model`` with seeded random values that keep activations at a sane
    scale: norm weights 1, biases 0, token embeddings N(0, 0.05), other matrices N(0, 1/fan_in)."""
    import mlx.core as mx
    from mlx.utils import tree_flatten, tree_unflatten

    flat = tree_flatten(model.parameters())
    keys = mx.random.split(mx.random.key(seed), len(flat))
    params = []
    for i, (name, value) in enumerate(flat):
        if value.ndim < 2 and name.endswith("weight"):  # norms (ln_q, norm1, ...): identity scale
            params.append((name, mx.ones_like(value)))
        elif name.endswith("bias") or value.ndim < 2:
            params.append((name, mx.zeros_like(value)))
        else:
            fan_in = 1
            for d in value.shape[1:]:
                fan_in *= d
            std = 0.05 * init_scale if "embed_tokens" in name else init_scale / max(fan_in, 1) ** 0.5
            params.append((name, mx.random.normal(value.shape, key=keys[i]) * std))
    model.update(tree_unflatten(params))
    mx.eval(model.parameters())
