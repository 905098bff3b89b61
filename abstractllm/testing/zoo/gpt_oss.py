"""The gpt-oss family: gpt_oss (openai/gpt-oss-20b), a mixture of experts with attention sinks, alternating
sliding-window and full attention, and the harmony chat format.

Facts from openai/gpt-oss-20b's model files (tokenizer_config.json, config.json, generation_config.json,
chat_template.jinja) and the o200k_harmony encoding of openai/harmony and openai/gpt-oss: the 21 added tokens
after the o200k BPE vocabulary (ids 199998 .. 200018), in order ``<|startoftext|>``, ``<|endoftext|>``,
``<|reserved_200000|>``, ``<|reserved_200001|>``, ``<|return|>``, ``<|constrain|>``, ``<|reserved_200004|>``,
``<|channel|>``, ``<|start|>``, ``<|end|>``, ``<|message|>``, ``<|reserved_200009|>`` ..
``<|reserved_200011|>``, ``<|call|>``, ``<|reserved_200013|>`` .. ``<|reserved_200017|>``,
``<|endofprompt|>``, all ``special: true``. ``bos_token`` ``<|startoftext|>`` (neither the tokenizer nor the
template writes it), ``eos_token`` ``<|return|>``, ``pad_token`` ``<|endoftext|>``; config.json's
``eos_token_id`` 200002 (``<|return|>``), generation_config.json's ``[200002, 199999, 200012]``
(``<|return|>``, ``<|endoftext|>``, ``<|call|>``). config.json: ``layer_types`` alternating
``sliding_attention`` / ``full_attention`` (``sliding_window`` 128), 32 local experts (4 per token),
attention and expert biases, per-head attention sinks, yarn RoPE, an untied head.

The template below is ours; it behaves as gpt-oss's chat_template.jinja: a system message
``You are ChatGPT, a large language model trained by OpenAI.`` (``model_identity``), ``Knowledge cutoff:
2024-06``, ``Current date:`` (``strftime_now``), ``Reasoning: {reasoning_effort}`` (default ``medium``) and
``# Valid channels: analysis, commentary, final. ...`` (plus the ``functions`` line with tools); the first
system / developer message as a developer message's ``# Instructions``, and the tools as its ``# Tools``:
a TypeScript-like ``namespace functions { ... }`` (the same type rendering, quirks included); assistant turns
``<|start|>assistant<|channel|>final<|message|>...<|end|>`` (their reasoning dropped); an assistant tool call
``<|start|>assistant to=functions.NAME<|channel|>commentary json<|message|>{args}<|call|>`` (only the first
call of a message, its arguments through ``tojson``), preceded by its reasoning (``thinking``, or the content)
on the analysis channel unless a final answer follows later; tool results
``<|start|>functions.NAME to=assistant<|channel|>commentary<|message|>"{content | tojson}"<|end|>``; a last
assistant turn without a generation prompt (training) ending in ``<|return|>`` with its ``thinking``; the
same ``raise_exception`` checks; generation prompt ``<|start|>assistant``. Reasoning is read from an
assistant message's ``thinking`` only (the real template ignores ``reasoning_content``). Not reproduced: the
``builtin_tools`` (browser, python) descriptions; and a content given as a list of text parts is accepted
here (the real template needs a string). The model itself writes a call as
``<|start|>assistant<|channel|>commentary to=functions.NAME <|constrain|>json<|message|>{args}<|call|>`` (the
harmony docs' order, recipient after the channel), not as the template renders history.

mlx-lm (0.32) has no harmony parser: it infers no tool parser from this template and no thinking markers from
this vocabulary. abstractllm reads harmony itself (``abstractllm.providers.mlx.reasoning.HarmonySplitter``:
``tool_format="harmony"``, ``reasoning="harmony"``).

What the zoo changes: a 1024-token byte-level BPE vocabulary (the real one has 200,019 tokens in a 201,088-row
embedding) with the 21 added tokens at its end (ids 1003 .. 1023), 2 layers (one sliding with a window of 16,
one full), 4 experts (2 per token), hidden size 64. A scripted reply ends with ``<|return|>``; the markup it
repeats (a harmony reply has two ``<|channel|>`` and ``<|message|>``) is written as plain-text pieces after
the first time (each token of the scripted chain has one successor), so its text is harmony, its tokens not
all.
"""

