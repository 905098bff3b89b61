"""Text-only requests of a vision checkpoint batched through mlx-lm on the vision model's own arrays
(``abstractllm/providers/mlx/vision_text.py``), for every zoo vision family that mlx-lm has a model for:
the prompt ids are mlx-vlm's, greedy tokens equal raw mlx-vlm's, batched = solo (and really batched), an
image request between text ones still equals raw mlx-vlm, and the text path holds no second copy of the
weights. The families mlx-lm has no model for keep today's path (mlx-vlm, one at a time)."""

from __future__ import annotations

import json
import threading

import pytest

from abstractllm import create_llm
from abstractllm.testing.zoo import FAMILIES, family_model
from abstractllm.types import Message

MAX = 12
VISION = [name for name, f in FAMILIES.items() if f.kind == "vision"]
PROMPTS = ["Hi", "What is the capital of France, and why is it that one?",
           "Write three words about the sea, please, now, and then a few more about the sky and the hills."]


def _mlx_lm_has(path) -> bool:
    """Data, not names: whether mlx-lm has a model class for the config's model_type."""
    from mlx_lm.utils import _get_classes

    try:
        _get_classes(json.loads((path / "config.json").read_text()))
    except ValueError:
        return False
    return True


BATCHED = [n for n in VISION if _mlx_lm_has(family_model(n))]
FALLBACK = [n for n in VISION if n not in BATCHED]


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    from PIL import Image

    path = tmp_path_factory.mktemp("vtb-media") / "red.png"
    Image.new("RGB", (64, 48), (200, 30, 10)).save(path)
    return str(path)


@pytest.fixture(scope="module", params=BATCHED)
def fam(request):
    """(name, path, provider, raw mlx-vlm (model, processor)) per family with the text path."""
    from mlx_vlm import load

    path = family_model(request.param)
    with create_llm("mlx", model=str(path), temperature=0.0, max_tokens=MAX) as llm:
        llm.load()
        yield request.param, path, llm, load(str(path))


def raw_vlm(raw, messages: list[dict], image: str | None = None, max_tokens: int = MAX,
            text: list[str] | None = None) -> tuple[list[int], list[int]]:
    """Raw mlx-vlm, as its docs call it: ``(prompt ids it used, greedy tokens)``; its text into ``text``."""
    import importlib

    from mlx_vlm import stream_generate
    from mlx_vlm.prompt_utils import apply_chat_template

    model, processor = raw
    templated = apply_chat_template(processor, model.config, messages, num_images=1 if image else 0)
    prompt: list[int] = []
    dispatch = importlib.import_module("mlx_vlm.generate.dispatch")  # (the attribute mlx_vlm.generate is a function)
    step = dispatch.generate_step

    def spy(input_ids, *args, **kwargs):  # the prompt ids mlx-vlm's stream_generate prefills
        prompt.extend(int(t) for t in input_ids.reshape(-1).tolist())
        return step(input_ids, *args, **kwargs)

    dispatch.generate_step = spy
    try:
        results = list(stream_generate(model, processor, templated, image=[image] if image else None,
                                       max_tokens=max_tokens, temperature=0.0))
    finally:
        dispatch.generate_step = step
    if text is not None:
        text.append("".join(r.text for r in results))
    return prompt, [int(r.token) for r in results if r.finish_reason is None]


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_the_text_path_is_chosen_by_data():
    from abstractllm.providers.mlx.vision import VisionAdapter
    from abstractllm.providers.mlx.vision_text import RoutedAdapter

    assert {"qwen2_vl", "qwen2_5_vl", "qwen3_vl", "gemma3"} <= set(BATCHED)
    for name in VISION:
        with create_llm("mlx", model=str(family_model(name)), max_tokens=2) as llm:
            llm.load()
            info = llm.get_model_info()
            if name in BATCHED:
                assert isinstance(llm._adapter, RoutedAdapter), info.get("text_batching")
                assert "shared weights" in info["text_batching"]
            else:
                assert type(llm._adapter) is VisionAdapter
                assert info["text_batching"].startswith("off: mlx-lm has no model of type")
            assert llm.generate("Hi").usage.completion_tokens == 2


