"""The offline vision model builder: complete Qwen2-VL folders that mlx-vlm loads unchanged,
deterministic per seed, with real processor configs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from abstractllm import create_llm
from abstractllm.testing import build_vision_model


def digest(path: Path) -> str:
    return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()


def test_same_seed_same_weights_other_seed_other_weights(tmp_path: Path, vision_model: Path):
    a = build_vision_model(tmp_path / "a", "tiny", seed=0)
    b = build_vision_model(tmp_path / "b", "tiny", seed=3)
    assert digest(a) == digest(vision_model) != digest(b)
    cfg = json.loads((a / "config.json").read_text())
    assert cfg["model_type"] == "qwen2_vl" and "vision_config" in cfg
    proc = json.loads((a / "preprocessor_config.json").read_text())
    assert proc["image_processor_type"] == "Qwen2VLImageProcessor" and proc["max_pixels"] == 112 * 112
    tok = json.loads((a / "tokenizer.json").read_text())
    specials = {t["content"]: t["id"] for t in tok["added_tokens"]}
    assert cfg["image_token_id"] == specials["<|image_pad|>"] and cfg["video_token_id"] == specials["<|video_pad|>"]


def test_processor_is_mlx_vlms_own_and_bounds_tokens(vision_model: Path):
    from mlx_vlm import load
    from mlx_vlm.utils import estimate_num_image_tokens

    _, processor = load(str(vision_model))
    assert type(processor).__name__ == "Qwen2VLProcessor"
    assert estimate_num_image_tokens(processor, 56, 56) == 4  # min_pixels 56x56 -> 2x2 merged tokens
    assert estimate_num_image_tokens(processor, 4000, 3000) <= 16  # max_pixels 112x112


def test_small_preset_loads_and_generates(tmp_path: Path):
    path = build_vision_model(tmp_path / "small", "small")
    with create_llm("mlx", model=str(path), temperature=0.0, max_tokens=3) as llm:
        r = llm.generate("Hi?", files=[np.zeros((60, 80, 3), np.uint8)])
        assert r.usage.completion_tokens == 3
        assert llm.get_model_info()["kind"] == "vision"


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset"):
        build_vision_model("/nonexistent-never-created", "huge")
