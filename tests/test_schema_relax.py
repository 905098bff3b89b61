"""Schemas llguidance cannot compile (abstractllm/providers/mlx/schemas.py): each keyword llguidance 1.9
refuses is shown refused, then relaxed into a schema that compiles and keeps what llguidance supports; the
requests that carry them (forced tool calls over many tools, ``response_format``) succeed on zoo models,
and a reply that breaks the original schema is reported in ``metadata["schema_errors"]``."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("llguidance")

from abstractllm.providers.mlx.schemas import _error, check, relax  # noqa: E402

OBJ = {"type": "object"}


def _obj(**kw):
    return {"type": "object", **kw}


NAME = {"type": "string", "maxLength": 8}
#: (case, schema, what the notes must mention, a part of the schema that must survive the relaxation)
REFUSED = [
    ("propertyNames", _obj(properties={"a": NAME}, propertyNames={"maxLength": 3}, additionalProperties={"type": "integer"}),
     "propertyNames", ("properties", "a")),
    ("propertyNames (not a string rule)", _obj(propertyNames={"type": "string", "minLength": 2},
                                               additionalProperties={"type": "integer"}),
     "propertyNames", ("additionalProperties",)),
    ("patternProperties look-ahead", _obj(properties={"a": NAME}, patternProperties={"^(?!x-)[a-z]+$": NAME}),
     "patternProperties", ("properties", "a")),
    ("patternProperties not disjoint", _obj(patternProperties={"^a": NAME, "b$": {"type": "integer"}},
                                            additionalProperties=False),
     "patternProperties", ("additionalProperties",)),
    ("dependentSchemas", _obj(properties={"a": NAME, "b": NAME}, dependentSchemas={"a": {"required": ["b"]}}),
     "dependentSchemas", ("properties", "b")),
    ("dependentRequired", _obj(properties={"a": NAME, "b": NAME}, dependentRequired={"a": ["b"]}),
     "dependentRequired", ("properties", "a")),
    ("dependencies (draft 7)", _obj(properties={"a": NAME, "b": NAME}, dependencies={"a": ["b"]}),
     "dependencies", ("properties", "a")),
    ("if/then/else", _obj(properties={"kind": {"enum": ["a", "b"]}, "n": {"type": "integer"}},
                          **{"if": {"properties": {"kind": {"const": "a"}}}, "then": {"required": ["n"]},
                             "else": {"properties": {"n": {"maximum": 0}}}}),
     "if", ("properties", "kind", "enum")),
    ("unevaluatedProperties", _obj(properties={"a": NAME}, unevaluatedProperties=False), "unevaluatedProperties",
     ("properties", "a")),
    ("unevaluatedItems", {"type": "array", "prefixItems": [NAME], "unevaluatedItems": False}, "unevaluatedItems",
     ("prefixItems",)),
    ("not", _obj(properties={"a": {"type": "string", "not": {"const": "x"}}}), "not", ("properties", "a", "type")),
    ("contains", {"type": "array", "items": {"type": "integer"}, "contains": {"const": 1}, "minContains": 1},
     "contains", ("items",)),
    ("uniqueItems", {"type": "array", "items": {"type": "integer"}, "uniqueItems": True}, "uniqueItems", ("items",)),
    ("$dynamicRef", _obj(properties={"a": {"$dynamicRef": "#meta"}, "b": NAME}), "$dynamicRef", ("properties", "b")),
    ("format uri-reference", _obj(properties={"u": {"type": "string", "format": "uri-reference"}}), "format",
     ("properties", "u", "type")),
    ("format iri", {"type": "string", "format": "iri"}, "format", ("type",)),
    ("format regex", {"type": "string", "format": "regex"}, "format", ("type",)),
    ("format json-pointer", {"type": "string", "format": "json-pointer"}, "format", ("type",)),
    ("format binary (OpenAPI)", {"type": "string", "format": "binary", "maxLength": 9}, "format", ("maxLength",)),
    ("format custom", {"type": "string", "format": "my-format", "maxLength": 4}, "format", ("maxLength",)),
    ("pattern look-ahead", {"type": "string", "pattern": "^(?=a).*$", "maxLength": 4}, "pattern", ("maxLength",)),
    ("pattern back-reference", {"type": "string", "pattern": "^(a)\\1$"}, "pattern", ("type",)),
    ("pattern \\b", {"type": "string", "pattern": "\\bword\\b"}, "pattern", ("type",)),
    ("pattern \\Z", {"type": "string", "pattern": "^a+\\Z"}, "pattern", ("type",)),
    ("pattern and format that cannot meet", {"type": "string", "pattern": "^a+$", "format": "email"}, "dropped",
     ("type",)),
    ("oneOf not provably disjoint", {"oneOf": [_obj(properties={"a": {"const": 1}}, required=["a"]),
                                               _obj(properties={"b": {"const": 1}}, required=["b"])]},
     "oneOf", ()),
    ("minProperties with optional properties", _obj(properties={"a": NAME, "b": NAME}, minProperties=1),
     "minProperties", ("properties", "b")),
    ("$ref to another document", _obj(properties={"a": {"$ref": "https://example.com/a.json"}, "b": NAME}), "$ref",
     ("properties", "b")),
    ("$ref to a missing pointer", _obj(properties={"a": {"$ref": "#/$defs/missing"}, "b": NAME}), "$ref",
     ("properties", "b")),
    # (unsatisfiable: an optional property that cannot be written is left out; a required one fails)
    ("allOf of incompatible types", _obj(properties={"a": {"allOf": [{"type": "string"}, {"type": "integer"}]},
                                                     "b": NAME}, required=["a"]), "#/properties/a", ("properties", "b")),
    ("empty enum", _obj(properties={"a": {"enum": []}, "b": NAME}, required=["a"]), "#/properties/a",
     ("properties", "b")),
    ("minLength above maxLength", _obj(properties={"a": {"type": "string", "minLength": 5, "maxLength": 2}, "b": NAME},
                                       required=["a"]), "#/properties/a", ("properties", "b")),
    ("integer range without integers", {"type": "integer", "minimum": 0.2, "maximum": 0.8}, "dropped", ("type",)),
    ("closed object requiring an unlisted property", _obj(properties={"a": NAME}, required=["a", "z"],
                                                          additionalProperties=False),
     "'z'", ("properties", "a")),
    ("closed empty object with minProperties", _obj(additionalProperties=False, minProperties=1), "minProperties",
     ("type",)),
]


@pytest.mark.parametrize("case, schema, mention, kept", REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_keyword_is_relaxed(case, schema, mention, kept):
    assert _error(schema) is not None, f"llguidance now compiles {case}: drop it from the list"
    relaxed = relax(schema)
    assert relaxed.changed and _error(relaxed.schema) is None, relaxed
    assert any(mention in note for note in relaxed.notes), relaxed.notes
    node_before, node_after = schema, relaxed.schema
    for key in kept:  # what llguidance supports is still there
        node_before, node_after = node_before[key], node_after[key]
    if kept:
        assert node_after == node_before
    assert relax(schema) is relaxed  # cached


@pytest.mark.parametrize("schema", [
    {"$defs": {"node": _obj(properties={"v": {"type": "integer"}, "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}})},
     "$ref": "#/$defs/node"},
    _obj(properties={"child": {"$ref": "#"}, "v": {"type": "string"}}),
    {"$defs": {"a": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"$ref": "#/$defs/a"}}]}}, "$ref": "#/$defs/a"},
    _obj(properties={"when": {"type": "string", "format": "date-time"}, "mail": {"type": "string", "format": "email"},
                     "id": {"type": "string", "format": "uuid"}, "n": {"type": "number", "multipleOf": 0.5}},
         patternProperties={"^x-": {"type": "string"}}, additionalProperties=False),
    {"oneOf": [{"type": "string"}, {"type": "integer"}]},
    {"type": "array", "prefixItems": [{"type": "string"}], "items": False},
])
def test_what_llguidance_compiles_is_kept_as_is(schema):
    """``$ref`` cycles (recursive trees, ``#`` itself), formats and keywords llguidance implements: unchanged."""
    assert _error(schema) is None
    relaxed = relax(schema)
    assert not relaxed.changed and relaxed.schema == schema


@pytest.mark.parametrize("names, expect", [
    ({"type": "string"}, {"type": "object", "additionalProperties": {"type": "integer"}}),
    ({"enum": ["a", "b"]}, {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                            "additionalProperties": False}),
    ({"pattern": "^[a-z]+$"}, {"type": "object", "patternProperties": {"^[a-z]+$": {"type": "integer"}},
                               "additionalProperties": False}),
])
def test_property_names_rewritten_exactly(names, expect):
    """A record (``z.record(z.string(), ...)`` in zod writes ``propertyNames: {"type": "string"}``) loses
    nothing: no note, so no check after generation is needed."""
    relaxed = relax({"type": "object", "propertyNames": names, "additionalProperties": {"type": "integer"}})
    assert relaxed.schema == expect and not relaxed.changed


def test_unknown_keys_found_by_compiling_not_from_a_list():
    """Several refused keywords in several places, nested in ``$defs``, ``items`` and ``anyOf``: all relaxed,
    the rest kept."""
    schema = {"type": "object", "$defs": {"tag": {"type": "string", "not": {"const": ""}, "maxLength": 5}},
              "properties": {"tags": {"type": "array", "items": {"$ref": "#/$defs/tag"}, "uniqueItems": True},
                             "v": {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "format": "iri"}]}},
              "required": ["tags"], "if": {"required": ["v"]}, "then": {"required": ["tags"]}}
    relaxed = relax(schema)
    assert _error(relaxed.schema) is None
    assert sorted(n.split(": ")[1] for n in relaxed.notes) == sorted(
        ["not dropped", "uniqueItems dropped", "format 'iri' dropped", "if dropped", "then dropped"])
    assert relaxed.schema["$defs"]["tag"] == {"type": "string", "maxLength": 5}
    assert relaxed.schema["properties"]["v"]["anyOf"][0] == {"type": "integer", "minimum": 0}


