"""Every family of the zoo (abstractllm.testing.zoo), on real MLX execution: greedy parity with raw mlx-lm,
batched = solo, turn 2 = cold, stream = non-stream, forced tool calls (the model's own tool-call tokens),
tools + response_format, response_format alone, and, on scripted models, the family's real tool-call markup
parsed in auto mode, control tokens never in content, and the history re-tokenizing to what was generated.

One parametrised module: the family x feature matrix that docs/mlx/models.md reports."""

from __future__ import annotations

import json
import os
import threading

import pytest

from abstractllm import create_llm
from abstractllm.testing.zoo import FAMILIES, family_model
from text_oracle import raw_generate, raw_load

TEXT = [name for name, f in FAMILIES.items() if f.kind == "text"]
TOOLS = [name for name in TEXT if FAMILIES[name].tool_format]

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Rome", "Oslo"]},
                                                    "days": {"type": "integer", "minimum": 1, "maximum": 7}},
                   "required": ["city", "days"]}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "The time in a zone.",
    "parameters": {"type": "object", "properties": {"zone": {"type": "string", "enum": ["UTC", "CET"]}},
                   "required": ["zone"]}}}
CITY = {"type": "object", "properties": {"name": {"type": "string", "enum": ["Paris", "Oslo"]},
                                         "size": {"type": "integer", "minimum": 0, "maximum": 99}},
        "required": ["name", "size"], "additionalProperties": False}
