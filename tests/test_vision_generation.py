"""Vision generation on the tiny offline Qwen2-VL model: parity with raw mlx-vlm (greedy, one and several
images), streaming, system prompt, history with images, text-only prompts, video, the prompt cache keyed by
image content, and a text-only model refusing images."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from abstractllm import create_llm
from abstractllm.exceptions import UnsupportedFeatureError

MAX = 12


def noise(seed: int, size=(84, 56)) -> Image.Image:
    return Image.fromarray((np.random.RandomState(seed).rand(size[1], size[0], 3) * 255).astype("uint8"))


@pytest.fixture(scope="module")
def vlm(vision_model: Path):
    llm = create_llm("mlx", model=str(vision_model), temperature=0.0, max_tokens=MAX)
    yield llm
    llm.close()


@pytest.fixture(scope="module")
def raw(vision_model: Path):
    """Raw mlx-vlm on the same folder: the parity oracle."""
    from mlx_vlm import load

    return load(str(vision_model))


def raw_generate(
    raw, prompt: str, images, system: str | None = None, counts: dict | None = None
) -> tuple[str, list[int]]:
    from mlx_vlm import stream_generate
    from mlx_vlm.prompt_utils import apply_chat_template

    model, proc = raw
    msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    templated = apply_chat_template(proc, model.config, msgs, num_images=len(images))
    text, ids = [], []
    for r in stream_generate(model, proc, templated, image=list(images) or None, max_tokens=MAX, temperature=0.0):
        text.append(r.text)
        if r.finish_reason is None:
            ids.append(int(r.token))
    if counts is not None:
        counts.update(prompt_tokens=r.prompt_tokens, generation_tokens=r.generation_tokens)
    return "".join(text), ids


@pytest.mark.parametrize("n_images", [1, 3])
def test_parity_with_raw_mlx_vlm(vlm, raw, n_images):
    images = [noise(i, (84 + 28 * i, 56)) for i in range(n_images)]
    counts: dict = {}
    expected, expected_ids = raw_generate(raw, "Describe the pictures.", images, counts=counts)
    got = vlm.generate("Describe the pictures.", files=images)
    assert got.content == expected
    assert got.token_ids[: len(expected_ids)] == expected_ids
    assert got.usage.completion_tokens == len(got.token_ids) == counts["generation_tokens"]
    assert got.usage.prompt_tokens == counts["prompt_tokens"]  # exact, image tokens included
    # image tokens are counted: 84x56 -> 3x2 merged tokens for the first image, more with more images
    text_only = vlm.generate("Describe the pictures.")
    assert got.usage.prompt_tokens > text_only.usage.prompt_tokens + 6 * n_images - 1


def test_image_order_matters(vlm):
    a, b = noise(10), noise(11)
    assert vlm.generate("Compare.", files=[a, b]).content != vlm.generate("Compare.", files=[b, a]).content


def test_streaming_concatenates_to_the_whole(vlm):
    img = noise(3)
    whole = vlm.generate("What is it?", files=[img], max_tokens=10)
    chunks = list(vlm.generate("What is it?", files=[img], max_tokens=10, stream=True))
    assert len(chunks) >= 3  # real per-token chunks, then the final one
    assert "".join(c.content for c in chunks) == whole.content
    assert chunks[-1].finish_reason == whole.finish_reason and chunks[-1].usage == whole.usage


def test_system_prompt_matches_raw_and_changes_output(vlm, raw):
    img = noise(4)
    expected, _ = raw_generate(raw, "Hi.", [img], system="You are terse.")
    got = vlm.generate("Hi.", files=[img], system_prompt="You are terse.")
    assert got.content == expected
    assert got.usage.prompt_tokens > vlm.generate("Hi.", files=[img]).usage.prompt_tokens


def test_history_with_images_in_earlier_turns(vlm):
    first, second = noise(5), noise(6)
    msgs = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "Look."}, {"type": "image_url", "image_url": {"url": first}}],
        },
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "And now?"},
    ]
    r1 = vlm.generate(messages=msgs)
    msgs2 = [
        dict(msgs[0], content=[msgs[0]["content"][0], {"type": "image_url", "image_url": {"url": second}}]),
        msgs[1],
        msgs[2],
    ]
    r2 = vlm.generate(messages=msgs2)
    no_image = vlm.generate(messages=[{"role": "user", "content": "Look."}] + msgs[1:])
    assert r1.usage.prompt_tokens == r2.usage.prompt_tokens > no_image.usage.prompt_tokens
    assert r1.content != r2.content  # the earlier turn's image is really seen


def test_text_only_prompt_to_vision_model(vlm, raw):
    expected, _ = raw_generate(raw, "Say something.", [])
    got = vlm.generate("Say something.")
    assert got.content == expected and got.content


def test_stop_string_is_applied_on_text(vlm):
    img = noise(7)
    full = vlm.generate("Go.", files=[img]).content
    assert len(full) > 4
    stop = full[2:4]
    cut = vlm.generate("Go.", files=[img], stop=[stop])
    assert cut.finish_reason == "stop" and cut.content == full[: full.index(stop)]


def write_video(path: Path, seconds: float = 2.0, fps: int = 10, size=(64, 48)) -> Path:
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(int(seconds * fps)):
            arr = np.zeros((size[1], size[0], 3), dtype=np.uint8)
            arr[:, : (i * 3) % size[0]] = (200, 50, 20)
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_video_frames_sampled_and_generated(vlm, tmp_path: Path):
    from abstractllm.media import load_video

    path = write_video(tmp_path / "clip.mp4")
    frames = load_video(str(path), fps=2.0, max_frames=32)
    assert frames.shape[0] == 4 and frames.shape[-1] == 3  # 2 s at 2 fps
    assert load_video(path.read_bytes(), fps=10.0, max_frames=3).shape[0] == 3  # capped, spread out
    r = vlm.generate("What happens?", files=[str(path)])
    assert r.content and r.usage.completion_tokens > 0
    r_fewer = vlm.generate("What happens?", files=[str(path)], video_fps=1.0)
    assert r_fewer.usage.prompt_tokens < r.usage.prompt_tokens  # fewer frames -> fewer video tokens


def test_prompt_cache_follow_up_and_different_image_same_size(vision_model: Path):
    a, b = noise(20), noise(21)  # same size, different content: identical token ids
    turn1 = [
        {"role": "user", "content": [{"type": "text", "text": "What?"}, {"type": "image_url", "image_url": {"url": a}}]}
    ]
    with (
        create_llm("mlx", model=str(vision_model), temperature=0.0, max_tokens=MAX) as warm,
        create_llm("mlx", model=str(vision_model), temperature=0.0, max_tokens=MAX, prompt_cache_bytes=0) as cold,
    ):
        r1 = warm.generate(messages=turn1)
        follow = turn1 + [{"role": "assistant", "content": r1.content}, {"role": "user", "content": "More?"}]
        w2 = warm.generate(messages=follow)
        c2 = cold.generate(messages=follow)
        assert w2.usage.cached_tokens > 0 and c2.usage.cached_tokens == 0
        assert w2.content == c2.content and w2.usage.prompt_tokens == c2.usage.prompt_tokens
        assert warm.get_model_info()["prompt_cache"]["hits"] >= 1
        # the same conversation with a different image of the same size: never the old image's state
        follow_b = [
            dict(turn1[0], content=[turn1[0]["content"][0], {"type": "image_url", "image_url": {"url": b}}])
        ] + follow[1:]
        wb = warm.generate(messages=follow_b)
        cb = cold.generate(messages=follow_b)
        assert wb.usage.cached_tokens == 0
        assert wb.content == cb.content
        # clear_cache and unload drop every state; answers stay the same
        warm.clear_cache()
        assert warm.get_model_info()["prompt_cache"]["entries"] == 0
        again = warm.generate(messages=follow)
        assert again.usage.cached_tokens == 0 and again.content == c2.content
        warm.unload()
        assert warm.generate(messages=follow).content == c2.content


def test_text_only_model_refuses_images_before_touching_them(tiny_llm):
    with pytest.raises(UnsupportedFeatureError):
        tiny_llm.generate("What is it?", files=["/no/such/image.png"])  # not even read
    with pytest.raises(UnsupportedFeatureError):
        tiny_llm.generate("What?", files=[io.BytesIO(b"not read")])
    assert tiny_llm.generate("Still works.", max_tokens=3).content is not None


def test_async_stream_with_image(vlm):
    import asyncio

    img = noise(8)

    async def go():
        parts = []
        async for chunk in await vlm.generate_async("Async?", files=[img], stream=True, max_tokens=6):
            parts.append(chunk.content)
        return "".join(parts)

    assert asyncio.run(go()) == vlm.generate("Async?", files=[img], max_tokens=6).content


def test_capabilities_come_from_config_data(vision_model: Path):
    import dataclasses

    from abstractllm.enums import ModelCapability as C
    from abstractllm.providers.mlx.source import inspect_model
    from abstractllm.providers.mlx.vision import vision_capabilities

    spec = inspect_model(vision_model)
    assert spec.kind == "vision"
    assert vision_capabilities(spec) == {C.VISION, C.MULTI_IMAGE, C.VIDEO}
    no_video = dataclasses.replace(spec, config={k: v for k, v in spec.config.items() if k != "video_token_id"})
    assert C.VIDEO not in vision_capabilities(no_video)
    single = dataclasses.replace(spec, model_type="paligemma")  # listed single-image by mlx-vlm
    assert C.MULTI_IMAGE not in vision_capabilities(single)


def test_video_as_bytes_equals_video_as_path(vlm, tmp_path: Path):
    path = write_video(tmp_path / "clip2.mp4", seconds=1.0)
    by_path = vlm.generate("Video?", files=[str(path)])
    by_bytes = vlm.generate("Video?", files=[path.read_bytes()])
    assert by_bytes.content == by_path.content and by_bytes.usage.prompt_tokens == by_path.usage.prompt_tokens


def _only_state(llm):
    """The provider's one prompt-cache state, read on its worker once the previous run has ended."""
    llm.worker.call(lambda: None)
    (state,) = llm._adapter._states.values()
    return state


