"""Build complete MLX text-model folders offline: real config.json, random safetensors weights,
a locally trained tokenizer with a chat template that takes tools (ChatML / Qwen for the Qwen3 presets,
Llama 3.1 for the Llama ones). ``mlx_lm.load(path)`` loads them unchanged."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from .tokenizer import CHATML_TEMPLATE, LLAMA3_SPECIAL_TOKENS, LLAMA3_TEMPLATE, write_tokenizer
from .weights import randomize_weights

__all__ = ["TEXT_PRESETS", "build_text_model"]

_QWEN3_BASE = {
    "model_type": "qwen3",
    "architectures": ["Qwen3ForCausalLM"],
    "hidden_act": "silu",
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
    "max_position_embeddings": 40960,
    "tie_word_embeddings": True,
    "attention_bias": False,
    "rope_scaling": None,
}
_LLAMA_BASE = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "hidden_act": "silu",
    "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0,
    "max_position_embeddings": 8192,
    "tie_word_embeddings": False,
    "attention_bias": False,
    "mlp_bias": False,
}

#: name -> (config, default dtype). Sizes: tiny ~1 MB, small ~45 MB (float32), qwen3-0.6b the real shape.
TEXT_PRESETS: dict[str, tuple[dict[str, Any], str]] = {
    "tiny": ({**_QWEN3_BASE, "hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128,
              "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 1024}, "float32"),
    "small": ({**_QWEN3_BASE, "hidden_size": 384, "num_hidden_layers": 6, "intermediate_size": 1024,
               "num_attention_heads": 6, "num_key_value_heads": 2, "head_dim": 64, "vocab_size": 4096}, "float32"),
    "qwen3-0.6b": ({**_QWEN3_BASE, "hidden_size": 1024, "num_hidden_layers": 28, "intermediate_size": 3072,
                    "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128,
                    "vocab_size": 151936}, "bfloat16"),
    "llama-tiny": ({**_LLAMA_BASE, "hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128,
                    "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1024}, "float32"),
    "llama-small": ({**_LLAMA_BASE, "hidden_size": 384, "num_hidden_layers": 6, "intermediate_size": 1024,
                     "num_attention_heads": 6, "num_key_value_heads": 2, "vocab_size": 4096}, "float32"),
}


def _random_model(config: dict[str, Any], seed: int, init_scale: float) -> Any:
    module = importlib.import_module(f"mlx_lm.models.{config['model_type']}")
    args = module.ModelArgs.from_dict(config)
    model = module.Model(args)
    randomize_weights(model, seed, init_scale)  # deterministic for the seed
    return model


def _write_tokenizer_of(path: Path, config: dict[str, Any], seed: int, chat_template: str | None | bool,
                        separate_file: bool) -> None:
    """The tokenizer of a text model (ChatML, or Llama 3's tokens and template for ``llama``), its chat template
    (in ``chat_template.jinja`` when ``separate_file``), and its special token ids set in ``config``."""
    llama = config["model_type"] == "llama"  # the Llama 3.1 chat format (tools as plain JSON)
    default_template = LLAMA3_TEMPLATE if llama else CHATML_TEMPLATE
    template = default_template if chat_template is True else (chat_template or None)
    tokens = dict(special_tokens=LLAMA3_SPECIAL_TOKENS, eos_token="<|eot_id|>", pad_token="<|end_of_text|>",
                  bos_token="<|begin_of_text|>") if llama else {}
    ids = write_tokenizer(
        path, config["vocab_size"], seed=seed,
        chat_template=None if separate_file else template, **tokens,
    )
    if separate_file and template:
        (path / "chat_template.jinja").write_text(template, encoding="utf-8")
    if llama:
        config.update(eos_token_id=ids["<|eot_id|>"], bos_token_id=ids["<|begin_of_text|>"],
                      pad_token_id=ids["<|end_of_text|>"])
    else:
        config.update(eos_token_id=ids["<|im_end|>"], bos_token_id=ids["<|endoftext|>"],
                      pad_token_id=ids["<|endoftext|>"])


def build_text_model(
    path: str | Path,
    preset: str = "tiny",
    *,
    seed: int = 0,
    dtype: str | None = None,
    quantize: int | None = None,
    group_size: int = 64,
    chat_template: str | None | bool = True,
    separate_chat_template_file: bool = False,
    init_scale: float = 1.0,
    overrides: dict[str, Any] | None = None,
) -> Path:
    """Write a Hugging Face-style MLX text model folder at ``path`` and return the path.

    Args:
        preset: one of ``TEXT_PRESETS`` (``tiny``, ``small``, ``qwen3-0.6b``, ``llama-tiny``, ``llama-small``).
        seed: weights (and the synthetic part of the tokenizer) are a deterministic function of it.
        dtype: ``float32``, ``float16`` or ``bfloat16`` (default: the preset's).
        quantize: save the weights quantized to this many bits (mlx's own affine quantization).
        chat_template: ``True`` for ChatML, a string for your own template, ``False``/``None`` for a base
            model without one.
        separate_chat_template_file: write the template to ``chat_template.jinja`` instead of
            ``tokenizer_config.json`` (as recent Hugging Face repos do).
        overrides: config.json keys to change (e.g. ``{"num_hidden_layers": 1}``).

    The weights are random: the text is meaningless, but every code path of loading and generation runs.
    """
    from ..providers.mlx.backend import enable_fast_blas

    enable_fast_blas()  # before the first import of mlx.core, as the provider does
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.utils import quantize_model, save_config, save_model

    if preset not in TEXT_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(TEXT_PRESETS)}")
    base, default_dtype = TEXT_PRESETS[preset]
    config = {**base, **(overrides or {})}
    dtype = dtype or default_dtype
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)

    _write_tokenizer_of(path, config, seed, chat_template, separate_chat_template_file)
    config["torch_dtype"] = dtype

    model = _random_model(config, seed, init_scale)
    model.update(_cast(tree_flatten(model.parameters()), getattr(mx, dtype)))
    if quantize:
        model, config = quantize_model(model, config, group_size=group_size, bits=int(quantize))
    save_model(path, model, donate_model=True)
    save_config(config, path / "config.json")
    (path / "generation_config.json").write_text(
        json.dumps({"eos_token_id": config["eos_token_id"], "do_sample": False}, indent=2))
    return path


def _cast(flat, dtype):
    from mlx.utils import tree_unflatten

    return tree_unflatten([(k, v.astype(dtype)) for k, v in flat])