def test_check_reports_errors_and_never_fetches():
    schema = {"type": "object", "propertyNames": {"pattern": "^[a-z]+$"}, "additionalProperties": {"type": "integer"}}
    assert check(schema, {"ok": 1}) == []
    (error,) = check(schema, {"Bad": 1})
    assert error["keyword"] == "pattern" and "Bad" in error["message"]  # (jsonschema names the inner keyword)
    (error,) = check({"type": "string", "format": "regex"}, "(")
    assert error["keyword"] == "format"
    (error,) = check({"$ref": "https://example.com/never-fetched.json"}, 1)
    assert error["keyword"] is None and error["message"].startswith("not checked")
    (error,) = check({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}, {})
    assert error["path"] == "/" and error["keyword"] == "required"


# ---------------------------------------------------------------------------------------------- requests
#: tools shaped like real agents' (Claude Code's has propertyNames on two of its 24 tools)
GOOD = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city.", "parameters": {
    "type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Rome"]}}, "required": ["city"]}}}
RECORD = {"type": "function", "function": {"name": "set_env", "description": "Set environment variables.", "parameters": {
    "type": "object", "properties": {"env": {"type": "object", "propertyNames": {"pattern": "^[A-Z_]{1,4}$"},
                                             "additionalProperties": {"type": "string", "maxLength": 3}, "maxProperties": 1,
                                             "not": {"required": ["PATH"]}}},
    "required": ["env"]}}}
