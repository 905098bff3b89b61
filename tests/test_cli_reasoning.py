"""Reasoning in the ``abstractllm`` command line, on a scripted Qwen3 model (it thinks "A B C", then answers
"D E F"): ``generate --thinking / --no-thinking / --thinking-budget N``, the reasoning in ``--json``, on
stderr apart from the streamed answer, and in ``chat`` apart from the answer (dimmed only on a terminal)."""

from __future__ import annotations

import io
import json

import pytest

from test_cli import run_cli

SCRIPT = "<think>\nA B C\n</think>\n\nD E F"
REASONING, ANSWER = "A B C", "D E F"


@pytest.fixture(scope="module")
def thinker():
    from abstractllm.testing.zoo import family_model

    return str(family_model("qwen3", script=SCRIPT))


@pytest.fixture(scope="module")
def local(thinker):
    from abstractllm import create_llm

    with create_llm("mlx", model=thinker, temperature=0.0, max_tokens=64) as llm:
        yield llm


def _json(thinker, *flags):
    r = run_cli("generate", "Hi", "--model", thinker, "-t", "0", "-m", "64", "--json", *flags)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_json_carries_the_reasoning_and_its_tokens(thinker, local):
    expected = local.generate("Hi")
    data = _json(thinker)
    assert (data["reasoning"], data["content"]) == (REASONING, ANSWER)
    assert data["usage"]["reasoning_tokens"] == expected.usage.reasoning_tokens > 0
    assert data["usage"]["reasoning_tokens"] <= data["usage"]["completion_tokens"]
    assert _json(thinker, "--thinking")["reasoning"] == REASONING


def test_thinking_flags_reach_the_model(thinker, local):
    on = _json(thinker, "--thinking")["usage"]["prompt_tokens"]
    off = _json(thinker, "--no-thinking")
    # the template's switch: an empty reasoning block written into the prompt
    assert off["usage"]["prompt_tokens"] == local.generate("Hi", thinking=False).usage.prompt_tokens > on
    budget = _json(thinker, "--thinking-budget", "2")
    expected = local.generate("Hi", thinking_budget=2)
    assert (budget["reasoning"], budget["content"]) == (expected.reasoning, ANSWER)
    assert budget["reasoning"] != REASONING and REASONING.startswith(budget["reasoning"])
    r = run_cli("generate", "Hi", "--model", thinker, "--thinking", "--no-thinking")
    assert r.returncode == 2 and "not allowed with" in r.stderr
    r = run_cli("generate", "Hi", "--model", thinker, "--thinking-budget", "-1")
    assert r.returncode == 2 and "non-negative" in r.stderr


def test_generate_streams_the_answer_and_the_reasoning_apart(thinker, local):
    r = run_cli("generate", "Hi", "--model", thinker, "-t", "0", "-m", "64", "--stats")
    assert r.returncode == 0, r.stderr
    assert r.stdout == ANSWER + "\n"  # stdout: the answer only
    assert f"[thinking]\n{REASONING}\n[/thinking]\n" in r.stderr and "\x1b[" not in r.stderr  # not a terminal
    tokens = local.generate("Hi").usage.reasoning_tokens
    assert f"generated tokens ({tokens} reasoning)" in r.stderr
    out = run_cli("generate", "Hi", "--model", thinker, "-t", "0", "-m", "64", "--no-thinking")
    assert out.stdout == ANSWER + "\n"


def test_chat_shows_the_reasoning_apart_from_the_answer(thinker):
    r = run_cli("chat", "--model", thinker, "-t", "0", "-m", "64", stdin="Hi\nAgain\n")
    assert r.returncode == 0, r.stderr
    turn = f"assistant> [thinking]\n{REASONING}\n[/thinking]\n{ANSWER}\n"
    assert r.stdout == f"you> Hi\n{turn}you> Again\n{turn}"  # the second turn has the first's reasoning back
    assert "\x1b[" not in r.stdout


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_chat_dims_the_reasoning_on_a_terminal(local):
    from abstractllm.cli.chat import ChatSession
    from abstractllm.cli.common import DIM, RESET

    session = ChatSession(local, None, {"temperature": 0.0})
    out = _Terminal()
    session.turn("Hi", out)
    assert out.getvalue() == f"assistant> {DIM}[thinking]\n{REASONING}\n[/thinking]{RESET}\n{ANSWER}\n"
    assert session.history[-1] == {"role": "assistant", "content": ANSWER, "reasoning_content": REASONING}
    plain = io.StringIO()
    session.turn("Again", plain)
    assert DIM not in plain.getvalue() and REASONING in plain.getvalue()
