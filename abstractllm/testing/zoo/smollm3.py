"""The SmolLM3 family: smollm3 (HuggingFaceTB/SmolLM3-3B, hybrid reasoning, NoPE layers).

Facts from HuggingFaceTB/SmolLM3-3B (config.json, chat_template.jinja with its commit 486a602 "reassign
xml_tools to tools to make it work with vllm", the model card) and public ports of it checked against its
GGUF (which of its markers are control tokens):

- config.json: ``model_type`` ``smollm3`` (mlx-lm has it), ``no_rope_layers`` (every 4th layer without RoPE:
  here ``no_rope_layer_interval`` 2 over 2 layers, so one NoPE layer), rope_theta 5e6, tied embeddings,
  bos_token_id 128000, eos_token_id 128012 (``<|im_end|>``), pad_token_id 128004 (``<|finetune_right_pad_id|>``).
- The tokenizer is Llama 3's: 128,000 BPE tokens then a block of 256 special added tokens, some of Llama's
  reserved slots renamed: ``<|im_start|>``, ``<|im_end|>``, ``<think>``, ``</think>``, ``<tool_call>``,
  ``</tool_call>`` are all *special* there (unlike Qwen, whose ``<think>`` and ``<tool_call>`` are not).
  The ids of ``<|begin_of_text|>`` (128000), ``<|end_of_text|>`` (128001), ``<|finetune_right_pad_id|>``
  (128004) and ``<|im_end|>`` (128012) are confirmed by config.json; the slots of the other renamed tokens
  follow the Llama 3 block as best known (``<think>`` / ``</think>`` in reserved slots 0-1, ``<|im_start|>``
  just before ``<|im_end|>``, the tool-call tags after it) and are not confirmed. Neither the tokenizer nor the
  template writes a BOS.
- Generation stops on ``<|im_end|>``.

The template below is ours; it behaves as SmolLM3's: ChatML; a system turn that always opens with a
"## Metadata" block ("Knowledge Cutoff Date: June 2025", "Today Date: " from ``strftime_now("%d %B %Y")``,
"Reasoning Mode: /think" or "/no_think") and "## Custom Instructions" (the system prompt with the ``/think``
and ``/no_think`` flags taken out and trailing space stripped, else a default persona: a long reasoning one in
think mode, a short one otherwise); the reasoning mode is ``enable_thinking`` (default true) unless the system
prompt carries ``/no_think`` (wins) or ``/think``; a system prompt with ``/system_override`` replaces the whole
block by its own text. Tools (``tools``, or ``xml_tools`` as the model card passes them; ``python_tools`` for
``<code>`` calls) go into a "### Tools" section, each written with Jinja's ``string`` filter (Python ``repr``,
single quotes), with the instruction to answer ``<tool_call>\\n{"name": ..., "arguments": ...}\\n</tool_call>``.
Faithful quirks: the system turn gets its ``<|im_end|>`` only inside that tools section, so without tools it
is never closed; assistant ``tool_calls`` in the history are not rendered at all (only the message's content);
tool results are plain user turns; a later system message is dropped; in think mode an assistant turn is its
content as given (reasoning kept), in no-think mode it is prefixed with an empty ``<think>\\n\\n</think>\\n``,
which is also what the no-think generation prompt ends with (the think-mode prompt is
``<|im_start|>assistant\\n``: the model opens ``<think>`` itself). The real template wraps assistant turns in
``{% generation %}`` (for assistant masks); it changes no text and is left out here.

mlx-lm infers no tool parser from this template (it has ``<tool_call>`` but no ``tool_call.name``) nor from
the vocabulary, so the family has no tool format (``tool_format=None``): served by mlx-lm, SmolLM3's calls are
not parsed (vLLM serves it with its hermes parser).
"""

from __future__ import annotations

from .family import Family

SMOLLM3_ADDED_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|begin_of_text|>", True), ("<|end_of_text|>", True), ("<think>", True), ("</think>", True),
    ("<|finetune_right_pad_id|>", True), ("<|reserved_special_token_2|>", True),
    ("<|start_header_id|>", True), ("<|end_header_id|>", True), ("<|eom_id|>", True), ("<|eot_id|>", True),
    ("<|python_tag|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
    ("<tool_call>", True), ("</tool_call>", True),
    *((f"<|reserved_special_token_{n}|>", True) for n in range(8, 12)),
)

_THINK_PERSONA = (
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face. Your role as an assistant involves "
    "thoroughly exploring questions through a systematic thinking process before providing the final precise and "
    "accurate solutions. This requires engaging in a comprehensive cycle of analysis, summarizing, exploration, "
    "reassessment, reflection, backtracking, and iteration to develop well-considered thinking process. Please "
    "structure your response into two main sections: Thought and Solution using the specified format: <think> "
    "Thought section </think> Solution section. In the Thought section, detail your reasoning process in steps. "
    "Each step should include detailed considerations such as analysing questions, summarizing relevant findings, "
    "brainstorming new ideas, verifying the accuracy of the current steps, refining any errors, and revisiting "
    "previous steps. In the Solution section, based on various attempts, explorations, and reflections from the "
    "Thought section, systematically present the final solution that you deem correct. The Solution section "
    "should be logical, accurate, and concise and detail necessary steps needed to reach the conclusion."
)
_PERSONA = "You are a helpful AI assistant named SmolLM, trained by Hugging Face."

