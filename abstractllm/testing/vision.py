"""Build complete Qwen2-VL-family vision model folders offline: real ``config.json`` with a
``vision_config``, random safetensors weights (deterministic per seed), the offline byte-level BPE
tokenizer with the Qwen2-VL special tokens, a chat template that renders image and video parts, and real
image/video processor configs (small ``min_pixels``/``max_pixels`` so an image gives few vision tokens).

``mlx_vlm.load(path)`` loads the folder unchanged; mlx-vlm's own torch-free Qwen2-VL processor reads it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .tokenizer import CHATML_SPECIAL_TOKENS, qwen_template, write_tokenizer
from .weights import randomize_weights

__all__ = ["VISION_PRESETS", "QWEN2_VL_TEMPLATE", "VISION_SPECIAL_TOKENS", "build_vision_model"]

#: Special tokens the Qwen2-VL processor and model look up by name.
VISION_SPECIAL_TOKENS = CHATML_SPECIAL_TOKENS + (
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<|vision_pad|>",
)

#: The Qwen2-VL chat template (without its default system prompt), with tools: content as a string or a
#: list of ``{"type": "text"|"image"|"video"}`` parts, each image/video rendered as its vision placeholder.
QWEN2_VL_TEMPLATE = (
    "{%- if enable_thinking is defined %}{%- endif %}"  # mlx-vlm passes it; declaring it avoids a warning
    + qwen_template(
        "{%- if message['content'] is string %}{{- message['content'] }}"
        "{%- elif message['content'] %}{%- for part in message['content'] %}"
        "{%- if part['type'] == 'image' or part['type'] == 'image_url' %}"
        "{{- '<|vision_start|><|image_pad|><|vision_end|>' }}"
        "{%- elif part['type'] == 'video' %}{{- '<|vision_start|><|video_pad|><|vision_end|>' }}"
        "{%- elif part['type'] == 'text' %}{{- part['text'] }}{%- endif %}"
        "{%- endfor %}{%- endif %}"
    )
)

_TEXT_BASE = {
    "hidden_act": "silu",
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
    "max_position_embeddings": 32768,
    "tie_word_embeddings": True,
    "use_sliding_window": False,
    "sliding_window": 32768,
}

#: name -> (text config, vision config, max_pixels). ``tiny``: ~0.5 MB, 4..16 tokens per image.
VISION_PRESETS: dict[str, tuple[dict[str, Any], dict[str, Any], int]] = {
    "tiny": (
        {
            **_TEXT_BASE,
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "intermediate_size": 128,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "vocab_size": 1024,
            "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
        },
        {"depth": 2, "embed_dim": 32, "num_heads": 2, "mlp_ratio": 2},
        112 * 112,
    ),
    "small": (
        {
            **_TEXT_BASE,
            "hidden_size": 256,
            "num_hidden_layers": 4,
            "intermediate_size": 512,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "vocab_size": 4096,
            "rope_scaling": {"type": "mrope", "mrope_section": [8, 12, 12]},
        },
        {"depth": 4, "embed_dim": 128, "num_heads": 4, "mlp_ratio": 2},
        224 * 224,
    ),
}


def build_vision_model(
    path: str | Path,
    preset: str = "tiny",
    *,
    seed: int = 0,
    init_scale: float = 1.0,
    max_pixels: int | None = None,
    min_pixels: int = 56 * 56,
    overrides: dict[str, Any] | None = None,
) -> Path:
    """Write a Qwen2-VL model folder at ``path`` that ``mlx_vlm.load`` loads; return the path.

    Args:
        preset: one of ``VISION_PRESETS`` (``tiny``, ``small``).
        seed: the weights (and the synthetic part of the tokenizer) are a deterministic function of it.
        max_pixels / min_pixels: the processor's pixel bounds (the preset's max by default); each 28x28
            block of the resized image is one vision token in the language model.
        overrides: text config keys to change.

    The weights are random: the answers are meaningless, but every code path runs (processor, vision
    tower, multimodal rotary positions, chat template, streaming, caching).
    """
    from ..providers.mlx.backend import enable_fast_blas

    enable_fast_blas()  # before the first import of mlx.core, as the provider does
    from mlx_vlm.utils import save_config

    if preset not in VISION_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(VISION_PRESETS)}")
    text, vision, default_max = VISION_PRESETS[preset]
    max_pixels = max_pixels or default_max
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    text = {**text, **(overrides or {})}

    ids = write_tokenizer(
        path,
        text["vocab_size"],
        special_tokens=VISION_SPECIAL_TOKENS,
        seed=seed,
        chat_template=QWEN2_VL_TEMPLATE,
        extra_config={"processor_class": "Qwen2VLProcessor"},
    )
    (path / "chat_template.json").write_text(json.dumps({"chat_template": QWEN2_VL_TEMPLATE}), encoding="utf-8")
    config = _model_config(text, vision, ids)
    _write_weights(path, config, ids, seed, init_scale)
    save_config(config, path / "config.json")
    _write_processor(path, min_pixels, max_pixels)
    (path / "generation_config.json").write_text(
        json.dumps({"eos_token_id": config["eos_token_id"], "do_sample": False}, indent=2), encoding="utf-8"
    )
    return path


def _model_config(text: dict[str, Any], vision: dict[str, Any], ids: dict[str, int]) -> dict[str, Any]:
    """``config.json`` of a Qwen2-VL model: the text config, the vision tower's, and the special token ids."""
    return {
        "model_type": "qwen2_vl",
        "architectures": ["Qwen2VLForConditionalGeneration"],
        **text,
        "vision_config": {
            "model_type": "qwen2_vl",
            "in_chans": 3,
            "in_channels": 3,
            "patch_size": 14,
            "spatial_patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "hidden_size": text["hidden_size"],
            **vision,
        },
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "eos_token_id": ids["<|im_end|>"],
        "bos_token_id": ids["<|endoftext|>"],
        "pad_token_id": ids["<|endoftext|>"],
        "torch_dtype": "float32",
    }


