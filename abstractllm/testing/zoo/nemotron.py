"""The NVIDIA Nemotron-H family: nemotron_h (hybrid Mamba-2 / attention / MLP, recurrent cache).

Architecture (mlx-lm ``mlx_lm/models/nemotron_h.py``; nvidia/NVIDIA-Nemotron-Nano-9B-v2 ``config.json``): a
stack described by ``hybrid_override_pattern``, one character a layer: ``M`` Mamba-2 mixer (conv + SSM state,
an ``ArraysCache``), ``*`` attention (a ``KVCache``), ``-`` MLP (ReLU², no cache), ``E`` MoE. Nano-9B-v2 has 56
layers (27 ``M``, 25 ``-``, 4 ``*``) starting ``M-M-M-MM-M-M-M*-...``; the tiny config keeps that shape at
``M-M*-`` with the real flags (no biases except the conv's, untied head, ``layer_norm_epsilon`` 1e-5).

Tokenizer (Nano-9B-v2 / Nemotron-H files, as embedded by NVIDIA-NeMo and llama.cpp): a 131,072-entry
vocabulary whose first ids are control tokens: ``<unk>`` 0, ``<s>`` 1 (BOS, prepended by the tokenizer,
not by the template), ``</s>`` 2, and the ``<SPECIAL_N>`` placeholders at their own ids (``<SPECIAL_10>``
opens the system turn, ``<SPECIAL_11>`` the user and assistant turns, ``<SPECIAL_12>`` ends an assistant
turn and is the chat model's eos: Megatron-Bridge's Nano-v2 recipes set ``eos_token="<SPECIAL_12>"``; the
base vocabulary's ``</s>`` stays a stop id). ``<think>``, ``</think>``, ``<TOOLCALL>``, ``</TOOLCALL>``,
``<AVAILABLE_TOOLS>``, ``<TOOL_RESPONSE>`` (and their closers) are single special tokens of that control
block (NVIDIA's vLLM tool parser asks for ``skip_special_tokens=False`` to see ``<TOOLCALL>``). Ids 3-9 and
the markers' exact ids are the zoo's choice (placeholders ``<SPECIAL_3>`` .. ``<SPECIAL_9>``, markers at 13-20).

Template (ours; behaves as NVIDIA-Nemotron-Nano-9B-v2's ``chat_template``, vendored by llama.cpp as
``models/templates/NVIDIA-Nemotron-Nano-v2.jinja``): a system turn always (``<SPECIAL_10>System\\n`` + the
system text, empty if none); tools listed in it as ``<AVAILABLE_TOOLS>[...]</AVAILABLE_TOOLS>`` with the
``<TOOLCALL>[{"name": ..., "arguments": ...}]</TOOLCALL>`` call format (its literal doubled braces
included); user turns ``<SPECIAL_11>User\\n...\\n``; consecutive tool results in one user turn
``<TOOL_RESPONSE>[r1, r2]</TOOL_RESPONSE>``; assistant turns ``<SPECIAL_11>Assistant\\n...\\n<SPECIAL_12>\\n\\n``
with earlier reasoning dropped (the text after ``</think>`` kept). Reasoning is on unless a system or user
message says ``/no_think`` (``/think`` turns it back on; the last one wins; both are removed from the text):
the generation prompt is ``<SPECIAL_11>Assistant\\n<think>\\n`` (the model writes its reasoning and
``</think>``), or ``<SPECIAL_11>Assistant\\n<think></think>`` when off. The template ignores
``enable_thinking``, as the real one does. A final assistant message is continued (prefill) after the
generation prompt. mlx-lm has no parser for ``<TOOLCALL>`` (its inference finds none in this template), so
``tool_format`` is ``None``.

mlx-lm 0.32.2's ``NemotronHMamba2Mixer`` loses the per-row lengths of a mixed-length batch prefill
(``abstractllm.providers.mlx.guards``): this family is the zoo's reproduction of it.
"""

from __future__ import annotations

from .family import TEXT_MACRO, Family

#: the control block at the start of the vocabulary (ids 0..20 here)
NEMOTRON_SPECIAL_TOKENS: tuple[str, ...] = (
    "<unk>", "<s>", "</s>", *(f"<SPECIAL_{i}>" for i in range(3, 13)),
    "<think>", "</think>", "<TOOLCALL>", "</TOOLCALL>",
    "<AVAILABLE_TOOLS>", "</AVAILABLE_TOOLS>", "<TOOL_RESPONSE>", "</TOOL_RESPONSE>",
)


#: One assistant message's calls: ``<TOOLCALL>[{"name": "f", "arguments": {...}}, ...]</TOOLCALL>``.
_CALLS = (
    "{%- macro calls(tool_calls) -%}"
    "{{- '<TOOLCALL>[' -}}"
    "{%- for call in tool_calls -%}"
    "{%- set fn = call.function if call.function is defined else call -%}"
    "{{- '{\"name\": \"' + fn.name + '\", \"arguments\": ' -}}"
    "{%- if fn.arguments is string -%}{{- fn.arguments -}}{%- else -%}{{- fn.arguments | tojson -}}{%- endif -%}"
    "{{- '}' + (', ' if not loop.last else '') -}}"
    "{%- endfor -%}"
    "{{- ']</TOOLCALL>' -}}"
    "{%- endmacro -%}"
)

