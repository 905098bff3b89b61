"""The provider contract suite: what every abstractllm provider must do, as pytest tests.

Run it against any provider, a third-party plugin's too::

    pytest --pyargs abstractllm.testing.contract --provider mlx --model mlx-community/Qwen3-0.6B-4bit
    pytest --pyargs abstractllm.testing.contract --provider openai --model gpt-4o-mini --api-key sk-...
    pytest --pyargs abstractllm.testing.contract --provider openai --model local --base-url http://127.0.0.1:8000/v1

It checks: generate, streaming (the joined stream equals the non-streamed reply under greedy decoding),
async and async streaming, system prompts, chat history, stop strings, ``max_tokens`` ending with
``"length"``, the usage arithmetic, reasoning (with ``thinking=True``: ``reasoning`` apart from ``content``,
the stream's reasoning joined equal to the reply's, ``usage.reasoning_tokens`` within ``completion_tokens``;
skipped where the provider or model cannot think), capability honesty (a declared capability works, an
undeclared one raises ``UnsupportedFeatureError``), bad parameters (``InvalidParameterError``), cancellation, and
closing, and reuse after an error. The provider must decode greedily at ``temperature=0`` (deterministic
replies); a provider that cannot should deselect the equality checks (``-k "not equals"``).

To run the suite over providers of your own choosing in your test suite, import the fixtures and tests
and override ``contract_target`` (see tests/test_contract.py in the abstractllm repository)::

    from abstractllm.testing.contract.fixtures import *        # noqa: F401,F403
    from abstractllm.testing.contract.test_contract import *   # noqa: F401,F403
"""