from __future__ import annotations

from .family import TEXT_MACRO, Family

#: ids 199998 .. 200018 of o200k_harmony, in order, all special
GPT_OSS_ADDED_TOKENS: tuple[tuple[str, bool], ...] = tuple((t, True) for t in (
    "<|startoftext|>", "<|endoftext|>", "<|reserved_200000|>", "<|reserved_200001|>", "<|return|>",
    "<|constrain|>", "<|reserved_200004|>", "<|channel|>", "<|start|>", "<|end|>", "<|message|>",
    "<|reserved_200009|>", "<|reserved_200010|>", "<|reserved_200011|>", "<|call|>", "<|reserved_200013|>",
    "<|reserved_200014|>", "<|reserved_200015|>", "<|reserved_200016|>", "<|reserved_200017|>",
    "<|endofprompt|>",
))


#: A JSON schema as the TypeScript-like type gpt-oss reads (the real template's output, its spacing included:
#: a nested object puts a line break and 16 spaces before each property's type, a ``oneOf`` a line break
#: after each `` | ``; its "any" for unions of objects never happens there, the flag being set in a loop).
_TS_TYPE = (
    "{%- macro ts_type(spec) -%}"
    "{%- if spec.type == 'array' -%}"
    "{%- if 'items' in spec -%}"
    "{%- set item = spec['items']['type'] -%}"
    "{%- if item in ['string', 'number', 'boolean'] -%}{{- item ~ '[]' -}}"
    "{%- elif item == 'integer' -%}{{- 'number[]' -}}"
    "{%- else -%}{%- set inner = ts_type(spec['items']) -%}"
    "{{- 'any[]' if inner == 'object | object' or inner | length > 50 else inner ~ '[]' -}}"
    "{%- endif -%}"
    "{%- else -%}{{- 'any[]' -}}{%- endif -%}"
    "{%- if spec.nullable -%}{{- ' | null' -}}{%- endif -%}"
    "{%- elif spec.type is defined and spec.type is iterable and spec.type is not string and spec.type is not mapping"
    " and spec.type[0] is defined -%}{{- spec.type | join(' | ') -}}"
    "{%- elif spec.oneOf -%}"
    "{%- for variant in spec.oneOf -%}"
    "{{- ts_type(variant) -}}"
    "{%- if variant.description -%}{{- '// ' ~ variant.description -}}{%- endif -%}"
    "{%- if variant.default is defined -%}{{- ' ' * 20 ~ '// default: ' ~ variant.default | tojson -}}{%- endif -%}"
    "{%- if not loop.last -%}{{- ' | \\n' -}}{%- endif -%}"
    "{%- endfor -%}"
    "{%- elif spec.type == 'string' -%}"
    "{%- if spec.enum -%}{{- '\"' ~ spec.enum | join('\" | \"') ~ '\"' -}}"
    "{%- else -%}{{- 'string' -}}{%- if spec.nullable -%}{{- ' | null' -}}{%- endif -%}{%- endif -%}"
    "{%- elif spec.type in ['number', 'integer'] -%}{{- 'number' -}}"
    "{%- elif spec.type == 'boolean' -%}{{- 'boolean' -}}"
    "{%- elif spec.type == 'object' -%}"
    "{%- if spec.properties -%}{{- '{\\n' -}}"
    "{%- for name, prop in spec.properties.items() -%}"
    "{{- name ~ ('' if name in (spec.required or []) else '?') ~ ': \\n' ~ ' ' * 16 ~ ts_type(prop) -}}"
    "{%- if not loop.last -%}{{- ', ' -}}{%- endif -%}"
    "{%- endfor -%}{{- '}' -}}"
    "{%- else -%}{{- 'object' -}}{%- endif -%}"
    "{%- else -%}{{- 'any' -}}"
    "{%- endif -%}"
    "{%- endmacro -%}"
)

