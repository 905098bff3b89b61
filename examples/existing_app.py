"""An application written against AbstractLLM 1.x, using only 1.x calls, run unchanged on any provider.

    python examples/existing_app.py mlx mlx-community/Qwen3-0.6B-4bit
    python examples/existing_app.py openai gpt-4o-mini                        # OPENAI_API_KEY set
    python examples/existing_app.py openai local http://127.0.0.1:8000/v1     # abstractllm serve

Only the first arguments change between providers; the code below does not. It prints what it does,
then one line ``RESULT {...}`` with the greedy replies, so that two runs can be compared (the project's
tests run it on "mlx" and on "openai" pointed at abstractllm's own server serving the same model: the
replies are the same).
"""

import asyncio
import json
import os
import sys
import tempfile

from abstractllm import ModelCapability, ModelParameter, create_llm
from abstractllm.enums import MessageRole
from abstractllm.exceptions import (
    AbstractLLMError,
    InvalidParameterError,
    InvalidRequestError,
    ModelLoadingError,
    ProviderAPIError,
    UnsupportedFeatureError,
)
from abstractllm.factory import create_session, get_llm_providers
from abstractllm.interface import AbstractLLMInterface
from abstractllm.session import Session
from abstractllm.types import GenerateResponse


def build_llm(provider: str, model: str, base_url: str | None) -> AbstractLLMInterface:
    # The config every 1.x app passes to every provider: keys a provider does not use are no-ops there.
    config = {
        ModelParameter.MODEL: model,
        ModelParameter.TEMPERATURE: 0.0,
        ModelParameter.MAX_TOKENS: 12,
        ModelParameter.SYSTEM_PROMPT: "You are a helpful assistant.",
        ModelParameter.API_KEY: os.environ.get("OPENAI_API_KEY"),
        ModelParameter.BASE_URL: base_url,
        ModelParameter.TIMEOUT: 60,
        ModelParameter.FREQUENCY_PENALTY: 0.0,
        ModelParameter.PRESENCE_PENALTY: 0.0,
    }
    if provider not in get_llm_providers():
        raise SystemExit(f"unknown provider {provider}; available: {get_llm_providers()}")
    return create_llm(provider, **config)


def main(provider: str, model: str, base_url: str | None = None) -> dict:
    results: dict = {}
    llm = build_llm(provider, model, base_url)
    assert isinstance(llm, AbstractLLMInterface)

    caps = llm.get_capabilities()
    print("streaming:", caps.get(ModelCapability.STREAMING), "| vision:", caps.get(ModelCapability.VISION),
          "| context window:", caps.get(ModelCapability.MAX_TOKENS))

    # generate(prompt, system_prompt): the 1.x positional order
    response = llm.generate("What is the capital of France?", "Answer in one word.")
    assert isinstance(response, GenerateResponse)
    print("reply:", response.content)
    print("tokens:", response.usage["prompt_tokens"], "+", response.usage["completion_tokens"], "=",
          response.usage.get("total_tokens"))
    results["reply"] = response.content

    # streaming
    streamed = "".join(chunk.content for chunk in llm.generate("Count to three.", stream=True))
    results["streamed"] = streamed
    print("streamed:", streamed)

    # async
    async_reply = asyncio.run(llm.generate_async("Name a colour.", max_tokens=6))
    results["async"] = async_reply.content

    # files: a text file is inlined into the prompt
    with tempfile.TemporaryDirectory() as tmp:
        notes = os.path.join(tmp, "notes.txt")
        with open(notes, "w", encoding="utf-8") as fh:
            fh.write("Meeting moved to Tuesday.\n")
        results["with_file"] = llm.generate("Summarize the file.", None, [notes]).content

    # images only where the capability says so
    if not caps.get(ModelCapability.VISION):
        try:
            llm.generate("Describe this.", files=["photo.jpg"])
        except UnsupportedFeatureError as err:
            print("no vision:", type(err).__name__)

    # configuration
    llm.set_config(**{ModelParameter.MAX_TOKENS: 6})
    assert llm.get_param(ModelParameter.MAX_TOKENS) == 6
    results["short"] = llm.generate("Tell me a story.").content

    # errors from one tree
    try:
        llm.generate("Hi", temperature=-1)
    except InvalidRequestError as err:
        print("bad parameter:", type(err).__name__, isinstance(err, InvalidParameterError))
    try:
        create_llm(provider, model="/no/such/model", base_url="http://127.0.0.1:9/v1", max_retries=0).generate("Hi")
    except (ModelLoadingError, ProviderAPIError, AbstractLLMError) as err:
        print("unreachable model:", type(err).__name__)

    # a session keeps the conversation
    session = Session(system_prompt="You are a helpful assistant.", provider=llm)
    first = session.generate("My name is Ada.")
    second = session.generate("What is my name?")
    session.add_message(MessageRole.USER, "Thanks!")
    history = session.get_history()
    print("session:", [m.role for m in history])
    results["session"] = [first.content, second.content]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "session.json")
        session.save(path)
        restored = Session.load(path, provider=llm)
        assert [m.content for m in restored.get_history()] == [m.content for m in history]
        restored.messages.pop()  # the unanswered "Thanks!"
        results["restored"] = restored.generate("And my name again?").content

    # create_session builds the provider from the same config
    other = create_session(provider, **{ModelParameter.MODEL: model, ModelParameter.BASE_URL: base_url,
                                        ModelParameter.TEMPERATURE: 0.0, ModelParameter.MAX_TOKENS: 6,
                                        ModelParameter.SYSTEM_PROMPT: "Be brief."})
    results["create_session"] = other.generate("Hello!").content
    other.close()
    llm.close()
    return results


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    out = main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
    print("RESULT " + json.dumps(out, ensure_ascii=False))
