"""Build a vision family's model folder (mlx-vlm), random or scripted.

The folder is what the real checkpoints ship, at a tiny size: ``config.json`` (with ``vision_config`` and the
image token ids), the processor configs mlx-vlm's torch-free processors read (small image sizes, so an image
is a handful of vision tokens), the tokenizer with the family's layout and the chat template (also as
``chat_template.json``, which mlx-vlm prefers), ``generation_config.json`` and random float32 weights.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Callable

from ..weights import randomize_weights
from .family import Family
from .script import script_weights
from .text import _token_ids, script_tokenizer, write_family_tokenizer

__all__ = ["build_vision_family"]

#: families whose mlx-vlm model always ties the head to the embedding (a scripted model needs its own head)
_TIED_HEAD = {
    "gemma3": "mlx-vlm's gemma3 LanguageModel.sanitize replaces language_model.lm_head with the token embedding "
              "on every load, so the head is always tied",
}

_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
_HALF = [0.5, 0.5, 0.5]


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")


# ---------------------------------------------------------------------------------------------- per family
def _qwen_ids(config: dict[str, Any], ids: dict[str, int]) -> None:
    config.update(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                  vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
                  vision_token_id=ids["<|vision_pad|>"], bos_token_id=ids["<|endoftext|>"])


def _qwen_processor(processor_class: str, image: dict[str, Any], video: dict[str, Any]) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        _write_json(path / "preprocessor_config.json", {**image, "processor_class": processor_class})
        _write_json(path / "video_preprocessor_config.json", {**video, "processor_class": processor_class})
        _write_json(path / "processor_config.json", {"processor_class": processor_class})
    return write


# Qwen2-VL / Qwen2.5-VL: min/max pixels at the top level (real 3136 .. 12845056), CLIP normalization; each
# 28x28 block is one merged vision token, so 56x56 .. 112x112 gives 4 .. 16 tokens
_QWEN2_IMAGE = {"min_pixels": 56 * 56, "max_pixels": 112 * 112, "patch_size": 14, "temporal_patch_size": 2,
                "merge_size": 2, "image_mean": _CLIP_MEAN, "image_std": _CLIP_STD, "do_rescale": True,
                "rescale_factor": 1 / 255, "do_normalize": True, "do_convert_rgb": True, "resample": 3}
_QWEN2_VIDEO = {**_QWEN2_IMAGE, "fps": 2.0, "min_frames": 2, "max_frames": 32}

# Qwen3-VL: pixel bounds as size.shortest_edge / size.longest_edge (real 65536 .. 16777216), patch 16, 0.5
# normalization; a merged token is 32x32 pixels, so 64x64 .. 128x128 gives 4 .. 16 tokens
_QWEN3_IMAGE = {"size": {"shortest_edge": 64 * 64, "longest_edge": 128 * 128}, "patch_size": 16,
                "temporal_patch_size": 2, "merge_size": 2, "image_mean": _HALF, "image_std": _HALF,
                "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True, "do_convert_rgb": True}
_QWEN3_VIDEO = {**_QWEN3_IMAGE, "size": {"shortest_edge": 64 * 64, "longest_edge": 2 * 128 * 128}, "fps": 2.0,
                "min_frames": 2, "max_frames": 32}


def _gemma3_ids(config: dict[str, Any], ids: dict[str, int]) -> None:
    config.update(image_token_index=ids["<image_soft_token>"], boi_token_index=ids["<start_of_image>"],
                  eoi_token_index=ids["<end_of_image>"])


def _gemma3_processor(config: dict[str, Any]) -> Callable[[Path], None]:
    vision, tokens = config["vision_config"], config["mm_tokens_per_image"]

    def write(path: Path) -> None:
        _write_json(path / "preprocessor_config.json", {
            "image_processor_type": "Gemma3ImageProcessor", "processor_class": "Gemma3Processor",
            "do_convert_rgb": None, "do_normalize": True, "do_pan_and_scan": None, "do_rescale": True,
            "do_resize": True, "image_mean": _HALF, "image_std": _HALF, "image_seq_length": tokens,
            "pan_and_scan_max_num_crops": None, "pan_and_scan_min_crop_size": None,
            "pan_and_scan_min_ratio_to_activate": None, "resample": 2, "rescale_factor": 1 / 255,
            "size": {"height": vision["image_size"], "width": vision["image_size"]},
        })
        _write_json(path / "processor_config.json", {"image_seq_length": tokens, "processor_class": "Gemma3Processor"})
    return write


def _smolvlm_ids(config: dict[str, Any], ids: dict[str, int]) -> None:
    config["image_token_id"] = ids["<image>"]


def _smolvlm_processor(config: dict[str, Any]) -> Callable[[Path], None]:
    vision = config["vision_config"]
    tile = vision["image_size"]
    seq = (tile // vision["patch_size"]) ** 2 // config["scale_factor"] ** 2

    def write(path: Path) -> None:
        # images are resized to a longest edge of size.longest_edge (real 4 x 512), then split into tiles of
        # max_image_size (real 512) plus the whole image: here at most 2 x 2 tiles + 1, 4 tokens each
        _write_json(path / "preprocessor_config.json", {
            "image_processor_type": "Idefics3ImageProcessor", "processor_class": "Idefics3Processor",
            "do_convert_rgb": True, "do_image_splitting": True, "do_normalize": True, "do_pad": True,
            "do_rescale": True, "do_resize": True, "image_mean": _HALF, "image_std": _HALF,
            "max_image_size": {"longest_edge": tile}, "resample": 1, "rescale_factor": 1 / 255,
            "size": {"longest_edge": 2 * tile},
        })
        _write_json(path / "processor_config.json", {"image_seq_len": seq, "processor_class": "Idefics3Processor"})
    return write


def _processor_writer(family: Family, config: dict[str, Any]) -> Callable[[Path], None]:
    kind = family.model_type
    if kind == "qwen2_vl":
        return _qwen_processor("Qwen2VLProcessor", {**_QWEN2_IMAGE, "image_processor_type": "Qwen2VLImageProcessor"},
                               {**_QWEN2_VIDEO, "video_processor_type": "Qwen2VLVideoProcessor"})
    if kind == "qwen2_5_vl":
        return _qwen_processor("Qwen2_5_VLProcessor",
                               {**_QWEN2_IMAGE, "image_processor_type": "Qwen2VLImageProcessor"},
                               {**_QWEN2_VIDEO, "video_processor_type": "Qwen2VLVideoProcessor"})
    if kind == "qwen3_vl":
        return _qwen_processor("Qwen3VLProcessor",
                               {**_QWEN3_IMAGE, "image_processor_type": "Qwen2VLImageProcessorFast"},
                               {**_QWEN3_VIDEO, "video_processor_type": "Qwen3VLVideoProcessor"})
    if kind == "gemma3":
        return _gemma3_processor(config)
    if kind == "idefics3":
        return _smolvlm_processor(config)
    raise ValueError(f"no vision builder for model_type {kind!r}")


def _fill_ids(family: Family, config: dict[str, Any], ids: dict[str, int]) -> None:
    kind = family.model_type
    if kind in ("qwen2_vl", "qwen2_5_vl", "qwen3_vl"):
        _qwen_ids(config, ids)
    elif kind == "gemma3":
        _gemma3_ids(config, ids)
    elif kind == "idefics3":
        _smolvlm_ids(config, ids)
    tokens = _token_ids(family, ids)
    config.update(tokens)
    if "text_config" in config:  # the real nested configs repeat the ids for the language model
        config["text_config"].update(tokens)


# ---------------------------------------------------------------------------------------------- model
def _instantiate(config: dict[str, Any]) -> Any:
    """The mlx-vlm model for ``config``, built the way ``mlx_vlm.utils.load_model`` builds it."""
    from mlx_vlm.utils import get_model_and_args, update_module_configs

    cfg = json.loads(json.dumps(config))
    model_class, _ = get_model_and_args(config=cfg)
    cfg.setdefault("text_config", cfg.pop("llm_config", {}))
    cfg.setdefault("vision_config", {})
    cfg.setdefault("audio_config", {})
    model_config = model_class.ModelConfig.from_dict(cfg)
    model_config = update_module_configs(model_config, model_class, cfg,
                                         ["text", "vision", "perceiver", "projector", "audio"])
    return model_class.Model(model_config)


def _embedding(language_model: Any) -> Any:
    inner = getattr(language_model, "model", language_model)
    return inner.embed_tokens


def _quiet_eos(model: Any, family: Family, ids: dict[str, int]) -> None:
    """Random weights: give the end-of-turn tokens a logit of 0 (zero head rows, and zero embedding rows
    where the head is the embedding), below the top random logits, so greedy answers run to ``max_tokens``
    instead of stopping at random after a token or two."""
    import mlx.core as mx

    rows = mx.array(sorted({ids[t] for t in family.eos_tokens}))
    lm = model.language_model
    emb = _embedding(lm)
    emb.weight[rows] = mx.zeros((rows.size, emb.weight.shape[1]), dtype=emb.weight.dtype)
    head = getattr(lm, "lm_head", None)
    if head is not None and hasattr(head, "weight"):
        head.weight[rows] = mx.zeros((rows.size, head.weight.shape[1]), dtype=head.weight.dtype)
    mx.eval(model.parameters())


def build_vision_family(family: Family, path: Path, *, seed: int = 0, script: str | None = None) -> Path:
    """Write a loadable mlx-vlm folder of ``family`` at ``path`` (see ``abstractllm.testing.zoo``)."""
    from ...providers.mlx.backend import enable_fast_blas

    enable_fast_blas()  # before the first import of mlx.core, as the provider does
    import mlx.core as mx
    from mlx_vlm.utils import save_config, save_weights

    if script is not None and family.model_type in _TIED_HEAD:
        raise ValueError(f"family {family.name!r} cannot be scripted: {_TIED_HEAD[family.model_type]}, and the "
                         "script construction (abstractllm.testing.zoo.script) needs an untied head")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config = copy.deepcopy(family.config)
    text = config.get("text_config", config)
    if script is not None:  # the head must be free to take the script's rows
        text["tie_word_embeddings"] = False
        if "tie_word_embeddings" in config:
            config["tie_word_embeddings"] = False
    reserve = len(script) + 4 if script else 0
    ids = write_family_tokenizer(family, path, text["vocab_size"], seed, reserve)
    _write_json(path / "chat_template.json", {"chat_template": family.template})
    _fill_ids(family, config, ids)
    config["torch_dtype"] = "float32"
    _processor_writer(family, config)(path)

    model = _instantiate(config)
    mx.random.seed(seed)
    randomize_weights(model, seed, 1.0)
    if script is not None:
        # byte-level pieces only: mlx-vlm's streaming detokenizer maps each character through the byte decoder
        chain, starts = script_tokenizer(family, path, script, ids, raw=False)
        script_weights(model.language_model, starts, chain)
    else:
        _quiet_eos(model, family, ids)
    save_weights(path, model, donate_weights=True)
    save_config(config, path / "config.json")
    _write_json(path / "generation_config.json", {**_token_ids(family, ids), "do_sample": False})
    if script is not None:
        _check_script(path, script, {ids[t] for t in family.eos_tokens})
    return path


def _check_script(path: Path, script: str, eos: set[int]) -> None:
    """Greedy mlx-vlm on the built folder, with an image, must write ``script`` and stop (on ``eos``)."""
    import mlx.core as mx
    import numpy as np
    from mlx_vlm import load, stream_generate
    from mlx_vlm.prompt_utils import apply_chat_template
    from PIL import Image

    model, processor = load(str(path))
    tokenizer = getattr(processor, "tokenizer", processor)
    image = Image.fromarray((np.random.RandomState(0).rand(56, 84, 3) * 255).astype("uint8"))
    prompt = apply_chat_template(processor, model.config, "Hello", num_images=1)
    tokens = [int(r.token) for r in stream_generate(model, processor, prompt, image=[image],
                                                    max_tokens=len(script) + 8, temperature=0.0)]
    got = tokenizer.decode([t for t in tokens if t not in eos])
    mx.clear_cache()
    if got != script or not tokens or tokens[-1] not in eos:
        raise ValueError(f"the scripted vision model writes {got!r}, not {script!r}: this family cannot be "
                         "scripted by the construction in abstractllm.testing.zoo.script")