PROMPTS = ["Hi", "What is the capital of France, and why?", "Write three words about the sea, please, now."]
CALL = {"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}


@pytest.fixture(scope="module", params=TEXT)
def fam(request):
    """(family, model path, greedy provider) of a text family's random-weight model."""
    path = family_model(request.param)
    with create_llm("mlx", model=str(path), temperature=0.0, max_tokens=12) as llm:
        yield FAMILIES[request.param], path, llm


def _conversation(prompt: str) -> list[dict]:
    return [{"role": "user", "content": prompt}]


def test_greedy_parity_with_raw_mlx_lm(fam):
    family, path, llm = fam
    _, tok = raw_load(path)
    for prompt in PROMPTS[:2]:
        ids = list(tok.apply_chat_template(_conversation(prompt), add_generation_prompt=True))
        raw = raw_generate(path, ids, max_tokens=12)
        r = llm.generate(prompt)
        assert r.token_ids == raw.tokens and r.usage.prompt_tokens == len(ids)
        if family.reasoning is None:
            assert r.content == raw.text
        else:  # random text has no markup: all answer, or all reasoning where the prompt opens it
            assert raw.text.strip() in (r.content.strip(), (r.reasoning or "").strip())


def test_batched_equals_solo_for_prompts_of_different_lengths(fam):
    _, _, llm = fam
    solo = [llm.generate(p).token_ids for p in PROMPTS]
    together = [r.token_ids for r in llm.generate(PROMPTS)]
    assert together == solo
    results: dict[int, list[int]] = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, llm.generate(PROMPTS[i]).token_ids))
               for i in range(len(PROMPTS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert [results[i] for i in range(len(PROMPTS))] == solo


def test_turn_two_from_the_cache_equals_cold(fam):
    family, path, llm = fam
    history = _conversation(PROMPTS[1])
    first = llm.generate(messages=history)
    history += [{"role": "assistant", "content": first.content}, {"role": "user", "content": "And then?"}]
    warm = llm.generate(messages=history)
    with create_llm("mlx", model=str(path), temperature=0.0, max_tokens=12, prompt_cache_bytes=0) as cold_llm:
        cold = cold_llm.generate(messages=history)
    assert warm.token_ids == cold.token_ids and warm.content == cold.content
    assert cold.usage.cached_tokens == 0 and warm.usage.prompt_tokens == cold.usage.prompt_tokens
    # a trimmable cache serves the shared prefix; recurrent / rotating caches cannot be cut back, so they are
    # served from the snapshots taken at message boundaries (docs/mlx/models.md: prefix reuse)
    _, tok = raw_load(path)
    asked = history[:-2]  # the first request's messages: its prompt up to the generation prompt is a snapshot
    prompt, no_gen = (list(tok.apply_chat_template(asked, add_generation_prompt=g)) for g in (True, False))
    snapshot = min(next(i for i, (a, b) in enumerate(zip(prompt + [0], no_gen + [-1])) if a != b), len(prompt) - 1)
    assert 0 < snapshot <= warm.usage.cached_tokens


def test_stream_equals_non_stream(fam):
    _, _, llm = fam
    whole = llm.generate(PROMPTS[1])
    chunks = list(llm.generate(PROMPTS[1], stream=True))
    assert "".join(c.content for c in chunks) == whole.content
    assert [t for c in chunks for t in c.token_ids] == whole.token_ids
    assert chunks[-1].finish_reason == whole.finish_reason


def test_response_format_parses(fam):
    family, _, llm = fam
    # a model that reasons first (where thinking cannot be switched off) is given a budget: random weights
    # would think until max_tokens
    r = llm.generate("A city?", response_format=CITY, max_tokens=80, thinking_budget=4 if family.reasoning else None)
    data = json.loads(r.content)
    assert data["name"] in ("Paris", "Oslo") and 0 <= data["size"] <= 99


@pytest.fixture(scope="module", params=TOOLS)
def tool_fam(request):
    path = family_model(request.param)
    with create_llm("mlx", model=str(path), temperature=0.0, max_tokens=120) as llm:
        yield FAMILIES[request.param], path, llm


def test_forced_tool_calls_use_the_models_own_tokens(tool_fam):
    """Required and named tool choices, streamed and not, and a forced call with a response_format: the
    grammar writes the format's markup as the tokenizer's own (added) tokens where it has them."""
    family, path, llm = tool_fam
    # where thinking cannot be switched off, random weights would think until max_tokens: a budget ends it
    kw = {"thinking_budget": 4} if family.reasoning else {}
    ask = _conversation("What is the weather in Paris for three days?")
    r = llm.generate(messages=ask, tools=[WEATHER, TIME], tool_choice="required", **kw)
    assert r.finish_reason == "tool_calls" and r.tool_calls and r.tool_calls[0].name in ("get_weather", "get_time")
    named = llm.generate(messages=ask, tools=[WEATHER, TIME], tool_choice="get_weather", **kw)
    assert [c.name for c in named.tool_calls] == ["get_weather"]
    assert named.tool_calls[0].arguments["city"] in ("Paris", "Rome", "Oslo")
    chunks = list(llm.generate(messages=ask, tools=[WEATHER, TIME], tool_choice="get_weather", stream=True, **kw))
    assert [c.arguments for ch in chunks for c in (ch.tool_calls or [])] == [c.arguments for c in named.tool_calls]
    with_format = llm.generate(messages=ask, tools=[WEATHER], tool_choice="required", response_format=CITY, **kw)
    assert [c.name for c in with_format.tool_calls] == ["get_weather"]
    auto_format = llm.generate(messages=ask, tools=[WEATHER], response_format=CITY, **kw)
    assert auto_format.tool_calls or json.loads(auto_format.content)["name"] in ("Paris", "Oslo")
    for reply in (r, named, with_format):
        assert reply.content.strip() == "" and (family.tool_format != "json_tools" or "<tool" not in reply.content)


def _assistant_turn(path, message: dict) -> str:
    """What the family's template renders for ``message`` as the reply to a user turn: the text a real model
    of the family writes (up to its end-of-turn)."""
    _, tok = raw_load(path)
    base = _conversation("What is the weather in Paris?")
    prompt = tok.apply_chat_template(base, tools=[WEATHER], add_generation_prompt=True, tokenize=False)
    full = tok.apply_chat_template(base + [message], tools=[WEATHER], tokenize=False)
    turn = full[len(os.path.commonprefix([prompt, full])):]
    ends = [tok.convert_ids_to_tokens(i) for i in tok.eos_token_ids]
    cut = min((turn.find(e) for e in ends if e and e in turn), default=len(turn))
    return turn[:cut]


@pytest.mark.parametrize("name", TOOLS)
def test_scripted_tool_call_in_the_familys_markup_is_parsed(name):
    """A scripted model writes the family's own tool-call markup (as its template renders a call) in auto
    mode: the call comes out parsed, whole in one streamed chunk, and no markup reaches content."""
    random_path = family_model(name)
    call = {"role": "assistant", "content": "",
            "tool_calls": [{"id": "abcdefghi", "type": "function",
                            "function": {"name": CALL["name"], "arguments": CALL["arguments"]}}]}
    script = _assistant_turn(random_path, call)
    path = family_model(name, script=script)
    with create_llm("mlx", model=str(path), temperature=0.0, max_tokens=len(script) + 8) as llm:
        r = llm.generate("What is the weather in Paris?", tools=[WEATHER])
        assert [(c.name, c.arguments) for c in r.tool_calls] == [(CALL["name"], CALL["arguments"])]
        assert r.finish_reason == "tool_calls"
        assert "get_weather" not in r.content and "{" not in r.content
        chunks = list(llm.generate("What is the weather in Paris?", tools=[WEATHER], stream=True))
        with_calls = [c for c in chunks if c.tool_calls]
        assert len(with_calls) == 1 and with_calls[0].tool_calls[0].arguments == CALL["arguments"]
        assert "".join(c.content for c in chunks) == r.content


def _control_token(family) -> str:
    """A control token of the family (special, not end-of-turn, not markup a parser reads)."""
    ends = set(family.eos_tokens) | {family.bos_token, family.pad_token}
    pool = [t for t, special in family.added_tokens if special] + list(family.special_tokens)
    return next(t for t in pool if t not in ends and "tool" not in t.lower() and "think" not in t)


@pytest.mark.parametrize("name", TEXT)
def test_control_tokens_never_reach_content_and_the_reply_retokenizes(name):
    family = FAMILIES[name]
    token = _control_token(family)
    reply = f"Sure{token}, the sea is blue."
    if family.reasoning == "think-in-prompt":  # the prompt opened the reasoning: the reply closes it first
        reply = "Hmm.</think>" + reply
    path = family_model(name, script=reply)
    with create_llm("mlx", model=str(path), temperature=0.0, max_tokens=64) as llm:
        r = llm.generate("Hi")
        assert r.content == "Sure, the sea is blue." and token not in r.content
        streamed = "".join(c.content for c in llm.generate("Hi", stream=True))
        assert streamed == r.content


def test_unsupported_model_type_names_it_and_the_installed_backends(tmp_path):
    import shutil
    from importlib.metadata import version

    from abstractllm.exceptions import UnsupportedModelError

    shutil.copytree(family_model("qwen3"), tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps({**config, "model_type": "frobnicator"}))
    with create_llm("mlx", model=str(tmp_path / "m")) as llm:
        with pytest.raises(UnsupportedModelError) as err:
            llm.generate("Hi")
    assert "'frobnicator'" in str(err.value) and f"mlx-lm {version('mlx-lm')}" in str(err.value)
    assert f"mlx-vlm {version('mlx-vlm')}" in str(err.value)


# ---------------------------------------------------------------------------------------------- vision
VISION = [name for name, f in FAMILIES.items() if f.kind == "vision"]


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    from PIL import Image

    path = tmp_path_factory.mktemp("zoo-media") / "red.png"
    Image.new("RGB", (64, 48), (200, 30, 10)).save(path)
    return str(path)


@pytest.fixture(scope="module", params=VISION)
def vfam(request):
    path = family_model(request.param)
    with create_llm("mlx", model=str(path), temperature=0.0, max_tokens=8) as llm:
        yield FAMILIES[request.param], path, llm


def _raw_vlm(path, prompt: str, image: str, max_tokens: int) -> list[int]:
    """Raw mlx-vlm, as its docs call it: the prompt templated with the image count, greedy."""
    import mlx.core as mx
    from mlx_vlm import load, stream_generate
    from mlx_vlm.prompt_utils import apply_chat_template

    model, processor = load(str(path))
    templated = apply_chat_template(processor, model.config, prompt, num_images=1)
    tokens = [int(r.token) for r in stream_generate(model, processor, templated, image=[image],
                                                     max_tokens=max_tokens, temperature=0.0)
              if r.finish_reason is None]  # as tests/test_vision_generation.py reads mlx-vlm's stream
    mx.clear_cache()
    return tokens


def test_vision_greedy_parity_with_raw_mlx_vlm_and_stream(vfam, picture):
    family, path, llm = vfam
    r = llm.generate("Describe.", media=[picture])
    raw = _raw_vlm(path, "Describe.", picture, 8)
    assert r.token_ids[:len(raw)] == raw and len(r.token_ids) - len(raw) in (0, 1)
    chunks = list(llm.generate("Describe.", media=[picture], stream=True))
    assert "".join(c.content for c in chunks) == r.content
    assert "".join(c.reasoning or "" for c in chunks) == (r.reasoning or "")
    text_only = llm.generate("Hello there.")  # a vision checkpoint answers text-only requests too
    assert text_only.usage.completion_tokens > 0


def test_vision_response_format_and_forced_tools(vfam, picture):
    family, path, llm = vfam
    r = llm.generate("A city?", media=[picture], response_format=CITY, max_tokens=80,
                     thinking_budget=4 if family.reasoning else None)
    assert json.loads(r.content)["name"] in ("Paris", "Oslo")
    if family.tool_format:
        call = llm.generate("Weather?", media=[picture], tools=[WEATHER, TIME], tool_choice="get_weather",
                            max_tokens=60, thinking_budget=4 if family.reasoning else None)
        assert [c.name for c in call.tool_calls] == ["get_weather"] and call.content.strip() == ""


@pytest.mark.parametrize("name", [n for n in VISION if FAMILIES[n].tool_format])
def test_vision_scripted_tool_call_in_the_familys_markup(name, picture):
    random_path = family_model(name)
    call = {"role": "assistant", "content": "",
            "tool_calls": [{"id": "abcdefghi", "type": "function",
                            "function": {"name": CALL["name"], "arguments": CALL["arguments"]}}]}
    script = _assistant_turn(random_path, call)
    if FAMILIES[name].reasoning == "think-in-prompt":
        script = "Hmm.</think>\n\n" + script.split("</think>")[-1].lstrip("\n")
    path = family_model(name, script=script)
    with create_llm("mlx", model=str(path), temperature=0.0, max_tokens=len(script) + 8) as llm:
        r = llm.generate("What is the weather in Paris?", media=[picture], tools=[WEATHER])
        assert [(c.name, c.arguments) for c in r.tool_calls] == [(CALL["name"], CALL["arguments"])]
        assert "get_weather" not in r.content and "{" not in r.content


def test_the_families_table_in_the_docs_says_what_the_zoo_declares():
    """docs/mlx/models.md: one row per family, its cells equal to the family's declared facts (which the
    tests above check on real execution)."""
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "mlx" / "models.md").read_text(encoding="utf-8")
    rows = {}
    for line in text.splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) == 9 and cells[0] in FAMILIES:
            rows[cells[0]] = cells
    assert set(rows) == set(FAMILIES)
    for name, (_, kind, model_type, tools, reasoning, cache, batching, reuse, source) in rows.items():
        f = FAMILIES[name]
        assert (kind, model_type, cache, source) == (f.kind, f.model_type, f.cache, f.source), name
        assert tools == (f.tool_format or "-") and reasoning == (f.reasoning or "-"), name
        assert reuse == ("yes" if f.cache == "kv" else "snapshots" if f.kind == "text" else "text-only: snapshots"), name
        assert batching.startswith("yes" if f.kind == "text" else "one at a time"), name


