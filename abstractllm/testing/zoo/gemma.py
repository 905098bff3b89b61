"""The Gemma family: gemma3_text (google/gemma-3-1b-it), sliding-window attention with a few global layers.

Facts from google/gemma-3-1b-it's model files (tokenizer_config.json, config.json, generation_config.json) and
its SentencePiece model: ``<pad>`` = 0, ``<eos>`` = 1, ``<bos>`` = 2 (control pieces) and ``<unk>`` = 3, all
``special: true``; ``<mask>`` = 4 and ``[multimodal]`` = 5 (user-defined pieces, ``special: false``, then
``<unused0>`` .. ``<unused98>``, also not special); ``<start_of_turn>`` = 105 and ``<end_of_turn>`` = 106,
user-defined pieces that the tokenizer marks ``special: true``. ``bos_token`` ``<bos>`` with
``add_bos_token: true`` (the tokenizer prepends it) *and* a chat template that writes ``{{ bos_token }}``
itself: text rendered by the template and then encoded with special tokens gets two BOS (apply_chat_template
with ``tokenize=True``, as mlx-lm does, gets one). ``eos_token`` ``<eos>``; config.json and
generation_config.json stop on ``[1, 106]`` (``<eos>``, ``<end_of_turn>``). config.json: model_type
``gemma3_text``, ``sliding_window`` 512 with ``sliding_window_pattern`` 6 (five sliding layers, then a global
one), ``query_pre_attn_scalar``, ``rope_local_base_freq``, a tied head.

The template below is ours; it behaves as Gemma 3's: ``<bos>`` first, no system role (the system prompt and
a blank line are prepended to the first user turn), ``model`` as the assistant's role name,
``<start_of_turn>ROLE\\n{content | trim}<end_of_turn>\\n`` turns, roles that must alternate user / model
(``raise_exception`` otherwise, so a ``tool`` message after an assistant turn is refused, as by the real
template), other roles written under their own name, no tools (``tools`` is ignored and tool calls are not
written: ``tool_format=None``), generation prompt ``<start_of_turn>model\\n``.

What the zoo changes: the vocabulary is 1024 byte-level BPE tokens (the real one is 262,144 SentencePiece
pieces). ``<pad>``, ``<eos>``, ``<bos>``, ``<unk>`` keep their ids 0-3; ``<mask>``, ``[multimodal]``,
``<start_of_turn>``, ``<end_of_turn>`` keep their order and flags but sit at the end of the vocabulary
(1020-1023, not 4, 5, 105, 106), and the ``<unused*>`` and image tokens are left out. The model is 3 layers
(2 sliding with a window of 16, 1 global: ``sliding_window_pattern`` 3), so mlx-lm's cache is
``RotatingKVCache`` for the sliding layers. mlx-lm's ``gemma3_text`` ties the head only when the weights
have no ``lm_head.weight``; the zoo's builder saves one, so the zoo's Gemma (random or scripted) has an
untied head, which is what makes the scripted build possible.
"""

from __future__ import annotations

from .family import Family

#: after the BPE vocabulary, in the real order, with the real ``special`` flags
GEMMA3_ADDED_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<mask>", False), ("[multimodal]", False), ("<start_of_turn>", True), ("<end_of_turn>", True),
)
#: ids 0-3, as in the real vocabulary
GEMMA3_SPECIAL_TOKENS = ("<pad>", "<eos>", "<bos>", "<unk>")

GEMMA3_TEMPLATE = (
    "{{- bos_token -}}"
    # no system role: its text and a blank line open the first user turn
    "{%- set ns = namespace(prefix='', start=0) -%}"
    "{%- if messages and messages[0].role == 'system' -%}"
    "{%- set system = messages[0].content -%}"
    "{%- set ns.prefix = (system if system is string else system[0].text) ~ '\\n\\n' -%}"
    "{%- set ns.start = 1 -%}"
    "{%- endif -%}"
    "{%- for message in messages[ns.start:] -%}"
    "{%- if (message.role == 'user') != (loop.index0 is even) -%}"
    "{{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') -}}"
    "{%- endif -%}"
    "{{- '<start_of_turn>' ~ ('model' if message.role == 'assistant' else message.role) ~ '\\n' -}}"
    "{%- if loop.first -%}{{- ns.prefix -}}{%- endif -%}"
    "{%- if message.content is string -%}{{- message.content | trim -}}"
    "{%- elif message.content is iterable -%}"
    "{%- for part in message.content -%}"
    "{%- if part.type == 'image' -%}{{- '<start_of_image>' -}}"
    "{%- elif part.type == 'text' -%}{{- part.text | trim -}}{%- endif -%}"
    "{%- endfor -%}"
    "{%- else -%}{{- raise_exception('Invalid content type') -}}"
    "{%- endif -%}"
    "{{- '<end_of_turn>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<start_of_turn>model\\n' -}}{%- endif -%}"
)

_GEMMA3_TEXT = {
    "model_type": "gemma3_text", "architectures": ["Gemma3ForCausalLM"], "hidden_activation": "gelu_pytorch_tanh",
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 3, "num_attention_heads": 4,
    "num_key_value_heads": 1, "head_dim": 16, "query_pre_attn_scalar": 16, "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0, "rope_scaling": None,
    "sliding_window": 16, "sliding_window_pattern": 3,
    "layer_types": ["sliding_attention", "sliding_attention", "full_attention"],
    "max_position_embeddings": 32768, "attention_bias": False, "attn_logit_softcapping": None,
    "final_logit_softcapping": None, "tie_word_embeddings": True, "vocab_size": 1024,
}

FAMILIES = [
    Family(
        "gemma3_text", "text", _GEMMA3_TEXT, template=GEMMA3_TEMPLATE, eos_token="<eos>", end_of_turn="<end_of_turn>",
        eos_tokens=("<eos>", "<end_of_turn>"), added_tokens=GEMMA3_ADDED_TOKENS,
        special_tokens=GEMMA3_SPECIAL_TOKENS, bos_token="<bos>", pad_token="<pad>", add_bos=True,
        tool_format=None, reasoning=None, cache="rotating", source="google/gemma-3-1b-it",
        extra_tokenizer_config={"unk_token": "<unk>", "add_eos_token": False,
                                "spaces_between_special_tokens": False},
    ),
]