SMOLLM3_TEMPLATE = (
    "{%- set ns = namespace(think=(enable_thinking if enable_thinking is defined else true), custom='', "
    "override=false) %}"
    "{%- if messages[0].role == 'system' %}"
    "{%- set sys = messages[0].content %}"
    "{%- if '/no_think' in sys %}{%- set ns.think = false %}{%- elif '/think' in sys %}{%- set ns.think = true %}"
    "{%- endif %}"
    "{%- set ns.custom = sys.replace('/no_think', '').replace('/think', '').rstrip() %}"
    "{%- set ns.override = '/system_override' in sys %}"
    "{%- endif %}"
    "{%- set mode = '/think' if ns.think else '/no_think' %}"
    "{%- set xml = tools if tools else (xml_tools if xml_tools is defined else none) %}"
    "{%- set python = python_tools if python_tools is defined else none %}"
    "{{- '<|im_start|>system\\n' }}"
    "{%- if ns.override %}"
    "{{- ns.custom.replace('/system_override', '').rstrip() + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '## Metadata\\n\\nKnowledge Cutoff Date: June 2025\\nToday Date: ' + strftime_now('%d %B %Y') + "
    "'\\nReasoning Mode: ' + mode + '\\n\\n## Custom Instructions\\n\\n' }}"
    "{%- if ns.custom %}{{- ns.custom }}"
    "{%- elif ns.think %}{{- '" + _THINK_PERSONA + "' }}"
    "{%- else %}{{- '" + _PERSONA + "' }}{%- endif %}"
    "{{- '\\n\\n' }}"
    # the system turn is closed only here, with tools (the real template's quirk)
    "{%- if xml or python %}"
    "{{- '### Tools\\n\\n' }}"
    "{%- if xml %}"
    "{{- 'You may call one or more functions to assist with the user query.\\nYou are provided with function "
    "signatures within <tools></tools> XML tags:\\n\\n<tools>\\n' }}"
    "{%- for t in xml[:] %}{{- t | string + '\\n' }}{%- endfor %}"
    "{{- '</tools>\\n\\nFor each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\\n<tool_call>\\n{\"name\": <function-name>, \"arguments\": "
    "<args-json-object>}\\n</tool_call>' }}"
    "{%- endif %}"
    "{%- if python %}"
    "{{- \"When you send a message containing Python code between '<code>' and '</code>' tags, it will be executed "
    "in a stateful Jupyter notebook environment, and you will then be given the output to continued reasoning in "
    "an agentic loop.\\n\\nYou can use the following tools in your python code like regular functions:\\n\""
    " + '<tools>\\n' }}"
    "{%- for t in python[:] %}{{- t | string + '\\n' }}{%- endfor %}"
    "{{- '</tools>\\n\\nThe state persists between code executions: so variables that you define in one step are "
    "still available thereafter.' }}"
    "{%- endif %}"
    "{{- '\\n\\n<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endif %}"
    "{%- set empty_think = '' if ns.think else '<think>\\n\\n</think>\\n' %}"
    "{%- for m in messages %}"
    "{%- set text = m.content if m.content is string else '' %}"
    "{%- if m.role == 'user' or m.role == 'tool' %}"
    "{{- '<|im_start|>user\\n' + text + '<|im_end|>\\n' }}"
    "{%- elif m.role == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' + empty_think + text.lstrip('\\n') + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' + empty_think }}{%- endif %}"
)

_SMOLLM3 = {
    "model_type": "smollm3", "architectures": ["SmolLM3ForCausalLM"], "hidden_act": "silu", "rms_norm_eps": 1e-6,
    "rope_theta": 5000000.0, "max_position_embeddings": 65536, "tie_word_embeddings": True, "rope_scaling": None,
    "attention_bias": False, "mlp_bias": False, "use_sliding_window": False, "sliding_window": None,
    "no_rope_layer_interval": 2, "no_rope_layers": [1, 0], "layer_types": ["full_attention", "full_attention"],
    "hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128, "num_attention_heads": 4,
    "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 1024,
}

FAMILIES = [
    Family("smollm3", "text", _SMOLLM3, template=SMOLLM3_TEMPLATE, added_tokens=SMOLLM3_ADDED_TOKENS,
           bos_token="<|begin_of_text|>", add_bos=False, eos_token="<|im_end|>", eos_tokens=("<|im_end|>",),
           pad_token="<|finetune_right_pad_id|>", tool_format=None, reasoning="think", cache="kv",
           source="HuggingFaceTB/SmolLM3-3B",
           extra_tokenizer_config={"model_max_length": 131072}),
]