#: The developer message's tools: ``namespace functions { ... }``, one ``type`` per function.
_FUNCTIONS = (
    "{%- macro functions(tools) -%}"
    "{{- '## functions\\n\\nnamespace functions {\\n\\n' -}}"
    "{%- for tool in tools -%}{%- set tool = tool.function -%}"
    "{{- '// ' ~ tool.description ~ '\\ntype ' ~ tool.name ~ ' = ' -}}"
    "{%- if tool.parameters and tool.parameters.properties -%}"
    "{{- '(_: {\\n' -}}"
    "{%- for name, spec in tool.parameters.properties.items() -%}"
    "{%- if spec.description -%}{{- '// ' ~ spec.description ~ '\\n' -}}{%- endif -%}"
    "{{- name ~ ('' if name in (tool.parameters.required or []) else '?') ~ ': ' ~ ts_type(spec) -}}"
    "{%- if spec.default is defined -%}"
    "{%- if spec.enum -%}{{- ', // default: ' + spec.default -}}"
    "{%- elif spec.oneOf -%}{{- '// default: ' + spec.default -}}"
    "{%- else -%}{{- ', // default: ' ~ spec.default | tojson -}}{%- endif -%}"
    "{%- endif -%}"
    "{{- ',\\n' -}}"
    "{%- endfor -%}"
    "{{- '}) => any;\\n\\n' -}}"
    "{%- else -%}{{- '() => any;\\n\\n' -}}{%- endif -%}"
    "{%- endfor -%}"
    "{{- '} // namespace functions' -}}"
    "{%- endmacro -%}"
)

_MIXED_CHANNELS = ("You have passed a message containing <|channel|> tags in the {} field. Instead of doing "
                   "this, you should pass analysis messages (the string between '<|message|>' and '<|end|>') "
                   "in the 'thinking' field, and final messages (the string between '<|message|>' and "
                   "'<|end|>') in the 'content' field.")

