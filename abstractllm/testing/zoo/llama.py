"""The Llama 3 family: llama (Llama 3.1 / 3.2 Instruct).

Facts from meta-llama/Llama-3.1-8B-Instruct (tokenizer.json, tokenizer_config.json, config.json,
generation_config.json; its chat template as kept in llama.cpp's models/templates and quoted in public
projects) and meta-llama/Llama-3.2-1B-Instruct (same tokenizer):

- the 256 added tokens after the 128,000 BPE tokens (ids 128000-128255), all ``special``: ``<|begin_of_text|>``,
  ``<|end_of_text|>``, ``<|reserved_special_token_0|>``, ``<|reserved_special_token_1|>``,
  ``<|finetune_right_pad_id|>``, ``<|reserved_special_token_2|>``, ``<|start_header_id|>``, ``<|end_header_id|>``,
  ``<|eom_id|>``, ``<|eot_id|>``, ``<|python_tag|>``, then ``<|reserved_special_token_3|>`` ..
  ``<|reserved_special_token_247|>``. A 1024-token vocabulary cannot hold 256 of them: the named ones keep their
  order and the reserved run stops after ``<|reserved_special_token_7|>``.
- BOS ``<|begin_of_text|>`` twice over, as in the real files: tokenizer.json's post-processor prepends it
  (``add_bos``) *and* the template writes ``bos_token``. ``apply_chat_template`` (tokenize=True) encodes the
  rendered text without special tokens, so the prompt has one BOS; encoding the rendered text again with
  ``add_special_tokens=True`` gives two (mlx-lm avoids it: a text prompt that starts with BOS is encoded
  without). No pad token.
- eos ``<|eot_id|>`` (tokenizer_config.json); generation stops on ``<|end_of_text|>``, ``<|eom_id|>`` and
  ``<|eot_id|>`` (generation_config.json and config.json: [128001, 128008, 128009]).

The template below is ours; it behaves as Llama 3.1's: a system turn that always carries "Cutting Knowledge
Date: December 2023" and "Today Date: 26 Jul 2024" (``date_string`` overrides it), "Environment: ipython" when
tools are given, the system prompt trimmed after them; custom tools listed (``tojson(indent=4)``) with the
instruction to answer ``{"name": function name, "parameters": dictionary of argument name and its value}``
in the first user turn (``tools_in_user_message``, default true; false puts them in the system turn), which
must exist; an assistant tool call rendered as that JSON (its content dropped; more than one call raises);
tool results as ``ipython`` turns, their content JSON-encoded (a string result is written as a JSON string,
quotes included, as the real template does); built-in tools (``builtin_tools``) listed in the system turn
("Tools: brave_search, wolfram_alpha", without code_interpreter), their calls written as
``<|python_tag|>name.call(arg="value")`` and, in that mode, every call turn ending with ``<|eom_id|>``. Llama 3.2's
own template is the same without ``builtin_tools`` and with today's date from ``strftime_now``. Tool calls are
recognised by the instruction text (``_LLAMA3_MARK`` in abstractllm.providers.mlx.toolcalls): mlx-lm has no
parser for them.
"""

from __future__ import annotations

from .family import Family

LLAMA3_ADDED_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|begin_of_text|>", True), ("<|end_of_text|>", True),
    ("<|reserved_special_token_0|>", True), ("<|reserved_special_token_1|>", True),
    ("<|finetune_right_pad_id|>", True), ("<|reserved_special_token_2|>", True),
    ("<|start_header_id|>", True), ("<|end_header_id|>", True), ("<|eom_id|>", True), ("<|eot_id|>", True),
    ("<|python_tag|>", True),
    *((f"<|reserved_special_token_{n}|>", True) for n in range(3, 8)),
)

_CALL_INSTRUCTION = ('Respond in the format {"name": function name, "parameters": dictionary of argument name and '
                     'its value}.Do not use variables.\\n\\n')