def test_cancelled_follow_up_keeps_a_correct_cache_entry(vision_model: Path):
    """A follow-up cancelled mid-stream stores its image's state (cache content = recorded ids: the prompt
    and the ids generated before the cancel); the next follow-up reuses it and equals a cold run."""
    img = noise(30)
    convo = [
        {"role": "user", "content": [{"type": "text", "text": "Hm?"}, {"type": "image_url", "image_url": {"url": img}}]}
    ]
    with (
        create_llm("mlx", model=str(vision_model), temperature=0.0, max_tokens=MAX) as llm,
        create_llm("mlx", model=str(vision_model), temperature=0.0, max_tokens=MAX, prompt_cache_bytes=0) as cold,
    ):
        first = llm.generate(messages=convo)
        follow = convo + [{"role": "assistant", "content": first.content}, {"role": "user", "content": "So?"}]
        stream = llm.generate(messages=follow, stream=True, max_tokens=2000)
        next(stream), next(stream)
        stream.close()  # cancelled mid-generation
        state = _only_state(llm)
        prompt_len = cold.generate(messages=follow, max_tokens=1).usage.prompt_tokens
        assert prompt_len < len(state.token_ids) < prompt_len + 2000  # stopped mid-stream
        assert all(c.offset == len(state.token_ids) for c in state.cache)
        again = follow[:-1] + [{"role": "user", "content": "Why?"}]
        warm_r, cold_r = llm.generate(messages=again), cold.generate(messages=again)
        assert warm_r.usage.cached_tokens > 0 and cold_r.usage.cached_tokens == 0
        assert warm_r.token_ids == cold_r.token_ids and warm_r.content == cold_r.content
        assert llm.generate(messages=follow).content == cold.generate(messages=follow).content