GPT_OSS_TEMPLATE = TEXT_MACRO + _TS_TYPE + _FUNCTIONS + (
    # the system message
    "{{- '<|start|>system<|message|>' -}}"
    "{{- (model_identity if model_identity is defined else 'You are ChatGPT, a large language model trained by "
    "OpenAI.') ~ '\\nKnowledge cutoff: 2024-06\\nCurrent date: ' ~ strftime_now('%Y-%m-%d') ~ '\\n\\n' -}}"
    "{{- 'Reasoning: ' ~ (reasoning_effort if reasoning_effort is defined else 'medium') ~ '\\n\\n' -}}"
    "{{- '# Valid channels: analysis, commentary, final. Channel must be included for every message.' -}}"
    "{%- if tools -%}{{- \"\\nCalls to these tools must go to the commentary channel: 'functions'.\" -}}{%- endif -%}"
    "{{- '<|end|>' -}}"
    # the developer message: the first system (or developer) message's text, and the tools
    "{%- set ns = namespace(start=0, developer='', last_call=none) -%}"
    "{%- if messages and messages[0].role in ['system', 'developer'] -%}"
    "{%- set ns.developer = text(messages[0].content) -%}{%- set ns.start = 1 -%}"
    "{%- endif -%}"
    "{%- if ns.developer or tools -%}"
    "{{- '<|start|>developer<|message|>' -}}"
    "{%- if ns.developer -%}{{- '# Instructions\\n\\n' ~ ns.developer ~ '\\n\\n' -}}{%- endif -%}"
    "{%- if tools -%}{{- '# Tools\\n\\n' ~ functions(tools) -}}{%- endif -%}"
    "{{- '<|end|>' -}}"
    "{%- endif -%}"
    "{%- set turns = messages[ns.start:] -%}"
    "{%- for message in turns -%}"
    "{%- set content = text(message.content) -%}"
    "{%- if message.role == 'assistant' -%}"
    "{%- set thinking = message.thinking if message.thinking is string else '' -%}"
    "{%- if '<|channel|>analysis<|message|>' in content or '<|channel|>final<|message|>' in content -%}"
    "{{- raise_exception(\"" + _MIXED_CHANNELS.format("content") + "\") -}}"
    "{%- elif '<|channel|>analysis<|message|>' in thinking or '<|channel|>final<|message|>' in thinking -%}"
    "{{- raise_exception(\"" + _MIXED_CHANNELS.format("thinking") + "\") -}}"
    "{%- endif -%}"
    "{%- if message.tool_calls -%}"
    # its reasoning stays unless a final answer follows later in the conversation
    "{%- set later = namespace(final=false) -%}"
    "{%- for after in turns[loop.index:] -%}"
    "{%- if after.role == 'assistant' and not after.tool_calls -%}{%- set later.final = true -%}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if content and thinking -%}"
    "{{- raise_exception('Cannot pass both content and thinking in an assistant message with tool calls! Put the "
    "analysis message in one or the other, but not both.') -}}"
    "{%- elif (content or thinking) and not later.final -%}"
    "{{- '<|start|>assistant<|channel|>analysis<|message|>' ~ (content or thinking) ~ '<|end|>' -}}"
    "{%- endif -%}"
    # one call per message: the first
    "{%- set call = message.tool_calls[0] -%}"
    "{%- if call.function -%}{%- set call = call.function -%}{%- endif -%}"
    "{{- '<|start|>assistant to=functions.' ~ call.name ~ '<|channel|>commentary ' -}}"
    "{{- (call.content_type if call.content_type is defined else 'json') ~ '<|message|>' -}}"
    "{{- call.arguments | tojson -}}{{- '<|call|>' -}}"
    "{%- set ns.last_call = call.name -%}"
    "{%- elif loop.last and not add_generation_prompt -%}"
    # a finished conversation (training): the last turn keeps its reasoning and ends with <|return|>
    "{%- if message.thinking is defined -%}"
    "{{- '<|start|>assistant<|channel|>analysis<|message|>' ~ message.thinking ~ '<|end|>' -}}"
    "{%- endif -%}"
    "{{- '<|start|>assistant<|channel|>final<|message|>' ~ content ~ '<|return|>' -}}"
    "{%- else -%}"
    "{{- '<|start|>assistant<|channel|>final<|message|>' ~ content ~ '<|end|>' -}}"
    "{%- set ns.last_call = none -%}"
    "{%- endif -%}"
    "{%- elif message.role == 'tool' -%}"
    "{%- if ns.last_call is none -%}"
    "{{- raise_exception('Message has tool role, but there was no previous assistant message with a tool call!') -}}"
    "{%- endif -%}"
    "{{- '<|start|>functions.' ~ ns.last_call ~ ' to=assistant<|channel|>commentary<|message|>' -}}"
    "{{- content | tojson -}}{{- '<|end|>' -}}"
    "{%- elif message.role == 'user' -%}"
    "{{- '<|start|>user<|message|>' ~ content ~ '<|end|>' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|start|>assistant' -}}{%- endif -%}"
)

_GPT_OSS = {
    "model_type": "gpt_oss", "architectures": ["GptOssForCausalLM"], "attention_bias": True,
    "attention_dropout": 0.0, "hidden_act": "silu", "hidden_size": 64, "intermediate_size": 64,
    "num_hidden_layers": 2, "layer_types": ["sliding_attention", "full_attention"], "sliding_window": 16,
    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "num_local_experts": 4,
    "num_experts_per_tok": 2, "experts_per_token": 2, "router_aux_loss_coef": 0.9, "output_router_logits": False,
    "swiglu_limit": 7.0, "rms_norm_eps": 1e-5, "rope_theta": 150000, "initial_context_length": 4096,
    "rope_scaling": {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0,
                     "original_max_position_embeddings": 4096, "truncate": False},
    "max_position_embeddings": 131072, "tie_word_embeddings": False, "vocab_size": 1024,
}

FAMILIES = [
    Family(
        "gpt_oss", "text", _GPT_OSS, template=GPT_OSS_TEMPLATE, eos_token="<|return|>",
        eos_tokens=("<|return|>", "<|endoftext|>", "<|call|>"), added_tokens=GPT_OSS_ADDED_TOKENS,
        bos_token="<|startoftext|>", pad_token="<|endoftext|>", add_bos=False, tool_format="harmony",
        reasoning="harmony", cache="rotating", source="openai/gpt-oss-20b",
        extra_tokenizer_config={"clean_up_tokenization_spaces": False},
    ),
]
