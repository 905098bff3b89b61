"""Bad inputs to the MLX text provider: every bad generation parameter, message shape and model folder
gives a clear typed error (never a crash, a hang or a leaked temp file), and the shared provider keeps
generating the same output afterwards."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from abstractllm import (AbstractLLMError, InvalidParameterError, ModelLoadError, ModelNotFoundError,
                         create_llm)

PROMPT = "What is the capital of France?"


@pytest.fixture(scope="module")
def baseline(tiny_llm):
    return tiny_llm.generate(PROMPT, max_tokens=8).token_ids


@pytest.fixture
def still_works(tiny_llm, baseline):
    """After the test: the shared provider still generates exactly what it did before."""
    yield
    assert tiny_llm.generate(PROMPT, max_tokens=8).token_ids == baseline


# ------------------------------------------------------------------ generation parameters
BAD_PARAMS = [
    ("max_tokens", 0), ("max_tokens", -5), ("max_tokens", 1.5), ("max_tokens", "10"), ("max_tokens", True),
    ("max_tokens", None), ("max_tokens", 10**7),
    ("temperature", -0.1), ("temperature", "hot"), ("temperature", float("nan")), ("temperature", 1000.0),
    ("temperature", True), ("temperature", None), ("temperature", [0.5]),
    ("top_p", 0.0), ("top_p", 1.5), ("top_p", -0.2), ("top_p", "0.9"),
    ("top_k", -1), ("top_k", 2.5), ("top_k", "5"),
    ("min_p", -0.1), ("min_p", 1.1), ("min_p", "low"),
    ("repetition_penalty", 0.0), ("repetition_penalty", -1.0), ("repetition_penalty", 11.0),
    ("repetition_penalty", "1.2"),
    ("repetition_context_size", 0), ("repetition_context_size", 2.5),
    ("seed", -1), ("seed", 1.5), ("seed", "42"), ("seed", 2**63), ("seed", False),
    ("stop", ""), ("stop", [""]), ("stop", [1]), ("stop", 5), ("stop", b"x"), ("stop", {"a"}),
    ("stop", ["s"] * 17), ("stop", ["ok", None]),
    ("max_kv_size", 0), ("max_kv_size", "big"),
]


@pytest.mark.parametrize("name,value", BAD_PARAMS, ids=[f"{n}={v!r:.20}" for n, v in BAD_PARAMS])
def test_bad_generation_param(tiny_llm, still_works, name, value):
    with pytest.raises(InvalidParameterError) as err:
        tiny_llm.generate(PROMPT, **{name: value})
    assert err.value.param == name
    assert name in str(err.value)
    # the same value is refused in the config too, at create_llm
    with pytest.raises(InvalidParameterError):
        create_llm("mlx", model=str(tiny_llm.config["model"]), **{name: value})


@pytest.mark.parametrize("name,suggestion", [("max_token", "max_tokens"), ("temprature", "temperature"),
                                              ("top-p", "top_p"), ("stop_sequences", None)])
def test_unknown_param_with_did_you_mean(tiny_llm, still_works, name, suggestion):
    with pytest.raises(InvalidParameterError) as err:
        tiny_llm.generate(PROMPT, **{name: 1})
    msg = str(err.value)
    assert f"'{name}'" in msg and err.value.param == name
    if suggestion:
        assert f"Did you mean '{suggestion}'" in msg


@pytest.mark.parametrize("name,value", [("quantize", 4), ("memory_limit", "1GB"),
                                        ("prompt_cache_bytes", 0), ("dtype", "float32")])
def test_load_time_options_are_refused_per_call(tiny_llm, still_works, name, value):
    with pytest.raises(InvalidParameterError, match=name):
        tiny_llm.generate(PROMPT, **{name: value})


def test_another_model_per_call_is_ignored_with_a_warning(tiny_llm, still_works):
    """AbstractLLM 1.x accepted generate(model=...): another model than the provider's is ignored, said once as
    a DeprecationWarning (docs/migration.md); the provider's own model is accepted silently."""
    with pytest.warns(DeprecationWarning, match="model"):
        r = tiny_llm.generate(PROMPT, model="x", max_tokens=2)
    assert r.usage.completion_tokens >= 1


@pytest.mark.parametrize("config", [
    {"model": 5}, {"model": "   "}, {"quantize": 3.5}, {"quantize": "4"}, {"quantize": 7},
    {"dtype": "fp16"}, {"prompt_cache_bytes": "lots"}, {"prefill_step_size": 0}, {"revision": ""},
    {"trust_remote_code": "yes"}, {"temprature": 0.5},
])
def test_bad_config_at_create(tiny_model, config):
    config = {"model": str(tiny_model), **config}
    with pytest.raises(InvalidParameterError):
        create_llm("mlx", **config)


def test_dtype_did_you_mean(tiny_model):
    with pytest.raises(InvalidParameterError, match="Did you mean 'float16'"):
        create_llm("mlx", model=str(tiny_model), dtype="float61")


