"""The Qwen families: qwen3 (dense, hybrid thinking), qwen3_moe, qwen3_5 (Gated-DeltaNet hybrid).

Facts from Qwen/Qwen3-0.6B, Qwen/Qwen3-30B-A3B and Qwen/Qwen3.5 model files (tokenizer_config.json,
config.json, generation_config.json): the 26 added tokens after the BPE vocabulary (``<|endoftext|>`` ..
``<|video_pad|>`` special; ``<tool_call>``, ``</tool_call>``, the FIM tokens, ``<tool_response>``,
``</tool_response>``, ``<think>``, ``</think>`` *not* special), eos ``<|im_end|>`` (generation also stops on
``<|endoftext|>``), no BOS. The template below is ours; it behaves as Qwen3's: tools in the system turn,
``<tool_call>`` JSON calls, consecutive tool results in one user turn of ``<tool_response>`` blocks, the
reasoning of the turns after the last user query kept as ``<think>`` blocks (earlier ones dropped), and
``enable_thinking=False`` writing an empty think block into the generation prompt. ``qwen3_thinking`` is
Qwen3-*-Thinking-2507: its generation prompt always opens ``<think>`` (the reply starts inside the
reasoning) and it has no switch.
"""

from __future__ import annotations

from .family import TEXT_MACRO, Family

QWEN_ADDED_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
    ("<|object_ref_start|>", True), ("<|object_ref_end|>", True), ("<|box_start|>", True), ("<|box_end|>", True),
    ("<|quad_start|>", True), ("<|quad_end|>", True), ("<|vision_start|>", True), ("<|vision_end|>", True),
    ("<|vision_pad|>", True), ("<|image_pad|>", True), ("<|video_pad|>", True),
    ("<tool_call>", False), ("</tool_call>", False),
    ("<|fim_prefix|>", False), ("<|fim_middle|>", False), ("<|fim_suffix|>", False), ("<|fim_pad|>", False),
    ("<|repo_name|>", False), ("<|file_sep|>", False),
    ("<tool_response>", False), ("</tool_response>", False), ("<think>", False), ("</think>", False),
)


#: An assistant turn of Qwen3's template (``content`` set): the reasoning (``reasoning_content``, or the text
#: before ``</think>``) kept as a ``<think>`` block for the turns after the last user query, dropped before it.
QWEN3_ASSISTANT_TURN = (
    "{%- set reasoning = '' %}"
    "{%- if message.reasoning_content is string %}{%- set reasoning = message.reasoning_content %}"
    "{%- elif '</think>' in content %}"
    "{%- set reasoning = content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') %}"
    "{%- set content = content.split('</think>')[-1].lstrip('\\n') %}"
    "{%- endif %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if loop.index0 > ns.last_query and (loop.last or reasoning) %}"
    "{{- '<think>\\n' + reasoning.strip('\\n') + '\\n</think>\\n\\n' + content.lstrip('\\n') }}"
    "{%- else %}{{- content }}{%- endif %}"
)

#: An assistant message's tool calls in Qwen3's template: ``<tool_call>{"name", "arguments"}</tool_call>`` each.
QWEN3_TOOL_CALLS = (
    "{%- for tool_call in message.tool_calls or [] %}"
    "{%- if tool_call.function is defined %}{%- set tool_call = tool_call.function %}{%- endif %}"
    "{%- if not loop.first or content %}{{- '\\n' }}{%- endif %}"
    "{{- '<tool_call>\\n{\"name\": \"' + tool_call.name + '\", \"arguments\": ' }}"
    "{%- if tool_call.arguments is string %}{{- tool_call.arguments }}"
    "{%- else %}{{- tool_call.arguments | tojson }}{%- endif %}"
    "{{- '}\\n</tool_call>' }}"
    "{%- endfor %}"
)