# Mistral's template writes " " + the reply after [/INST]: its real SentencePiece tokens carry that space
# ("▁Paris"), which the zoo's byte-level stand-in tokenizer cannot reproduce; reasoning templates drop the
# reasoning of earlier turns by design (the reply's text is re-prefilled; the prompt before it is reused)
@pytest.mark.parametrize("name", [n for n in TEXT if FAMILIES[n].cache == "kv" and not FAMILIES[n].reasoning
                                  and n != "mistral"])
def test_the_reply_sent_back_re_tokenizes_to_what_was_generated(name):
    """A reply written in the tokenizer's own tokens (as real models write) and sent back in the history gives
    the same ids: the next turn reuses the whole first exchange from the prompt cache, reply included."""
    reply = "Paris is the capital of France."
    path = family_model(name, script=reply)
    _, tok = raw_load(path)
    with create_llm("mlx", model=str(path), temperature=0.0, max_tokens=32) as llm:
        history = _conversation("What is the capital of France?")
        first = llm.generate(messages=history)
        assert first.content == reply
        history += [{"role": "assistant", "content": first.content}, {"role": "user", "content": "Why?"}]
        second = llm.generate(messages=history)
    prompt = list(tok.apply_chat_template(history, add_generation_prompt=True))
    assert prompt[:first.usage.prompt_tokens + len(first.token_ids)] == \
        list(tok.apply_chat_template(history[:1], add_generation_prompt=True)) + first.token_ids
    assert second.usage.cached_tokens >= first.usage.prompt_tokens + len(first.token_ids) - 1