# ------------------------------------------------------------------ prompts and messages
BAD_CONVERSATIONS = [
    dict(prompt=5), dict(prompt=b"bytes"), dict(prompt=[]), dict(prompt=["ok", 3]), dict(),
    dict(prompt=""), dict(prompt="   \n"),
    dict(system_prompt=3, prompt="hi"), dict(system_prompt="only a system prompt"),
    dict(messages="hi"), dict(messages={"role": "user", "content": "hi"}), dict(messages=[1]),
    dict(messages=[["user", "hi"]]),
    dict(messages=[{"role": "bot", "content": "hi"}]), dict(messages=[{"content": "hi"}]),
    dict(messages=[{"role": "user"}]), dict(messages=[{"role": "user", "content": 5}]),
    dict(messages=[{"role": "user", "content": [{"text": "no type"}]}]),
    dict(messages=[{"role": "user", "content": [{"type": "audio", "audio": "x"}]}]),
    dict(messages=[{"role": "user", "content": [{"type": "text", "text": 5}]}]),
    dict(messages=[{"role": "user", "content": [{"type": "image_url"}]}]),
    dict(messages=[{"role": "system", "content": "sys"}]),
    dict(messages=[{"role": "assistant", "content": "only me"}]),
]


@pytest.mark.parametrize("kwargs", BAD_CONVERSATIONS, ids=[repr(k)[:60] for k in BAD_CONVERSATIONS])
def test_bad_conversation(tiny_llm, still_works, kwargs):
    with pytest.raises(InvalidParameterError):
        tiny_llm.generate(max_tokens=4, **kwargs)


def test_images_to_a_text_model_are_refused(tiny_llm, still_works):
    from abstractllm import UnsupportedFeatureError

    with pytest.raises(UnsupportedFeatureError, match="text-only"):
        tiny_llm.generate("What is this?", files=[b"\x89PNG fake"], max_tokens=4)


def test_odd_but_valid_conversations_work(tiny_llm, still_works):
    ok = [
        dict(messages=[{"role": "user", "content": [{"type": "text", "text": "Hello"}, "there"]}]),
        dict(messages=[{"role": "user", "content": ""}]),  # an empty turn in a conversation (OpenAI takes it)
        dict(messages=[{"role": "assistant", "content": None}, {"role": "user", "content": "hi"}]),
        dict(prompt="hi", system_prompt=""),
        dict(prompt="x" * 3000),  # longer than the 2048-token prefill step: chunked prefill
    ]
    for kw in ok:
        r = tiny_llm.generate(max_tokens=3, **kw)
        assert r.usage.completion_tokens == 3


# ------------------------------------------------------------------ bad models
def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _no_weights(src, d):
    p = _copy(src, d / "m")
    for f in p.glob("*.safetensors*"):
        f.unlink()
    for f in p.glob("*.index.json"):
        f.unlink()
    return p


def _corrupt_config(src, d):
    p = _copy(src, d / "m")
    (p / "config.json").write_text("{not json", encoding="utf-8")
    return p


def _config_list(src, d):
    p = _copy(src, d / "m")
    (p / "config.json").write_text("[1, 2]", encoding="utf-8")
    return p


def _edit_config(**changes):
    def make(src, d):
        p = _copy(src, d / "m")
        cfg = json.loads((p / "config.json").read_text())
        for k, v in changes.items():
            if v is None:
                cfg.pop(k, None)
            else:
                cfg[k] = v
        (p / "config.json").write_text(json.dumps(cfg))
        return p

    return make


def _garbage_weights(src, d):
    p = _copy(src, d / "m")
    (p / "model.safetensors").write_bytes(b"this is not a safetensors file at all")
    return p