def test_stop_string_keeps_a_correct_cache_entry(vision_model: Path):
    """A stream ended by a stop string (the adapter's generator closed early) also stores its state."""
    img = noise(36)  # its answer streams in several text pieces: " mess", ..., " pro", ...
    convo = [
        {"role": "user", "content": [{"type": "text", "text": "Hm?"}, {"type": "image_url", "image_url": {"url": img}}]},  # noqa: E501
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "Tell me."},
    ]
    with (
        create_llm("mlx", model=str(vision_model), temperature=0.0, max_tokens=MAX) as llm,
        create_llm("mlx", model=str(vision_model), temperature=0.0, max_tokens=MAX, prompt_cache_bytes=0) as cold,
    ):
        full = cold.generate(messages=convo)
        assert " pro" in full.content
        cut = llm.generate(messages=convo, stop=[" pro"])
        assert cut.finish_reason == "stop" and len(cut.token_ids) < len(full.token_ids) == MAX
        state = _only_state(llm)
        assert all(c.offset == len(state.token_ids) for c in state.cache)
        n_prompt = cut.usage.prompt_tokens
        assert n_prompt + len(cut.token_ids) <= len(state.token_ids) < n_prompt + MAX  # stopped early
        assert state.token_ids[n_prompt : n_prompt + len(cut.token_ids)] == cut.token_ids
        nxt = convo[:-1] + [{"role": "user", "content": "Why?"}]
        warm_r, cold_r = llm.generate(messages=nxt), cold.generate(messages=nxt)
        assert warm_r.usage.cached_tokens > 0 and warm_r.token_ids == cold_r.token_ids