QWEN3_TEMPLATE = TEXT_MACRO + (
    # tools: listed in the system turn
    "{%- if tools %}"
    "{{- '<|im_start|>system\\n' }}"
    "{%- if messages[0].role == 'system' %}{{- text(messages[0].content) + '\\n\\n' }}{%- endif %}"
    "{{- '# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided "
    "with function signatures within <tools></tools> XML tags:\\n<tools>' }}"
    "{%- for tool in tools %}{{- '\\n' + (tool | tojson) }}{%- endfor %}"
    "{{- '\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\\n<tool_call>\\n{\"name\": <function-name>, \"arguments\": "
    "<args-json-object>}\\n</tool_call><|im_end|>\\n' }}"
    "{%- elif messages[0].role == 'system' %}"
    "{{- '<|im_start|>system\\n' + text(messages[0].content) + '<|im_end|>\\n' }}"
    "{%- endif %}"
    # the last user query (a user turn that is not tool results)
    "{%- set ns = namespace(last_query=messages | length - 1) %}"
    "{%- for message in messages[::-1] %}{%- set i = messages | length - 1 - loop.index0 %}"
    "{%- if message.role == 'user' and ns.last_query == messages | length - 1 and not "
    "(text(message.content).startswith('<tool_response>') and text(message.content).endswith('</tool_response>'))"
    " %}{%- set ns.last_query = i %}{%- endif %}"
    "{%- endfor %}"
    "{%- for message in messages %}"
    "{%- set content = text(message.content) %}"
    "{%- if message.role == 'system' and loop.first %}"
    "{%- elif message.role == 'user' or message.role == 'system' %}"
    "{{- '<|im_start|>' + message.role + '\\n' + content + '<|im_end|>\\n' }}"
    "{%- elif message.role == 'assistant' %}"
    + QWEN3_ASSISTANT_TURN + QWEN3_TOOL_CALLS +
    "{{- '<|im_end|>\\n' }}"
    "{%- elif message.role == 'tool' %}"
    "{%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}{{- '<|im_start|>user' }}{%- endif %}"
    "{{- '\\n<tool_response>\\n' + content + '\\n</tool_response>' }}"
    "{%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{- '<|im_end|>\\n' }}{%- endif %}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{%- endif %}"
)

_QWEN3 = {
    "model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"], "hidden_act": "silu", "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0, "max_position_embeddings": 40960, "tie_word_embeddings": True,
    "attention_bias": False, "rope_scaling": None, "hidden_size": 64, "num_hidden_layers": 2,
    "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 1024,
}

_QWEN = dict(template=QWEN3_TEMPLATE, added_tokens=QWEN_ADDED_TOKENS, eos_token="<|im_end|>",
             eos_tokens=("<|im_end|>", "<|endoftext|>"), pad_token="<|endoftext|>", tool_format="json_tools",
             reasoning="think", extra_tokenizer_config={"add_bos_token": False, "errors": "replace",
                                                        "split_special_tokens": False})

#: Qwen3-*-Thinking-2507: the same template, but the generation prompt always opens the reasoning (no switch)
QWEN3_THINKING_TEMPLATE = QWEN3_TEMPLATE.replace(
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{%- endif %}",
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n<think>\\n' }}{%- endif %}")
assert QWEN3_THINKING_TEMPLATE != QWEN3_TEMPLATE

FAMILIES = [
    Family("qwen3", "text", _QWEN3, cache="kv", source="Qwen/Qwen3-0.6B", **_QWEN),
    Family("qwen3_thinking", "text", _QWEN3, cache="kv", source="Qwen/Qwen3-4B-Thinking-2507",
           **{**_QWEN, "template": QWEN3_THINKING_TEMPLATE, "reasoning": "think-in-prompt"}),
    Family("qwen3_moe", "text", {
        **_QWEN3, "model_type": "qwen3_moe", "architectures": ["Qwen3MoeForCausalLM"], "tie_word_embeddings": False,
        "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32, "decoder_sparse_step": 1,
        "mlp_only_layers": [], "norm_topk_prob": True}, cache="kv", source="Qwen/Qwen3-30B-A3B", **_QWEN),
    Family("qwen3_5", "text", {
        "model_type": "qwen3_5", "architectures": ["Qwen3_5ForCausalLM"], "text_config": {
            "model_type": "qwen3_5_text", "hidden_size": 64, "num_hidden_layers": 4, "intermediate_size": 128,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 1024,
            "rms_norm_eps": 1e-6, "max_position_embeddings": 32768, "tie_word_embeddings": False,
            "full_attention_interval": 2, "linear_num_value_heads": 4, "linear_num_key_heads": 2,
            "linear_key_head_dim": 16, "linear_value_head_dim": 16, "linear_conv_kernel_dim": 4,
            "rope_parameters": {"rope_theta": 10000000.0, "partial_rotary_factor": 0.25, "rope_type": "default"},
        }}, cache="hybrid", source="Qwen/Qwen3.5-0.8B", **_QWEN),
]