def _truncated_weights(src, d):
    p = _copy(src, d / "m")
    data = (p / "model.safetensors").read_bytes()
    (p / "model.safetensors").write_bytes(data[: len(data) // 2])
    return p


def _no_tokenizer(src, d):
    p = _copy(src, d / "m")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (p / name).unlink()
    return p


def _a_file(src, d):
    f = d / "model.safetensors"
    shutil.copy(src / "model.safetensors", f)
    return f


BAD_MODELS = [
    ("missing-folder", lambda src, d: d / "does-not-exist", ModelNotFoundError, "does-not-exist"),
    ("file-not-folder", _a_file, ModelNotFoundError, "is a file"),
    ("no-weights", _no_weights, ModelLoadError, "safetensors"),
    ("corrupt-config", _corrupt_config, ModelLoadError, "not valid JSON"),
    ("config-not-object", _config_list, ModelLoadError, "JSON object"),
    ("no-model-type", _edit_config(model_type=None), ModelLoadError, "model_type"),
    ("unknown-architecture", _edit_config(model_type="qwen99_turbo"), ModelLoadError, "qwen99_turbo"),
    ("unknown-vision-architecture", _edit_config(vision_config={"x": 1}, model_type="qwen99_vl"), ModelLoadError,
     "mlx-vlm does not support"),
    ("garbage-safetensors", _garbage_weights, ModelLoadError, "safetensors"),
    ("truncated-safetensors", _truncated_weights, ModelLoadError, "truncated"),
    ("wrong-shapes", _edit_config(hidden_size=128), ModelLoadError, "mlx-lm could not load"),
    ("missing-weights-for-layers", _edit_config(num_hidden_layers=3), ModelLoadError, "mlx-lm could not load"),
    ("no-tokenizer", _no_tokenizer, ModelLoadError, "tokenizer"),
]


@pytest.mark.parametrize("name,make,error,words", BAD_MODELS, ids=[b[0] for b in BAD_MODELS])
def test_bad_model(tiny_model, tiny_llm, still_works, tmp_path, name, make, error, words):
    path = make(Path(tiny_model), tmp_path)
    temp_before = set(os.listdir(tempfile.gettempdir()))
    llm = create_llm("mlx", model=str(path))
    try:
        for call in (lambda: llm.generate(PROMPT, max_tokens=2), llm.load,
                     lambda: list(llm.generate(PROMPT, max_tokens=2, stream=True))):
            with pytest.raises(error) as err:
                call()
            assert words in str(err.value), str(err.value)
            assert not llm.is_loaded
    finally:
        llm.close()
    assert set(os.listdir(tempfile.gettempdir())) - temp_before == set()


def test_repo_id_not_cached_offline(tiny_llm, still_works, monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    llm = create_llm("mlx", model="some-org/some-model-that-is-not-cached")
    with pytest.raises(ModelNotFoundError) as err:
        llm.generate(PROMPT, max_tokens=2)
    msg = str(err.value)
    assert "some-org/some-model-that-is-not-cached" in msg and str(tmp_path / "empty-hub") in msg
    llm.close()


@pytest.mark.parametrize("model", ["not a repo id at all", "./relative/missing", "~/missing-model-dir",
                                   "a/b/c"])
def test_model_string_neither_folder_nor_repo(still_works, model):
    with pytest.raises(ModelNotFoundError):
        create_llm("mlx", model=model).get_model_info()


def test_errors_are_all_abstractllm_errors():
    for cls in (InvalidParameterError, ModelLoadError, ModelNotFoundError):
        assert issubclass(cls, AbstractLLMError)


# ------------------------------------------------------------------ errors inside the backend
@pytest.mark.parametrize("top_k", [1024, 5000])
def test_top_k_not_below_vocabulary_is_refused(tiny_llm, still_works, top_k):
    # the tiny model has 1024 tokens; mlx-lm's top-k refuses k >= vocabulary
    with pytest.raises(InvalidParameterError, match="vocabulary size") as err:
        tiny_llm.generate(PROMPT, temperature=1.0, top_k=top_k, max_tokens=3)
    assert err.value.param == "top_k"
    assert tiny_llm.generate(PROMPT, temperature=1.0, top_k=1023, seed=1, max_tokens=3).usage.completion_tokens == 3


def test_provider_recovers_from_an_error_inside_mlx_lm_sampler(tiny_model, monkeypatch):
    """A failure inside mlx-lm's compiled sampler must not poison the worker thread's random state:
    later sampled generations still work (and seeded ones are still reproducible)."""
    from abstractllm import GenerationError

    with create_llm("mlx", model=str(tiny_model), temperature=1.0, max_tokens=6) as llm:
        # as for a model whose config does not state its vocabulary size: mlx-lm itself refuses top_k
        monkeypatch.setitem(llm.spec.config, "vocab_size", None)
        with pytest.raises(GenerationError, match="top_k"):
            llm.generate(PROMPT, top_k=10_000)
        assert llm.generate(PROMPT).usage.completion_tokens == 6  # unseeded sampling works
        seeded = llm.generate(PROMPT, seed=3).token_ids
        with pytest.raises(GenerationError, match="top_k"):
            list(llm.generate(PROMPT, top_k=10_000, stream=True))
        assert llm.generate(PROMPT, seed=3).token_ids == seeded  # seeded sampling is reproducible
        assert llm.generate(PROMPT, temperature=0.0).token_ids == llm.generate(PROMPT, temperature=0.0).token_ids


def test_chat_template_that_refuses_the_messages(tmp_path, tiny_llm, still_works):
    """A template that raises (as Gemma's does for a system role) gives InvalidParameterError."""
    from abstractllm.testing import build_text_model
    from abstractllm.testing.tokenizer import CHATML_TEMPLATE

    template = ("{%- if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
                "{%- endif %}" + CHATML_TEMPLATE)
    path = build_text_model(tmp_path / "m", "tiny", chat_template=template)
    with create_llm("mlx", model=str(path), temperature=0.0) as llm:
        with pytest.raises(InvalidParameterError, match="System role not supported") as err:
            llm.generate(PROMPT, system_prompt="Be brief.", max_tokens=3)
        assert err.value.param == "messages"
        assert llm.generate(PROMPT, max_tokens=3).usage.completion_tokens == 3