def _write_weights(path: Path, config: dict[str, Any], ids: dict[str, int], seed: int, init_scale: float) -> None:
    """Random weights of the model ``config`` describes (deterministic for ``seed``), saved in ``path``."""
    import mlx.core as mx
    from mlx_vlm.models import qwen2_vl
    from mlx_vlm.utils import save_weights

    model_config = qwen2_vl.ModelConfig.from_dict(json.loads(json.dumps(config)))
    model_config.vision_config = qwen2_vl.VisionConfig.from_dict(config["vision_config"])
    model_config.text_config = qwen2_vl.TextConfig.from_dict(config)
    model = qwen2_vl.Model(model_config)
    mx.random.seed(seed)
    randomize_weights(model, seed, init_scale)
    # Tied embeddings: a zero row gives the end-of-turn tokens a logit of 0, below the top random logits,
    # so greedy answers run to max_tokens instead of stopping at random after a token or two.
    emb = model.language_model.model.embed_tokens
    quiet = mx.array([ids["<|im_end|>"], ids["<|endoftext|>"]])
    emb.weight[quiet] = mx.zeros((2, emb.weight.shape[1]), dtype=emb.weight.dtype)
    mx.eval(emb.weight)
    save_weights(path, model, donate_weights=True)


def _write_processor(path: Path, min_pixels: int, max_pixels: int) -> None:
    """The image and video processors' configs (Qwen2-VL's, within ``min_pixels`` .. ``max_pixels``)."""
    processor = {
        "image_processor_type": "Qwen2VLImageProcessor",
        "processor_class": "Qwen2VLProcessor",
        "patch_size": 14,
        "temporal_patch_size": 2,
        "merge_size": 2,
        "min_pixels": min_pixels,
        "max_pixels": max_pixels,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "do_convert_rgb": True,
    }
    (path / "preprocessor_config.json").write_text(json.dumps(processor, indent=2), encoding="utf-8")
    video = {
        **processor,
        "video_processor_type": "Qwen2VLVideoProcessor",
        "fps": 2.0,
        "min_frames": 2,
        "max_frames": 32,
    }
    video.pop("image_processor_type")
    (path / "video_preprocessor_config.json").write_text(json.dumps(video, indent=2), encoding="utf-8")
    (path / "processor_config.json").write_text(
        json.dumps({"processor_class": "Qwen2VLProcessor"}, indent=2), encoding="utf-8"
    )