@pytest.mark.parametrize("name", ["qwen3", "llama", "gpt_oss"])
def test_stop_strings_across_token_boundaries_on_scripted_replies(name):
    """A stop string that spans several of the reply's tokens cuts the answer exactly before it, streamed or
    not; nothing of it leaks (gpt-oss: in the final channel, after the reasoning)."""
    answer = "Alpha beta gamma delta."
    script = ("<|channel|>analysis<|message|>Think.<|end|><|start|>assistant<|channel|>final<|message|>" + answer
              if FAMILIES[name].reasoning == "harmony" else answer)
    path = family_model(name, script=script)
    with create_llm("mlx", model=str(path), temperature=0.0, max_tokens=64) as llm:
        assert llm.generate("Hi").content == answer
        for stop, kept in (("ta gam", "Alpha be"), ("delta.", "Alpha beta gamma "), ("a b", "Alph")):
            r = llm.generate("Hi", stop=[stop])
            assert (r.content, r.finish_reason) == (kept, "stop")
            assert "".join(c.content for c in llm.generate("Hi", stop=[stop], stream=True)) == kept


@pytest.mark.parametrize("name", ["qwen3", "llama"])
def test_a_reply_that_starts_with_a_space_keeps_it(name):
    """mlx-lm's BPE streaming detokenizer drops the first token's leading space; the tokenizer's decode keeps
    it, and so does content (streamed too), so the reply sent back re-tokenizes as generated."""
    reply = " Sure, here it is."
    path = family_model(name, script=reply)
    with create_llm("mlx", model=str(path), temperature=0.0, max_tokens=32) as llm:
        r = llm.generate("Hi")
        assert r.content == reply and r.content == raw_load(path)[1]._tokenizer.decode(
            r.token_ids, skip_special_tokens=True)
        assert "".join(c.content for c in llm.generate("Hi", stream=True)) == reply