TRICKY = {"type": "function", "function": {"name": "edit", "description": "Edit a file.", "parameters": {
    "type": "object", "$defs": {"edit": {"type": "object", "properties": {"old": {"type": "string", "maxLength": 4},
                                                                        "new": {"type": "string", "maxLength": 4}},
                                         "required": ["old", "new"], "not": {"required": ["same"]}}},
    "properties": {"path": {"type": "string", "format": "uri-reference", "maxLength": 6},
                   "edits": {"type": "array", "items": {"$ref": "#/$defs/edit"}, "maxItems": 1, "uniqueItems": True},
                   "mode": {"enum": ["a", "b"]}},
    "required": ["path", "edits", "mode"], "if": {"properties": {"mode": {"const": "a"}}}, "then": {"required": ["edits"]},
    "dependentSchemas": {"mode": {"required": ["path"]}}}}}
ASK = [{"role": "user", "content": "Do it."}]


@pytest.fixture(scope="module")
def qwen():
    from abstractllm import create_llm
    from abstractllm.testing.zoo import family_model

    llm = create_llm("mlx", model=str(family_model("qwen3")), temperature=0.0, max_tokens=160)
    yield llm
    llm.close()


@pytest.mark.parametrize("choice", ["required", "set_env", "edit", "get_weather"])
def test_forced_call_over_all_tools_compiles(qwen, choice):
    """One tool's refused keywords never break the others: a forced call over all the tools (or of one)
    compiles on the Qwen tokenizer and the call comes out; the relaxed tools' calls are checked."""
    r = qwen.generate(messages=ASK, tools=[GOOD, RECORD, TRICKY], tool_choice=choice,
                      chat_template_kwargs={"enable_thinking": False})
    assert r.finish_reason == "tool_calls", (r.content, r.metadata)
    (call,) = r.tool_calls
    assert choice == "required" or call.name == choice
    relaxed = r.metadata.get("schema_relaxed")
    if choice == "get_weather":
        assert relaxed is None and call.arguments["city"] in ("Paris", "Rome")
        return
    named = ("set_env", "edit") if choice == "required" else (choice,)  # (only the tools the grammar has)
    assert relaxed and all(n.split(":")[0] in [f"tool {t}" for t in named] for n in relaxed)
    assert not any("propertyNames" in n for n in relaxed)  # set_env's propertyNames: rewritten exactly
    spec = {t["function"]["name"]: t["function"]["parameters"] for t in (GOOD, RECORD, TRICKY)}[call.name]
    assert r.metadata.get("schema_errors", []) == [
        {"target": "tool_call", "name": call.name, "index": 0, **e} for e in check(spec, call.arguments)]


