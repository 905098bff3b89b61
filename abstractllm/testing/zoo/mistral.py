"""The Mistral family: mistral (Mistral-7B-Instruct-v0.3; Mistral-Nemo's tool format, without the spaces).

Facts from mistralai/Mistral-7B-Instruct-v0.3 (tokenizer.json / tokenizer.model.v3, tokenizer_config.json,
config.json, generation_config.json) and mistral-common's v3 tokenizer (``mistral_instruct_tokenizer_240323.model.v3``,
read with sentencepiece: id 0 ``<unk>``, 1 ``<s>``, 2 ``</s>``, 3 ``[INST]``, 4 ``[/INST]``, 5 ``[TOOL_CALLS]``,
6 ``[AVAILABLE_TOOLS]``, 7 ``[/AVAILABLE_TOOLS]``, 8 ``[TOOL_RESULTS]``, 9 ``[/TOOL_RESULTS]``; the Hugging Face
files then hold ``[control_8]`` .. ``[control_768]`` at ids 10-770, all ``special``):

- ``<unk>``, ``<s>``, ``</s>`` are the first three tokens (``special_tokens``, ids 0-2 as in the real files).
- The seven control tokens are special added tokens, in the real order, followed by ``[control_8]`` ..
  ``[control_11]`` (the real files have 761 of those; a 1024-token vocabulary keeps four). Where the real files
  have them at ids 3-9, right after ``</s>``, here they sit at the end of the vocabulary: the builder puts
  ``special_tokens`` at the start and ``added_tokens`` at the end, and only added tokens serve a scripted model
  as single-token markup (``[TOOL_CALLS]`` written as the one control token, as the real model writes it).
- BOS ``<s>`` twice over, as in the real files: the tokenizer prepends it (``add_bos_token``, here a
  post-processor) and the template writes ``bos_token``; ``apply_chat_template`` (tokenize=True) encodes
  without special tokens, so the prompt has one. eos ``</s>`` (config.json and generation_config.json: 2).
  No pad token. The real tokenizer is SentencePiece (Metaspace, byte fallback); this one is byte-level BPE.
- config.json: ``model_type`` ``mistral`` (mlx-lm loads it with its llama module: ``MODEL_REMAPPING``),
  ``sliding_window`` null, rope_theta 1e6, untied head.

The template below is ours; it behaves as v0.3's: no system turn (the system prompt is prepended, with a blank
line, to the last user message, and only when that message is the conversation's last: a conversation that
ends with a tool result or an assistant turn loses it); roles after the system prompt must alternate user /
assistant (tool calls and results aside) or the template raises; ``[AVAILABLE_TOOLS] [...][/AVAILABLE_TOOLS]``
before the last user message (and any earlier one equal to it), each tool written as
``{"type": "function", "function": {...}}`` with string values unescaped and ``return`` left out;
``[INST] text[/INST]`` for a user turn, `` text</s>`` (trimmed) for an assistant turn;
``[TOOL_CALLS] [{"name": ..., "arguments": {...}, "id": "abcdefghi"}]</s>`` for calls, whose ids must be 9
characters (else it raises, as the real template does, for calls and for results); tool results as
``[TOOL_RESULTS] {"content": ..., "call_id": "abcdefghi"}[/TOOL_RESULTS]``; any other role raises. The
generation prompt adds nothing (the prompt ends with ``[/INST]``). mlx-lm infers the ``mistral`` tool parser
from ``[TOOL_CALLS]`` in the template (it reads ``[{"name", "arguments"}]`` after ``[TOOL_CALLS]``, no end
markup).
"""

from __future__ import annotations

from .family import Family

MISTRAL_SPECIAL_TOKENS = ("<unk>", "<s>", "</s>")

MISTRAL_V3_CONTROL_TOKENS: tuple[tuple[str, bool], ...] = (
    ("[INST]", True), ("[/INST]", True), ("[TOOL_CALLS]", True), ("[AVAILABLE_TOOLS]", True),
    ("[/AVAILABLE_TOOLS]", True), ("[TOOL_RESULTS]", True), ("[/TOOL_RESULTS]", True),
    *((f"[control_{n}]", True) for n in range(8, 12)),
)