NEMOTRON_NANO_V2_TEMPLATE = TEXT_MACRO + _CALLS + (
    # reasoning: on, unless a system or user message says /no_think (the last /think or /no_think wins)
    "{%- set ns = namespace(thinking=true, system='') -%}"
    "{%- for message in messages -%}"
    "{%- if message.role in ['system', 'user'] -%}{%- set t = text(message.content) -%}"
    "{%- if '/think' in t -%}{%- set ns.thinking = true -%}"
    "{%- elif '/no_think' in t -%}{%- set ns.thinking = false -%}{%- endif -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    # the system turn, always; the tools in it
    "{%- if messages and messages[0].role == 'system' -%}"
    "{%- set ns.system = text(messages[0].content).replace('/think', '').replace('/no_think', '').strip() -%}"
    "{%- set messages = messages[1:] -%}"
    "{%- endif -%}"
    "{{- '<SPECIAL_10>System\\n' + ns.system -}}"
    "{%- if tools -%}"
    "{%- if ns.system -%}{{- '\\n\\n' -}}{%- endif -%}"
    "{{- 'You can use the following tools to assist the user if required:\\n<AVAILABLE_TOOLS>[' -}}"
    "{%- for tool in tools -%}"
    "{{- (tool.function if tool.function is defined else tool) | tojson -}}{{- ', ' if not loop.last else '' -}}"
    "{%- endfor -%}"
    "{{- ']</AVAILABLE_TOOLS>\\n\\nIf you decide to call any tool(s), use the following format:\\n"
    "<TOOLCALL>[{{\"name\": \"tool_name1\", \"arguments\": \"tool_args1\"}}, {{\"name\": \"tool_name2\", "
    "\"arguments\": \"tool_args2\"}}]</TOOLCALL>\\n\\nThe user will execute tool-calls and return responses from "
    "tool(s) in this format:\\n<TOOL_RESPONSE>[{{\"tool_response1\"}}, {{\"tool_response2\"}}]</TOOL_RESPONSE>\\n\\n"
    "Based on the tool responses, you can call additional tools if needed, correct tool calls if any errors are "
    "found, or just respond to the user.' -}}"
    "{%- endif -%}"
    "{{- '\\n\\n' -}}"
    # a final assistant message is continued after the generation prompt
    "{%- set last = none -%}"
    "{%- if messages and messages[-1].role == 'assistant' -%}"
    "{%- set last = messages[-1] -%}{%- set messages = messages[:-1] -%}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{%- set content = text(message.content) -%}"
    "{%- if message.role == 'user' -%}"
    "{{- '<SPECIAL_11>User\\n' + content.replace('/think', '').replace('/no_think', '').strip() + '\\n' -}}"
    "{%- elif message.role == 'tool' -%}"
    "{%- if loop.first or messages[loop.index0 - 1].role != 'tool' -%}"
    "{{- '<SPECIAL_11>User\\n<TOOL_RESPONSE>[' -}}{%- endif -%}"
    "{{- content -}}"
    "{%- if loop.last or messages[loop.index0 + 1].role != 'tool' -%}{{- ']</TOOL_RESPONSE>\\n\\n' -}}"
    "{%- else -%}{{- ', ' -}}{%- endif -%}"
    "{%- elif message.role == 'assistant' -%}"
    "{%- if '</think>' in content -%}{%- set content = content.split('</think>')[1] -%}{%- endif -%}"
    "{%- set content = content.strip() -%}"
    "{{- '<SPECIAL_11>Assistant\\n' + content -}}"
    "{%- if message.tool_calls -%}{%- if content -%}{{- '\\n\\n' -}}{%- endif -%}"
    "{{- calls(message.tool_calls) -}}{%- endif -%}"
    "{{- '\\n<SPECIAL_12>\\n\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- set opener = '<think>\\n' if ns.thinking else '<think></think>' -%}"
    "{%- set prefill = text(last.content).strip() if last is not none else '' -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<SPECIAL_11>Assistant\\n' + opener + prefill -}}"
    "{%- elif last is not none -%}"
    "{%- if prefill -%}"
    "{{- '<SPECIAL_11>Assistant\\n' + opener + prefill -}}"
    "{%- if continue_final_message is not defined or continue_final_message is false -%}"
    "{{- '\\n<SPECIAL_12>\\n\\n' -}}{%- endif -%}"
    "{%- endif -%}"
    "{%- if last.tool_calls -%}"
    "{{- '<SPECIAL_11>Assistant\\n' + calls(last.tool_calls) + '\\n<SPECIAL_12>\\n\\n' -}}"
    "{%- endif -%}"
    "{%- endif -%}"
)

_NEMOTRON_H = {
    "model_type": "nemotron_h", "architectures": ["NemotronHForCausalLM"],
    "hybrid_override_pattern": "M-M*-", "hidden_size": 64, "intermediate_size": 128, "vocab_size": 1024,
    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "attention_bias": False,
    "mamba_num_heads": 8, "mamba_head_dim": 16, "n_groups": 2, "ssm_state_size": 16, "conv_kernel": 4,
    "mamba_proj_bias": False, "use_conv_bias": True, "use_bias": False, "mlp_bias": False,
    "mamba_hidden_act": "silu", "mlp_hidden_act": "relu2", "layer_norm_epsilon": 1e-5,
    "time_step_min": 0.001, "time_step_max": 0.1, "chunk_size": 128, "residual_in_fp32": False,
    "max_position_embeddings": 131072, "tie_word_embeddings": False,
}

FAMILIES = [
    Family("nemotron_h", "text", _NEMOTRON_H, template=NEMOTRON_NANO_V2_TEMPLATE,
           special_tokens=NEMOTRON_SPECIAL_TOKENS, eos_token="<SPECIAL_12>", eos_tokens=("<SPECIAL_12>", "</s>"),
           bos_token="<s>", pad_token="<unk>", add_bos=True, tool_format=None, reasoning="think-in-prompt",
           cache="hybrid", source="nvidia/NVIDIA-Nemotron-Nano-9B-v2",
           extra_tokenizer_config={"unk_token": "<unk>", "clean_up_tokenization_spaces": False}),
]