def test_error_inside_the_compiled_sampler_leaves_sampling_working(vlm, monkeypatch):
    """An error raised inside one of mlx-vlm's compiled samplers (traced with the thread's random state as
    input and output) would leave that state unevaluable: every later sampled call on the worker would
    fail. The fault is injected by a sampler factory that calls mlx-vlm's real compiled
    ``categorical_sampling`` with a bad temperature; the adapter must give the thread a fresh key."""
    import sys

    import mlx_vlm.generate  # noqa: F401  (the package: ``mlx_vlm.generate`` the attribute is a function)
    from mlx_vlm.sample_utils import categorical_sampling

    from abstractllm import GenerationError

    img = noise(41)
    seeded = vlm.generate("Sample.", files=[img], temperature=1.0, seed=5).token_ids
    def failing_sampler(**_: object):
        return lambda logprobs: categorical_sampling(logprobs, "bad")  # raises inside the compiled trace

    monkeypatch.setattr(sys.modules["mlx_vlm.generate"], "make_sampler", failing_sampler, raising=False)
    with pytest.raises(GenerationError):
        vlm.generate("Sample.", files=[img], temperature=1.0, top_k=5)
    monkeypatch.undo()
    # unseeded sampling (mlx-vlm's compiled categorical_sampling on the thread's random state) works
    assert vlm.generate("Sample.", files=[img], temperature=1.0, top_k=5).usage.completion_tokens == MAX
    assert vlm.generate("Sample.", files=[img], temperature=1.0, seed=5).token_ids == seeded


def test_top_k_not_below_vocabulary(vlm, monkeypatch):
    """top_k >= vocabulary: a typed error before generation; with no vocabulary in the config mlx-vlm's
    own refusal (raised while sampling) is a GenerationError, and later sampled calls still work."""
    from abstractllm import GenerationError
    from abstractllm.exceptions import InvalidParameterError

    img = noise(42)
    with pytest.raises(InvalidParameterError) as err:
        vlm.generate("Sample.", files=[img], temperature=1.0, top_k=10_000)
    assert err.value.param == "top_k"
    seeded = vlm.generate("Sample.", files=[img], temperature=1.0, seed=6).token_ids
    tc = dict(vlm.spec.config.get("text_config") or {}, vocab_size=None)
    monkeypatch.setitem(vlm.spec.config, "text_config", tc)
    monkeypatch.setitem(vlm.spec.config, "vocab_size", None)
    with pytest.raises(GenerationError, match="top_k"):
        vlm.generate("Sample.", files=[img], temperature=1.0, top_k=10_000)
    monkeypatch.undo()
    assert vlm.generate("Sample.", files=[img], temperature=1.0).usage.completion_tokens == MAX
    assert vlm.generate("Sample.", files=[img], temperature=1.0, seed=6).token_ids == seeded


def test_video_size_floor_comes_from_the_processor(vision_model: Path, tmp_path: Path):
    """Frames must cover one merged patch (patch_size x merge_size of the model's processor), not a fixed
    28 px: 30 px frames pass with this model's 14 x 2, and are refused once the processor says 16 x 2."""
    from abstractllm.exceptions import ImageProcessingError

    path = write_video(tmp_path / "small.mp4", seconds=1.0, size=(30, 30))
    with create_llm("mlx", model=str(vision_model), temperature=0.0, max_tokens=2) as llm:
        assert llm.generate("Video?", files=[str(path)]).usage.completion_tokens == 2
        vp = llm._adapter.processor.video_processor
        from abstractllm.providers.mlx.vision_media import resize_factor
        assert resize_factor(llm._adapter) == vp.patch_size * vp.merge_size == 28
        vp.patch_size = 16
        with pytest.raises(ImageProcessingError, match="at least 32 pixels"):
            llm.generate("Video?", files=[str(path)])


def test_video_data_uri(vlm, tmp_path: Path):
    import base64

    path = write_video(tmp_path / "clip3.mp4", seconds=1.0)
    uri = "data:video/mp4;base64," + base64.b64encode(path.read_bytes()).decode()
    assert vlm.generate("Video?", files=[uri]).content == vlm.generate("Video?", files=[str(path)]).content


def test_process_using_vision_exits_with_code_0(vision_model: Path):
    import subprocess
    import sys

    code = (
        "import numpy as np\n"
        "from abstractllm import create_llm\n"
        f"llm = create_llm('mlx', model={str(vision_model)!r}, temperature=0, max_tokens=4)\n"
        "r = llm.generate('hi', files=[np.zeros((40, 40, 3), np.uint8)])\n"
        "print('OK', r.usage.completion_tokens)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("OK 4")


def test_seeded_sampling_is_reproducible(vlm):
    img = noise(40)
    a = vlm.generate("Sample.", files=[img], temperature=1.0, seed=7)
    b = vlm.generate("Sample.", files=[img], temperature=1.0, seed=7)
    others = {vlm.generate("Sample.", files=[img], temperature=1.0, seed=s).content for s in (8, 9, 10)}
    assert a.content == b.content
    assert len(others | {a.content}) > 1