LLAMA31_TEMPLATE = (
    "{%- set tools = custom_tools if custom_tools is defined else (tools if tools is defined else none) %}"
    "{%- set in_user = tools_in_user_message if tools_in_user_message is defined else true %}"
    "{%- set date = date_string if date_string is defined else '26 Jul 2024' %}"
    "{%- set msgs = messages %}"
    "{%- set system = '' %}"
    "{%- if msgs[0]['role'] == 'system' %}{%- set system = msgs[0]['content'] | trim %}"
    "{%- set msgs = msgs[1:] %}{%- endif %}"
    "{%- macro tool_list() %}{%- for t in tools %}{{- t | tojson(indent=4) + '\\n\\n' }}{%- endfor %}{%- endmacro %}"
    "{{- bos_token + '<|start_header_id|>system<|end_header_id|>\\n\\n' }}"
    "{%- if builtin_tools is defined or tools is not none %}{{- 'Environment: ipython\\n' }}{%- endif %}"
    "{%- if builtin_tools is defined %}"
    "{{- 'Tools: ' + builtin_tools | reject('equalto', 'code_interpreter') | join(', ') + '\\n\\n' }}{%- endif %}"
    "{{- 'Cutting Knowledge Date: December 2023\\nToday Date: ' + date + '\\n\\n' }}"
    "{%- if tools is not none and not in_user %}"
    "{{- 'You have access to the following functions. To call a function, please respond with JSON for a function "
    "call.' + '" + _CALL_INSTRUCTION + "' + tool_list() }}"
    "{%- endif %}"
    "{{- system + '<|eot_id|>' }}"
    # custom tools go into the first message after the system prompt, whatever its role
    "{%- if in_user and tools is not none %}"
    "{%- if msgs | length == 0 %}"
    "{{- raise_exception(\"Cannot put tools in the first user message when there's no first user message!\") }}"
    "{%- endif %}"
    "{{- '<|start_header_id|>user<|end_header_id|>\\n\\nGiven the following functions, please respond with a JSON "
    "for a function call with its proper arguments that best answers the given prompt.\\n\\n' + '"
    + _CALL_INSTRUCTION + "' + tool_list() + (msgs[0]['content'] | trim) + '<|eot_id|>' }}"
    "{%- set msgs = msgs[1:] %}"
    "{%- endif %}"
    "{%- for m in msgs %}"
    "{%- if 'tool_calls' in m %}"
    "{%- if m.tool_calls | length != 1 %}"
    "{{- raise_exception('This model only supports single tool-calls at once!') }}{%- endif %}"
    "{%- set call = m.tool_calls[0].function %}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{%- if builtin_tools is defined and call.name in builtin_tools %}"
    "{{- '<|python_tag|>' + call.name + '.call(' }}"
    "{%- for k, v in call.arguments | items %}{{- k + '=\"' + v + '\"' + ('' if loop.last else ', ') }}{%- endfor %}"
    "{{- ')' }}"
    "{%- else %}"
    "{{- '{\"name\": \"' + call.name + '\", \"parameters\": ' + call.arguments | tojson + '}' }}"
    "{%- endif %}"
    "{{- '<|eom_id|>' if builtin_tools is defined else '<|eot_id|>' }}"
    "{%- elif m.role == 'tool' or m.role == 'ipython' %}"
    "{{- '<|start_header_id|>ipython<|end_header_id|>\\n\\n' }}"
    "{%- if m.content is mapping or m.content is iterable %}{{- m.content | tojson }}"
    "{%- else %}{{- m.content }}{%- endif %}"
    "{{- '<|eot_id|>' }}"
    "{%- else %}"
    "{{- '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' + m['content'] | trim + '<|eot_id|>' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)

_LLAMA31 = {
    "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_act": "silu", "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0, "max_position_embeddings": 131072, "tie_word_embeddings": False,
    "attention_bias": False, "mlp_bias": False,
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128, "num_attention_heads": 4,
    "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 1024,
}

FAMILIES = [
    Family("llama", "text", _LLAMA31, template=LLAMA31_TEMPLATE, added_tokens=LLAMA3_ADDED_TOKENS,
           bos_token="<|begin_of_text|>", add_bos=True, eos_token="<|eot_id|>",
           eos_tokens=("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"), tool_format="llama3_json",
           cache="kv", source="meta-llama/Llama-3.1-8B-Instruct",
           extra_tokenizer_config={"model_max_length": 131072,
                                   "model_input_names": ["input_ids", "attention_mask"]}),
]
