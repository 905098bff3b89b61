"""Issue 2: the core API — registry and entry points, config validation, enum keys, exception tree,
and the light import."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

import abstractllm
from abstractllm import (
    AbstractLLMError,
    GenerationError,
    ImageProcessingError,
    InvalidParameterError,
    MemoryLimitError,
    ModelCapability,
    ModelLoadError,
    ModelNotFoundError,
    ModelParameter,
    Response,
    UnsupportedFeatureError,
    UnsupportedProviderError,
    Usage,
    create_llm,
)
from abstractllm.params import parse_bytes


def test_public_surface_is_explicit():
    assert "create_llm" in abstractllm.__all__
    for name in abstractllm.__all__:
        assert hasattr(abstractllm, name), name


def test_import_is_light_and_help_does_not_import_mlx():
    code = textwrap.dedent(
        """
        import sys, json, abstractllm, abstractllm.testing, abstractllm.providers.mlx
        from abstractllm import create_llm, ModelParameter
        heavy = [m for m in sys.modules if m.split('.')[0] in ('mlx', 'mlx_lm', 'mlx_vlm', 'numpy',
                 'PIL', 'transformers', 'fastapi', 'huggingface_hub', 'tokenizers')]
        print(json.dumps(heavy))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_exception_tree():
    for cls in (UnsupportedProviderError, InvalidParameterError, ModelLoadError, ModelNotFoundError,
                MemoryLimitError, ImageProcessingError, UnsupportedFeatureError, GenerationError):
        assert issubclass(cls, AbstractLLMError)
    assert issubclass(ModelNotFoundError, ModelLoadError)
    assert issubclass(MemoryLimitError, MemoryError)
    assert issubclass(InvalidParameterError, ValueError)
    err = MemoryLimitError("too big", required_bytes=10, available_bytes=5)
    assert (err.required_bytes, err.available_bytes) == (10, 5)
    # The tree is drawn in the module docstring, every class in it.
    doc = abstractllm.exceptions.__doc__
    for cls in (UnsupportedProviderError, InvalidParameterError, ModelNotFoundError, GenerationError):
        assert cls.__name__ in doc


def test_unknown_provider_lists_available_with_did_you_mean():
    with pytest.raises(UnsupportedProviderError) as exc:
        create_llm("mxl", model="x")
    assert "Did you mean 'mlx'" in str(exc.value)
    assert "Available providers: " in str(exc.value) and "mlx" in str(exc.value)
    with pytest.raises(UnsupportedProviderError):
        create_llm(None)  # type: ignore[arg-type]


def test_missing_extra_names_the_pip_install_line():
    abstractllm.register_provider("needs-extra", "nowhere_pkg_xyz:Provider", extra="needsextra",
                                  requires=("nowhere_pkg_xyz",))
    try:
        with pytest.raises(UnsupportedProviderError) as exc:
            create_llm("needs-extra")
        assert 'pip install "abstractllm[needsextra]"' in str(exc.value)
    finally:
        abstractllm.registry._REGISTERED.pop("needs-extra")


def test_unknown_config_key_has_did_you_mean(tiny_model):
    with pytest.raises(InvalidParameterError) as exc:
        create_llm("mlx", model=str(tiny_model), temprature=0.5)
    assert "Did you mean 'temperature'" in str(exc.value)
    assert exc.value.param == "temprature"


@pytest.mark.parametrize(
    "config",
    [
        {"temperature": -1},
        {"temperature": "hot"},
        {"max_tokens": 0},
        {"max_tokens": 2.5},
        {"max_tokens": True},
        {"top_p": 0},
        {"top_p": 1.5},
        {"top_k": -1},
        {"min_p": 2},
        {"repetition_penalty": 0},
        {"seed": -3},
        {"stop": 5},
        {"stop": [""]},
        {"quantize": 7},
        {"dtype": "float64"},
        {"memory_limit": "lots"},
        {"memory_limit": -1},
        {"memory_limit": float("inf")},
        {"model": ""},
        {"model": 42},
        {"trust_remote_code": "yes"},
    ],
)
def test_bad_config_values(tiny_model, config):
    config = {"model": str(tiny_model), **config}
    with pytest.raises(InvalidParameterError):
        create_llm("mlx", **config)


def test_model_is_required():
    # no model: the provider's default (AbstractLLM 1.x had one per provider; abstractllm.compat.DEFAULT_MODELS)
    assert create_llm("mlx").config["model"] == "mlx-community/Qwen3-0.6B-4bit"
    with pytest.raises(InvalidParameterError, match="model"):
        create_llm("mlx", model="")


def test_enum_keys_equal_keyword_names(tiny_model):
    a = create_llm("mlx", **{ModelParameter.MODEL: str(tiny_model), ModelParameter.TEMPERATURE: 0.0,
                             ModelParameter.MAX_TOKENS: 7, ModelParameter.STOP: ["zz"]})
    b = create_llm("mlx", model=str(tiny_model), temperature=0.0, max_tokens=7, stop=["zz"])
    assert a.config == b.config
    assert all(isinstance(k, str) and not isinstance(k, ModelParameter) for k in a.config)
    assert a.generate("Hi").content == b.generate("Hi").content
    # per-call enum keys work too
    r = a.generate("Hi", **{ModelParameter.MAX_TOKENS: 3})
    assert r.usage.completion_tokens == 3
    a.close(), b.close()
    assert str(ModelParameter.TEMPERATURE) == "temperature" and ModelParameter.TEMPERATURE == "temperature"
    assert str(ModelCapability.VISION) == "vision"


def test_parse_bytes():
    assert parse_bytes("8GB") == 8_000_000_000
    assert parse_bytes("512 MiB") == 512 * 2**20
    assert parse_bytes(1024) == 1024
    assert parse_bytes("1.5g") == 1_500_000_000
    for bad in ("8 parsecs", "", True, -5, "GB"):
        with pytest.raises(InvalidParameterError):
            parse_bytes(bad)


def test_response_to_dict_round_trips_through_json():
    r = Response(content="hi", model="m", finish_reason="stop", usage=Usage(1, 2, 3, 0), ttft_s=0.1)
    d = json.loads(json.dumps(r.to_dict()))
    assert d["content"] == "hi" and d["usage"]["total_tokens"] == 3 and d["finish_reason"] == "stop"
    assert str(r) == "hi"


def test_text_model_capabilities_are_declared_data(tiny_llm):
    caps = tiny_llm.get_capabilities()
    assert ModelCapability.TEXT in caps and ModelCapability.STREAMING in caps
    assert ModelCapability.VISION not in caps
    info = tiny_llm.get_model_info()
    assert info["kind"] == "text" and info["model_type"] == "qwen3"
