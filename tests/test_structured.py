"""Structured output (``response_format=``) on the MLX provider, run for real on random-weight models:
constrained decoding makes every reply parse and validate, whatever the weights."""

from __future__ import annotations

import asyncio
import json
from typing import Literal

import jsonschema
import pytest
from pydantic import BaseModel, Field

from abstractllm import create_llm
from abstractllm.exceptions import InvalidParameterError

SCHEMA = {"type": "object", "properties": {
    "city": {"type": "string", "enum": ["Paris", "Rome", "Oslo"]},
    "population": {"type": "integer", "minimum": 0, "maximum": 10_000_000},
    "capital": {"type": "boolean"},
    "tags": {"type": "array", "items": {"type": "string", "enum": ["old", "big", "cold"]}, "maxItems": 3},
}, "required": ["city", "population", "capital", "tags"], "additionalProperties": False}


class City(BaseModel):
    city: Literal["Paris", "Rome", "Oslo"]
    population: int = Field(ge=0, le=10_000_000)
    capital: bool


@pytest.fixture(scope="module", params=["tiny", "llama"])
def llm(request, tiny_model, llama_model):
    path = tiny_model if request.param == "tiny" else llama_model
    with create_llm("mlx", model=str(path), temperature=0.0, max_tokens=120) as provider:
        yield provider


@pytest.mark.parametrize("form", ["schema", "openai"])
def test_json_schema_reply_validates(llm, form):
    rf = SCHEMA if form == "schema" else {"type": "json_schema", "json_schema": {"name": "city", "schema": SCHEMA,
                                                                                 "strict": True}}
    r = llm.generate("Describe a city.", response_format=rf)
    assert r.finish_reason == "stop"
    data = json.loads(r.content)
    jsonschema.validate(data, SCHEMA)
    assert r.parsed == data
    assert r.content == json.dumps(data, separators=(",", ":"), ensure_ascii=False)  # compact: no free whitespace
    assert llm.get_capabilities()["json_mode"] is True


def test_pydantic_model_gives_an_instance(llm):
    r = llm.generate("Describe a city.", response_format=City)
    assert isinstance(r.parsed, City) and City.model_validate_json(r.content) == r.parsed
    assert set(json.loads(r.content)) == {"city", "population", "capital"}  # closed: no extra keys


def test_json_object_mode_is_an_object(llm):
    r = llm.generate("Some JSON.", response_format={"type": "json_object"}, max_tokens=200, temperature=0.7, seed=1)
    if r.finish_reason == "length":  # free JSON from random weights may run on; then the next seeds must end
        r = next(x for x in (llm.generate("Some JSON.", response_format={"type": "json_object"}, max_tokens=200,
                                          temperature=0.7, seed=s) for s in range(2, 12)) if x.finish_reason == "stop")
    assert isinstance(json.loads(r.content), dict) and r.parsed == json.loads(r.content)


def test_streamed_structured_output(llm):
    whole = llm.generate("Describe a city.", response_format=City)
    chunks = list(llm.generate("Describe a city.", response_format=City, stream=True))
    assert "".join(c.content for c in chunks) == whole.content
    assert chunks[-1].parsed == whole.parsed and all(c.parsed is None for c in chunks[:-1])


def test_async_structured_output(llm):
    r = asyncio.run(llm.generate_async("Describe a city.", response_format=City))
    assert isinstance(r.parsed, City)


def test_truncated_object_is_length_not_an_error(llm):
    r = llm.generate("Describe a city.", response_format=City, max_tokens=4)
    assert r.finish_reason == "length" and r.parsed is None
    assert r.content and not r.content.endswith("}")


def test_stop_string_cuts_the_object_without_a_parse_error(llm):
    r = llm.generate("Describe a city.", response_format=City, stop=['"population"'])
    assert r.finish_reason == "stop" and r.parsed is None and r.content.startswith('{"city":')


def test_n_choices_all_validate(tiny_llm):
    replies = tiny_llm.generate("Describe a city.", response_format=City, n=3, temperature=0.9, seed=4,
                                max_tokens=120)
    assert len(replies) == 3 and all(isinstance(r.parsed, City) for r in replies)


def test_config_default_response_format(tiny_model):
    with create_llm("mlx", model=str(tiny_model), response_format=City, max_tokens=120) as llm:
        assert isinstance(llm.generate("A city.").parsed, City)
        assert llm.generate("A city.", response_format={"type": "text"}, max_tokens=5).parsed is None


def test_vision_model_structured_output(vision_model):
    from PIL import Image

    with create_llm("mlx", model=str(vision_model), temperature=0.0, max_tokens=120) as vlm:
        image = Image.new("RGB", (32, 32), (10, 200, 30))
        r = vlm.generate("What city is this?", files=[image], response_format=City)
        assert isinstance(r.parsed, City)
        chunks = list(vlm.generate("What city is this?", files=[image], response_format=City, stream=True))
        assert "".join(c.content for c in chunks) == r.content


@pytest.mark.parametrize("rf, match", [
    ({"type": "xml"}, "unknown JSON schema type"),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nope"}}}, "cannot be compiled"),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"$ref": "#/$defs/missing"}}}, "cannot be compiled"),
    ({"type": "object", "properties": {"a": {"type": "string", "pattern": "(unclosed"}}}, "cannot be compiled"),
    ({"type": "object", "properties": {"a": {"type": "integer", "minimum": 5, "maximum": 1}}, "required": ["a"]},
     "cannot be compiled"),
    ("json", "response_format must be"),
    (42, "response_format must be"),
])
def test_bad_response_format_is_a_typed_error(tiny_llm, rf, match):
    with pytest.raises(InvalidParameterError, match=match) as info:
        tiny_llm.generate("x", response_format=rf, max_tokens=4)
    assert info.value.param == "response_format"
    assert tiny_llm.generate("x", max_tokens=2).usage.completion_tokens == 2