#: a tool whose relaxed grammar allows one reply only, and that reply breaks the dropped ``not``: whatever the
#: model, the call comes out as the grammar makes it, and only the check after generation can see the problem
TRAP = {"type": "function", "function": {"name": "set_path", "parameters": {
    "type": "object", "properties": {"env": {"type": "object", "properties": {"PATH": {"const": "x"}},
                                             "required": ["PATH"], "not": {"required": ["PATH"]}}},
    "required": ["env"]}}}


def test_reply_breaking_a_dropped_keyword_is_reported(qwen):
    """The call is returned as the model wrote it (as an official API returns a non-strict tool's call), and
    ``metadata["schema_errors"]`` says what is wrong; streamed, the last chunk says the same."""
    r = qwen.generate(messages=ASK, tools=[GOOD, TRAP], tool_choice="set_path",
                      chat_template_kwargs={"enable_thinking": False})
    assert [(c.name, c.arguments) for c in r.tool_calls] == [("set_path", {"env": {"PATH": "x"}})]
    assert r.metadata["schema_relaxed"] == ["tool set_path: #/properties/env: not dropped"]
    (error,) = r.metadata["schema_errors"]
    assert {k: error[k] for k in ("target", "name", "index", "path", "keyword")} == {
        "target": "tool_call", "name": "set_path", "index": 0, "path": "/env", "keyword": "not"}
    chunks = list(qwen.generate(messages=ASK, tools=[GOOD, TRAP], tool_choice="required", stream=True,
                                chat_template_kwargs={"enable_thinking": False}))
    calls = [c for chunk in chunks for c in chunk.tool_calls or []]
    if calls[0].name == "set_path":
        assert chunks[-1].metadata["schema_errors"] == r.metadata["schema_errors"]
    else:  # get_weather's schema was not relaxed: nothing to report for it
        assert "schema_errors" not in chunks[-1].metadata
    assert chunks[-1].metadata["schema_relaxed"] == r.metadata["schema_relaxed"]