def test_prompt_ids_and_greedy_tokens_equal_raw_mlx_vlm(fam):
    name, path, llm, raw = fam
    adapter = llm._adapter
    convos = [_user(p) for p in PROMPTS]
    convos.append([{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"},
                   {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "And then?"}])
    hidden = llm.worker.call(lambda: dict(adapter.hidden))  # control tokens: never in content
    for messages in convos:
        raw_text: list[str] = []
        raw_prompt, raw_tokens = raw_vlm(raw, messages, text=raw_text)
        ours = llm.worker.call(lambda m=messages: adapter.text.encode_messages(
            [Message(d["role"], d["content"]) for d in m]))
        assert ours == raw_prompt, name
        got = llm.generate(messages=messages)
        assert got.token_ids[:len(raw_tokens)] == raw_tokens and len(got.token_ids) - len(raw_tokens) in (0, 1)
        assert got.usage.prompt_tokens == len(raw_prompt)
        if not FAMILIES[name].reasoning and not set(raw_tokens) & set(hidden):
            assert got.content == raw_text[0]  # mlx-vlm's text for the same ids
    # served by the text adapter (its own counters), not by mlx-vlm
    assert llm.worker.call(lambda: adapter.text.cache_lookups) >= len(convos)


def test_concurrent_text_requests_are_batched_and_equal_solo(fam):
    name, path, llm, raw = fam
    solo = [llm.generate(p).token_ids for p in PROMPTS]
    llm.clear_stats()
    together = llm.generate(PROMPTS)
    assert [r.token_ids for r in together] == solo
    stats = llm.get_stats()
    assert stats["average_batch_size"] > 1, stats


def test_image_request_between_text_requests_equals_raw_mlx_vlm(fam, picture):
    name, path, llm, raw = fam
    _, raw_image = raw_vlm(raw, _user("Describe."), image=picture)
    solo = [llm.generate(p, max_tokens=24).token_ids for p in PROMPTS[1:]]
    llm.clear_stats()
    first = llm.generate(PROMPTS[1], max_tokens=24, stream=True)
    chunks = [next(first)]  # the first text request is decoding
    results: dict[str, object] = {}

    def image() -> None:
        results["image"] = llm.generate("Describe.", media=[picture])

    def text() -> None:
        results["text"] = llm.generate(PROMPTS[2], max_tokens=24)

    threads = [threading.Thread(target=image), threading.Thread(target=text)]
    for t in threads:
        t.start()
    chunks += list(first)
    for t in threads:
        t.join()
    got = results["image"].token_ids
    assert got[:len(raw_image)] == raw_image and len(got) - len(raw_image) in (0, 1)
    assert [t for c in chunks for t in c.token_ids or []] == solo[0] and results["text"].token_ids == solo[1]
    assert llm.get_stats()["average_batch_size"] > 1


def test_the_text_path_shares_the_weights(fam):
    import gc

    import mlx.core as mx
    from mlx.utils import tree_flatten

    from abstractllm.providers.mlx.vision_text import RoutedAdapter, with_text_batching

    name, path, llm, raw = fam
    adapter = llm._adapter
    vision_arrays = {id(v) for _, v in tree_flatten(adapter.vision.model.parameters())}
    text_params = tree_flatten(adapter.text.model.parameters())
    assert text_params and all(id(v) in vision_arrays for _, v in text_params)  # the same array objects
    weight_bytes = sum(v.nbytes for _, v in text_params)

    def set_up_again() -> int:  # a second text path over the same vision model: what does it add?
        gc.collect()
        before = mx.get_active_memory()
        routed = with_text_batching(adapter.vision)
        assert isinstance(routed, RoutedAdapter)
        gc.collect()
        grown = mx.get_active_memory() - before
        routed.text.unload()
        return grown

    grown = llm.worker.call(set_up_again)
    assert grown < weight_bytes / 4, (grown, weight_bytes)


@pytest.mark.parametrize("name", FALLBACK)
def test_families_without_an_mlx_lm_model_keep_the_vision_path(name):
    from mlx_vlm import load

    path = family_model(name)
    raw = load(str(path))
    _, raw_tokens = raw_vlm(raw, _user("Hello there."))
    with create_llm("mlx", model=str(path), temperature=0.0, max_tokens=MAX) as llm:
        got = llm.generate("Hello there.")
    assert got.token_ids[:len(raw_tokens)] == raw_tokens


def test_a_failed_probe_falls_back_to_mlx_vlm(monkeypatch):
    from abstractllm.providers.mlx import vision_text
    from abstractllm.providers.mlx.vision import VisionAdapter

    monkeypatch.setattr(vision_text, "_probe", lambda vision, model: "the probe's next-token logits differ")
    with create_llm("mlx", model=str(family_model(BATCHED[0])), temperature=0.0, max_tokens=4) as llm:
        llm.load()
        assert type(llm._adapter) is VisionAdapter
        assert llm.get_model_info()["text_batching"] == "off: the probe's next-token logits differ"
        assert llm.generate("Hi").usage.completion_tokens == 4