MISTRAL_V3_TEMPLATE = (
    "{%- set ns = namespace(system=none, turns=0) %}"
    "{%- set msgs = messages %}"
    "{%- if msgs[0]['role'] == 'system' %}{%- set ns.system = msgs[0]['content'] %}{%- set msgs = msgs[1:] %}"
    "{%- endif %}"
    "{%- set tools = tools if tools is defined else none %}"
    "{%- set last_user = (msgs | selectattr('role', 'equalto', 'user') | list)[-1] %}"
    # user and assistant turns alternate (tool calls and results aside)
    "{%- for m in msgs %}"
    "{%- if m.role != 'tool' and m.role != 'tool_results' and (m.tool_calls is not defined or m.tool_calls is none) %}"
    "{%- if (m['role'] == 'user') != (ns.turns % 2 == 0) %}"
    "{{- raise_exception('After the optional system message, conversation roles must alternate "
    "user/assistant/user/assistant/...') }}"
    "{%- endif %}"
    "{%- set ns.turns = ns.turns + 1 %}"
    "{%- endif %}"
    "{%- endfor %}"
    "{{- bos_token }}"
    "{%- for m in msgs %}"
    "{%- if m['role'] == 'user' %}"
    "{%- if tools is not none and m == last_user %}"
    "{{- '[AVAILABLE_TOOLS] [' }}"
    "{%- for t in tools %}"
    "{{- '{\"type\": \"function\", \"function\": {' }}"
    "{%- for key, value in t.function.items() if key != 'return' %}"
    "{{- '\"' + key + '\": ' + ('\"' + value + '\"' if value is string else value | tojson) }}"
    "{{- '' if loop.last else ', ' }}"
    "{%- endfor %}"
    "{{- '}}' + (']' if loop.last else ', ') }}"
    "{%- endfor %}"
    "{{- '[/AVAILABLE_TOOLS]' }}"
    "{%- endif %}"
    "{{- '[INST] ' }}"
    "{%- if loop.last and ns.system is not none %}{{- ns.system + '\\n\\n' }}{%- endif %}"
    "{{- m['content'] + '[/INST]' }}"
    "{%- elif m.tool_calls is defined and m.tool_calls is not none %}"
    "{{- '[TOOL_CALLS] [' }}"
    "{%- for call in m.tool_calls %}"
    "{%- if call.id is not defined or call.id | length != 9 %}"
    "{{- raise_exception('Tool call IDs should be alphanumeric strings with length 9!') }}{%- endif %}"
    "{{- (call.function | tojson)[:-1] + ', \"id\": \"' + call.id + '\"}' + (']' + eos_token if loop.last else ', ') }}"
    "{%- endfor %}"
    "{%- elif m['role'] == 'assistant' %}"
    "{{- ' ' + m['content'] | trim + eos_token }}"
    "{%- elif m['role'] == 'tool' or m['role'] == 'tool_results' %}"
    "{%- set result = m.content.content if m.content is defined and m.content.content is defined else m.content %}"
    "{%- if m.tool_call_id is not defined or m.tool_call_id | length != 9 %}"
    "{{- raise_exception('Tool call IDs should be alphanumeric strings with length 9!') }}{%- endif %}"
    "{{- '[TOOL_RESULTS] {\"content\": ' + result | string + ', \"call_id\": \"' + m.tool_call_id }}"
    "{{- '\"}[/TOOL_RESULTS]' }}"
    "{%- else %}"
    "{{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional "
    "system message!') }}"
    "{%- endif %}"
    "{%- endfor %}"
)

_MISTRAL_V03 = {
    "model_type": "mistral", "architectures": ["MistralForCausalLM"], "hidden_act": "silu", "rms_norm_eps": 1e-5,
    "rope_theta": 1000000.0, "max_position_embeddings": 32768, "sliding_window": None,
    "tie_word_embeddings": False, "hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128,
    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 1024,
}

FAMILIES = [
    Family("mistral", "text", _MISTRAL_V03, template=MISTRAL_V3_TEMPLATE, special_tokens=MISTRAL_SPECIAL_TOKENS,
           added_tokens=MISTRAL_V3_CONTROL_TOKENS, bos_token="<s>", add_bos=True, eos_token="</s>",
           eos_tokens=("</s>",), tool_format="mistral", cache="kv", source="mistralai/Mistral-7B-Instruct-v0.3",
           extra_tokenizer_config={"unk_token": "<unk>", "add_eos_token": False, "legacy": False,
                                   "spaces_between_special_tokens": False}),
]