@pytest.mark.parametrize("kind, broken", [("a", True), ("b", False)])
def test_response_format_relaxed_and_checked(qwen, kind, broken):
    """``response_format`` with ``if``/``then`` (dropped); the grammar allows one reply: with kind "a" it
    breaks the ``then``, with "b" it does not."""
    schema = {"type": "object", "properties": {"kind": {"const": kind}, "n": {"const": 5}},
              "required": ["kind", "n"], "additionalProperties": False,
              "if": {"properties": {"kind": {"const": "a"}}}, "then": {"properties": {"n": {"maximum": 0}}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "pick", "schema": schema}}
    r = qwen.generate(messages=ASK, response_format=fmt, chat_template_kwargs={"enable_thinking": False})
    assert r.parsed == {"kind": kind, "n": 5}
    assert r.metadata["schema_relaxed"] == ["response_format pick: #: if dropped", "response_format pick: #: then dropped"]
    if broken:
        (error,) = r.metadata["schema_errors"]
        assert (error["target"], error["name"], error["path"], error["keyword"]) == ("response_format", "pick", "/n",
                                                                                     "maximum")
    else:
        assert "schema_errors" not in r.metadata
    # with tools and tool_choice "auto": a call or the JSON, both under the relaxed grammar
    r = qwen.generate(messages=ASK, response_format=fmt, tools=[TRAP], chat_template_kwargs={"enable_thinking": False})
    assert r.metadata["schema_relaxed"]
    if r.tool_calls:
        assert r.metadata["schema_errors"][0]["target"] == "tool_call"
    else:
        assert r.parsed == {"kind": kind, "n": 5} and bool(r.metadata.get("schema_errors")) == broken


def test_tool_with_defs_inside_the_call_grammar(qwen):
    """A tool whose parameters use ``$defs`` (a pydantic model with a nested model): its references resolve
    against its own parameters inside the call object."""
    from pydantic import BaseModel

    class Point(BaseModel):
        x: int
        y: int

    class Shape(BaseModel):
        points: list[Point]

    tool = {"type": "function", "function": {"name": "draw", "parameters": Shape.model_json_schema()}}
    assert "$defs" in tool["function"]["parameters"]
    r = qwen.generate(messages=ASK, tools=[GOOD, tool], tool_choice="draw", max_tokens=200,
                      chat_template_kwargs={"enable_thinking": False})
    assert r.finish_reason == "tool_calls" and not r.metadata.get("schema_relaxed")
    Shape.model_validate(r.tool_calls[0].arguments)


@pytest.mark.parametrize("family", ["llama", "mistral", "gpt_oss"])
def test_forced_call_with_relaxed_tools_in_other_formats(family):
    """Llama 3 JSON, Mistral's [TOOL_CALLS] list and harmony's header-named calls take relaxed schemas too."""
    from abstractllm import create_llm
    from abstractllm.testing.zoo import family_model

    with create_llm("mlx", model=str(family_model(family)), temperature=0.0, max_tokens=200) as llm:
        if family == "gpt_oss":  # (a random model may reason first, for ever: the grammar compiles, is all)
            r = llm.generate(messages=ASK, tools=[GOOD, TRAP], tool_choice="set_path", max_tokens=2)
            assert r.metadata["schema_relaxed"] == ["tool set_path: #/properties/env: not dropped"]
            return
        r = llm.generate(messages=ASK, tools=[GOOD, TRAP], tool_choice="set_path")
        assert [(c.name, c.arguments) for c in r.tool_calls] == [("set_path", {"env": {"PATH": "x"}})]
        assert r.metadata["schema_errors"][0]["keyword"] == "not"


