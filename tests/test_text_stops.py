"""Stop strings on the MLX text provider: matched on the decoded text (also across several tokens),
never included in the output nor leaked in any streamed chunk, earliest of several wins, finish_reason
"stop", and exact token accounting. Stops are derived from the model's own greedy output so that each
test really stops in the middle of a generation."""

from __future__ import annotations

import pytest

from text_oracle import chat, raw_generate, raw_prompt_ids

PROMPT = "Once upon a time there was a little robot"
MAX = 40


@pytest.fixture(scope="module")
def greedy(tiny_model):
    """Raw mlx-lm greedy output for PROMPT: (full text, per-token text segments)."""
    raw = raw_generate(tiny_model, raw_prompt_ids(tiny_model, chat(PROMPT)), max_tokens=MAX)
    assert raw.finish_reason == "length"
    return raw


def _tokens_until(segments, stop):
    """How many tokens mlx-lm must generate before ``stop`` appears in the decoded text."""
    text = ""
    for n, seg in enumerate(segments, 1):
        text += seg
        if stop in text:
            return n
    raise AssertionError(f"{stop!r} never appears")


def _multi_token_stop(segments, at):
    """A stop string spanning the boundary between two tokens, at or after token ``at``, whose first
    occurrence in the text is that boundary (so the expected cut point is known)."""
    text = "".join(segments)
    for i in range(at, len(segments) - 1):
        a, b = segments[i], segments[i + 1]
        if not a or not b:
            continue
        stop = a[-2:] + b[:2]
        boundary = len("".join(segments[: i + 1]))
        if text.find(stop) == boundary - len(a[-2:]):
            return stop
    raise AssertionError(f"no usable token boundary after {at}")


def _run_both(llm, stop):
    full = llm.generate(PROMPT, max_tokens=MAX, stop=stop)
    chunks = list(llm.generate(PROMPT, max_tokens=MAX, stop=stop, stream=True))
    return full, chunks


def _check(greedy, full, chunks, stop_used):
    idx = greedy.text.find(stop_used)
    assert idx >= 0
    expected = greedy.text[:idx]
    assert full.content == expected
    assert "".join(c.content for c in chunks) == expected
    for c in chunks:  # no stop text, nor a prefix of it held back wrongly, ever leaks
        assert stop_used not in c.content
    assert full.finish_reason == "stop" == chunks[-1].finish_reason
    n = _tokens_until(greedy.segments, stop_used)
    assert n < MAX
    assert full.usage.completion_tokens == n == chunks[-1].usage.completion_tokens
    assert full.token_ids == greedy.tokens[:n]
    assert [t for c in chunks for t in c.token_ids] == greedy.tokens[:n]


@pytest.mark.parametrize("at", [3, 10, 20])
def test_multi_token_stop_matched_on_decoded_text(tiny_llm, greedy, at):
    stop = _multi_token_stop(greedy.segments, at)
    full, chunks = _run_both(tiny_llm, stop)
    _check(greedy, full, chunks, stop)


def test_single_token_stop_and_stop_at_the_very_start(tiny_llm, greedy):
    first = greedy.segments[0]
    full, chunks = _run_both(tiny_llm, first)
    assert full.content == "" and full.finish_reason == "stop"
    assert full.usage.completion_tokens == 1
    starts = [len("".join(greedy.segments[:i])) for i in range(len(greedy.segments))]
    stop = next(seg for i, seg in enumerate(greedy.segments)
                if i >= 7 and len(seg) >= 2 and greedy.text.find(seg) == starts[i])
    full, chunks = _run_both(tiny_llm, stop)
    _check(greedy, full, chunks, stop)


def test_several_stops_earliest_wins(tiny_llm, greedy):
    early = _multi_token_stop(greedy.segments, 6)
    late = _multi_token_stop(greedy.segments, 18)
    assert greedy.text.find(early) < greedy.text.find(late)
    for stops in ([late, early], [early, late], ["never-there-xyz", late, early]):
        full, chunks = _run_both(tiny_llm, stops)
        _check(greedy, full, chunks, early)


def test_stop_never_produced_gives_everything(tiny_llm, greedy):
    # a stop that shares a long prefix with the real text (held back, then released) but never completes
    prefix = greedy.text[5:12]
    stops = [prefix + "\x00never", "zzzz-never-qqqq"]
    full, chunks = _run_both(tiny_llm, stops)
    assert full.content == greedy.text == "".join(c.content for c in chunks)
    assert full.finish_reason == "length" == chunks[-1].finish_reason
    assert full.usage.completion_tokens == MAX
    # held-back partial matches are released at the end: the last text chunk may carry them
    assert full.token_ids == greedy.tokens


def test_stop_from_config_and_per_call_override(tiny_model, greedy):
    from abstractllm import create_llm

    stop = _multi_token_stop(greedy.segments, 10)
    with create_llm("mlx", model=str(tiny_model), temperature=0.0, max_tokens=MAX, stop=stop) as llm:
        full = llm.generate(PROMPT)
        assert full.content == greedy.text[: greedy.text.find(stop)] and full.finish_reason == "stop"
        other = _multi_token_stop(greedy.segments, 4)
        assert llm.generate(PROMPT, stop=other).content == greedy.text[: greedy.text.find(other)]
        assert llm.generate(PROMPT, stop=None).content == greedy.text


def test_stop_matcher_holdback_unit():
    from abstractllm.providers.mlx.pipeline import StopMatcher

    m = StopMatcher(["END", "xy"])
    assert m.feed("abcE") == "abc"  # "E" may start "END"
    assert m.feed("N") == ""
    assert m.feed("Dtail") == "" and m.matched == "END"
    m = StopMatcher(["END"])
    assert m.feed("aEN") == "a" and m.feed("o") == "ENo" and m.flush() == ""
    m = StopMatcher(["ab", "b"])
    assert m.feed("xab") == "x" and m.matched == "ab"  # earliest position wins