def test_required_property_not_listed():
    """``required`` may name a property ``properties`` does not list (valid JSON Schema, taken by official
    APIs): the call's closed object lists it, with any value."""
    from abstractllm.tools import normalize_tools

    tool = {"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"a": {"const": 1}}, "required": ["a", "b"]}}}
    (definition,) = normalize_tools([tool])
    relaxed = relax({**definition.parameters, "additionalProperties": False})
    assert relaxed.schema["properties"]["b"] == {} and relaxed.schema["required"] == ["a", "b"]


@pytest.mark.parametrize("schema, reason", [
    ({"type": "object", "properties": {"a": {"type": "string", "minLength": "two"}}, "not": {}}, "is not of type"),
    ({"type": "object", "properties": {"a": {"type": "string", "pattern": "(unclosed"}}}, "is not a 'regex'"),
    ({"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}, "points nowhere"),
])
def test_invalid_schemas_are_refused_as_official_apis_refuse_them(schema, reason):
    """A schema that is not valid JSON Schema (its meta-schema refuses it; a ``#`` reference points nowhere)
    is a typed error, for a tool as for a ``response_format``: it is not relaxed."""
    from abstractllm.exceptions import InvalidParameterError
    from abstractllm.providers.mlx.schemas import grammar_schema

    for param in ("tools", "response_format"):
        with pytest.raises(InvalidParameterError, match=reason) as info:
            grammar_schema(schema, param, param)
        assert info.value.param == param


def test_unsatisfiable_schema():
    """No value matches it: as a ``response_format`` (the whole reply) it is refused; as a tool's parameters
    it is widened, so the other tools still work, and a call of it is checked."""
    from abstractllm.exceptions import InvalidParameterError
    from abstractllm.providers.mlx.schemas import grammar_schema

    schema = {"type": "object", "properties": {"a": {"enum": []}}, "required": ["a"]}
    with pytest.raises(InvalidParameterError, match="unsatisfiable"):
        grammar_schema(schema, "response_format", "response_format", refuse_unsatisfiable=True)
    assert grammar_schema(schema, "tools", "tool") == {"type": "object", "properties": {"a": {}}, "required": ["a"]}
    ecma = {"type": "string", "pattern": "^\\p{L}+$"}  # ECMA-262, not Python's re: valid, and llguidance takes it
    assert grammar_schema(ecma, "response_format", "response_format") == ecma


def test_agent_tool_sets_through_the_server():
    """The same tools as an agent sends them, through the server: Anthropic's Messages with ``tool_choice``
    ``any`` and OpenAI's chat completions with ``required``; the forced call comes back, whichever tool's
    schema needed relaxing."""
    anthropic = pytest.importorskip("anthropic")
    openai = pytest.importorskip("openai")
    from abstractllm import create_llm
    from abstractllm.server import ServerConfig, start_server
    from abstractllm.testing.zoo import family_model

    tools = [GOOD, RECORD, TRICKY, TRAP]
    path = family_model("qwen3")
    with create_llm("mlx", model=str(path), temperature=0.0, max_tokens=160) as llm, \
            start_server(ServerConfig(model=str(path), port=0), llm=llm) as server:
        specs = [{"name": t["function"]["name"], "description": t["function"].get("description", ""),
                  "input_schema": t["function"]["parameters"]} for t in tools]
        client = anthropic.Anthropic(base_url=server.url, api_key="unused", max_retries=0)
        message = client.messages.create(model="local", max_tokens=160, tools=specs, tool_choice={"type": "any"},
                                         messages=[{"role": "user", "content": "Do it."}])
        (use,) = [b for b in message.content if b.type == "tool_use"]
        assert message.stop_reason == "tool_use" and use.name in {s["name"] for s in specs}
        oa = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        r = oa.chat.completions.create(model="local", max_tokens=160, tools=tools, tool_choice="required",
                                       messages=[{"role": "user", "content": "Do it."}])
        (call,) = r.choices[0].message.tool_calls
        assert r.choices[0].finish_reason == "tool_calls" and call.function.name in {s["name"] for s in specs}
        json.loads(call.function.arguments)
