"""The vision families (mlx-vlm): qwen2_vl, qwen2_5_vl, qwen3_vl, qwen3_vl_thinking, gemma3, smolvlm.

Facts (config keys and their meaning, token strings and their order and ``special`` flags, processor
configs, template behaviour) come from the public model files of Qwen/Qwen2-VL-2B-Instruct,
Qwen/Qwen2.5-VL-3B-Instruct, Qwen/Qwen3-VL-2B-Instruct (and -Thinking), google/gemma-3-4b-it and
HuggingFaceTB/SmolVLM-256M-Instruct, and from the keys mlx-vlm 0.7.10 reads (``mlx_vlm/models/<type>/``).
The sizes are tiny: each family keeps its architecture's traits (Qwen2.5-VL's windowed vision attention
with full-attention blocks, Qwen3-VL's deepstack tower and interleaved M-RoPE, Gemma 3's SigLIP tower,
pooled soft tokens and sliding-window layers, SmolVLM's image splitting and pixel shuffle) at a few
hundred kilobytes. The templates are ours, written to render as the real ones do. Token ids are filled in
by the builder (``abstractllm.testing.zoo.vision``); each family's ``source`` names the model it follows.
"""

from __future__ import annotations

from .family import Family
from .qwen import QWEN3_ASSISTANT_TURN, QWEN3_TOOL_CALLS, QWEN_ADDED_TOKENS

#: Qwen2-VL / Qwen2.5-VL (Qwen2.5 tokenizer): the first 22 of Qwen's added tokens, ``<|endoftext|>`` ..
#: ``<|file_sep|>`` (ids 151643..151664 in the real files); Qwen3 added ``<tool_response>``, ``</tool_response>``,
#: ``<think>`` and ``</think>`` after them.
QWEN2_VL_ADDED_TOKENS = QWEN_ADDED_TOKENS[:22]

_TOOLS_INTRO = (
    "# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided "
    "with function signatures within <tools></tools> XML tags:\\n<tools>"
)
_TOOLS_OUTRO = (
    "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\\n<tool_call>\\n{\"name\": <function-name>, \"arguments\": "
    "<args-json-object>}\\n</tool_call><|im_end|>\\n"
)


#: the ``render`` macro of the Qwen-VL templates: a message's text, its images and videos written as
#: ``<|vision_start|><|image_pad|><|vision_end|>`` (``<|video_pad|>``) when ``with_media``, ``Picture N: `` before
#: each when ``add_vision_id`` is passed
_QWEN_VL_RENDER = (
    "{%- set vision = namespace(images=0, videos=0) %}"
    "{%- macro render(content, with_media) -%}"
    "{%- if content is string -%}{{- content -}}"
    "{%- elif content -%}{%- for part in content -%}"
    "{%- if with_media and (part.type == 'image' or 'image' in part or 'image_url' in part) -%}"
    "{%- set vision.images = vision.images + 1 -%}"
    "{%- if add_vision_id is defined and add_vision_id -%}{{- 'Picture ' ~ vision.images ~ ': ' -}}{%- endif -%}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif with_media and (part.type == 'video' or 'video' in part) -%}"
    "{%- set vision.videos = vision.videos + 1 -%}"
    "{%- if add_vision_id is defined and add_vision_id -%}{{- 'Video ' ~ vision.videos ~ ': ' -}}{%- endif -%}"
    "{{- '<|vision_start|><|video_pad|><|vision_end|>' -}}"
    "{%- elif 'text' in part -%}{{- part.text -}}"
    "{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- endmacro -%}"
)

#: Qwen3-VL-Thinking: the index of the last user query (a tool response is not one), after which assistant turns
#: keep their reasoning
_QWEN_VL_LAST_QUERY = (
    "{%- set ns = namespace(last_query=messages | length - 1) %}"
    "{%- for message in messages[::-1] %}{%- set i = messages | length - 1 - loop.index0 %}"
    "{%- set t = render(message.content, false) %}"
    "{%- if message.role == 'user' and ns.last_query == messages | length - 1 and not "
    "(t.startswith('<tool_response>') and t.endswith('</tool_response>')) %}{%- set ns.last_query = i %}"
    "{%- endif %}{%- endfor %}"
)

#: Qwen2-VL / Qwen2.5-VL: each tool call as ``<tool_call>`` JSON, its arguments written as JSON
_QWEN2_VL_TOOL_CALLS = (
    "{%- for tool_call in message.tool_calls or [] %}"
    "{%- if tool_call.function is defined %}{%- set tool_call = tool_call.function %}{%- endif %}"
    "{{- '\\n<tool_call>\\n{\"name\": \"' + tool_call.name + '\", \"arguments\": ' }}"
    "{{- tool_call.arguments | tojson }}"
    "{{- '}\\n</tool_call>' }}"
    "{%- endfor %}"
)


def _qwen_vl_system(default_system: bool) -> str:
    """The system turn: the tools (with the system message's text, or the default one, before them), else the
    system message's text, else (``default_system``) ``You are a helpful assistant.``."""
    default = "'You are a helpful assistant.'" if default_system else "''"
    return (
        "{%- set has_system = messages and messages[0].role == 'system' %}"
        "{%- if tools %}"
        "{{- '<|im_start|>system\\n' }}"
        "{%- if has_system %}{{- render(messages[0].content, false) + '\\n\\n' }}"
        + ("{%- else %}{{- " + default + " + '\\n\\n' }}" if default_system else "")
        + "{%- endif %}"
        "{{- '" + _TOOLS_INTRO + "' }}"
        "{%- for tool in tools %}{{- '\\n' + (tool | tojson) }}{%- endfor %}"
        "{{- '" + _TOOLS_OUTRO + "' }}"
        "{%- elif has_system %}{{- '<|im_start|>system\\n' + render(messages[0].content, false) + '<|im_end|>\\n' }}"
        + ("{%- else %}{{- '<|im_start|>system\\n' + " + default + " + '<|im_end|>\\n' }}" if default_system else "")
        + "{%- endif %}"
    )


def _qwen_vl_assistant(*, qwen3: bool, thinking: bool) -> str:
    """An assistant turn, up to its ``<|im_end|>``: its text (with its reasoning for Qwen3-VL-Thinking), then its
    tool calls (Qwen3's block, arguments given as a string written as they are; else arguments as JSON)."""
    if thinking:
        body = "{%- set content = render(message.content, false) %}" + QWEN3_ASSISTANT_TURN
    elif qwen3:
        body = (
            "{%- set content = render(message.content, false) %}"
            "{{- '<|im_start|>assistant\\n' + content }}"
        )
    else:  # Qwen2.5: '<|im_start|>assistant' then '\n' + content when there is content
        body = (
            "{%- set content = render(message.content, false) %}"
            "{{- '<|im_start|>assistant' }}"
            "{%- if content or not message.tool_calls %}{{- '\\n' + content }}{%- endif %}"
        )
    return body + (QWEN3_TOOL_CALLS if qwen3 else _QWEN2_VL_TOOL_CALLS)


def _qwen_vl_template(*, default_system: bool, qwen3: bool, thinking: bool = False) -> str:
    """A Qwen-VL chat template.

    ``default_system`` (Qwen2-VL, Qwen2.5-VL): a conversation without a system message gets
    ``You are a helpful assistant.``; ``qwen3`` (Qwen3-VL): tool-call arguments given as a string are written
    as they are and images may appear in tool results; ``thinking`` (Qwen3-VL-Thinking): the generation
    prompt opens ``<think>``, and the assistant turns after the last user query keep their reasoning as
    ``<think>`` blocks (earlier ones drop it). Images and videos in user turns are written as
    ``<|vision_start|><|image_pad|><|vision_end|>`` (``<|video_pad|>``), ``Picture N: `` before each when
    ``add_vision_id`` is passed; system turns keep only their text.
    """
    body = (
        "{%- for message in messages %}"
        "{%- if message.role == 'system' %}"
        "{%- if not loop.first %}{{- '<|im_start|>system\\n' + render(message.content, false) + '<|im_end|>\\n' }}"
        "{%- endif %}"
        "{%- elif message.role == 'user' %}"
        "{{- '<|im_start|>user\\n' + render(message.content, true) + '<|im_end|>\\n' }}"
        "{%- elif message.role == 'assistant' %}"
        + _qwen_vl_assistant(qwen3=qwen3, thinking=thinking) +
        "{{- '<|im_end|>\\n' }}"
        "{%- elif message.role == 'tool' %}"
        "{%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}{{- '<|im_start|>user' }}{%- endif %}"
        "{{- '\\n<tool_response>\\n' + render(message.content, " + ("true" if qwen3 else "false") + ")"
        " + '\\n</tool_response>' }}"
        "{%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{- '<|im_end|>\\n' }}{%- endif %}"
        "{%- endif %}"
        "{%- endfor %}"
        "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n" + ("<think>\\n" if thinking else "") + "' }}"
        "{%- endif %}"
    )
    last_query = _QWEN_VL_LAST_QUERY if thinking else ""
    return _QWEN_VL_RENDER + _qwen_vl_system(default_system) + last_query + body


QWEN2_VL_TEMPLATE = _qwen_vl_template(default_system=True, qwen3=False)
QWEN3_VL_TEMPLATE = _qwen_vl_template(default_system=False, qwen3=True)
QWEN3_VL_THINKING_TEMPLATE = _qwen_vl_template(default_system=False, qwen3=True, thinking=True)

#: Gemma 3: BOS written by the template; a system message becomes the start of the first user turn; roles
#: must alternate user/model (any other order is an error); the assistant is ``model``; string content
#: and text parts are trimmed; an image part is ``<start_of_image>`` (the processor expands it).
GEMMA3_TEMPLATE = (
    "{{- bos_token }}"
    "{%- if messages and messages[0].role == 'system' %}"
    "{%- if messages[0].content is string %}{%- set prefix = messages[0].content + '\\n\\n' %}"
    "{%- else %}{%- set prefix = messages[0].content[0].text + '\\n\\n' %}{%- endif %}"
    "{%- set turns = messages[1:] %}"
    "{%- else %}{%- set prefix = '' %}{%- set turns = messages %}{%- endif %}"
    "{%- for message in turns %}"
    "{%- if (message.role == 'user') != (loop.index0 % 2 == 0) %}"
    "{{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{%- endif %}"
    "{{- '<start_of_turn>' + ('model' if message.role == 'assistant' else message.role) + '\\n' }}"
    "{%- if loop.first %}{{- prefix }}{%- endif %}"
    "{%- if message.content is string %}{{- message.content | trim }}"
    "{%- elif message.content is iterable %}{%- for part in message.content %}"
    "{%- if part.type == 'image' %}{{- '<start_of_image>' }}"
    "{%- elif part.type == 'text' %}{{- part.text | trim }}{%- endif %}"
    "{%- endfor %}"
    "{%- else %}{{- raise_exception('Invalid content type') }}{%- endif %}"
    "{{- '<end_of_turn>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<start_of_turn>model\\n' }}{%- endif %}"
)

#: SmolVLM: ``<|im_start|>`` once, then ``Role: text<end_of_utterance>\\n`` per message (``Role:`` without
#: the space when the content starts with an image), images as ``<image>`` (the processor expands each into
#: its tiles), ``Assistant:`` as the generation prompt; no tools.
SMOLVLM_TEMPLATE = (
    "{{- '<|im_start|>' }}"
    "{%- for message in messages %}"
    "{{- message.role | capitalize }}"
    "{%- if message.content is string %}{{- ': ' + message.content }}"
    "{%- else %}"
    "{%- if message.content and message.content[0].type == 'image' %}{{- ':' }}{%- else %}{{- ': ' }}{%- endif %}"
    "{%- for part in message.content %}"
    "{%- if part.type == 'text' %}{{- part.text }}{%- elif part.type == 'image' %}{{- '<image>' }}{%- endif %}"
    "{%- endfor %}"
    "{%- endif %}"
    "{{- '<end_of_utterance>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- 'Assistant:' }}{%- endif %}"
)

_QWEN_TEXT = {"hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128, "num_attention_heads": 4,
              "num_key_value_heads": 2, "vocab_size": 1024, "rms_norm_eps": 1e-6, "hidden_act": "silu"}

_QWEN2_VL = {
    "model_type": "qwen2_vl", "architectures": ["Qwen2VLForConditionalGeneration"], **_QWEN_TEXT,
    "rope_theta": 1000000.0, "max_position_embeddings": 32768, "tie_word_embeddings": True,
    "use_sliding_window": False, "sliding_window": 32768, "attention_dropout": 0.0,
    "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},  # real [16, 24, 24] for head_dim 128
    "vision_config": {
        "model_type": "qwen2_vl", "depth": 2, "embed_dim": 32, "hidden_size": 64, "hidden_act": "quick_gelu",
        "mlp_ratio": 2, "num_heads": 2, "in_chans": 3, "in_channels": 3, "patch_size": 14, "spatial_patch_size": 14,
        "spatial_merge_size": 2, "temporal_patch_size": 2,
    },
}

_QWEN2_5_VL = {
    **_QWEN2_VL, "model_type": "qwen2_5_vl", "architectures": ["Qwen2_5_VLForConditionalGeneration"],
    "max_position_embeddings": 128000,
    "vision_config": {
        # window attention: blocks attend within windows of window_size pixels (here 2x2 merged tokens, real
        # 112 = 4x4), except the blocks in fullatt_block_indexes (real [7, 15, 23, 31] of 32)
        "model_type": "qwen2_5_vl", "depth": 4, "hidden_size": 32, "intermediate_size": 64, "out_hidden_size": 64,
        "hidden_act": "silu", "num_heads": 2, "in_chans": 3, "in_channels": 3, "patch_size": 14,
        "spatial_patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "tokens_per_second": 2,
        "window_size": 56, "fullatt_block_indexes": [1, 3],
    },
}

_QWEN3_VL = {
    "model_type": "qwen3_vl", "architectures": ["Qwen3VLForConditionalGeneration"], "tie_word_embeddings": True,
    "text_config": {
        "model_type": "qwen3_vl_text", **_QWEN_TEXT, "head_dim": 16, "rope_theta": 5000000.0,
        "max_position_embeddings": 262144, "tie_word_embeddings": True, "attention_bias": False,
        # interleaved M-RoPE over (t, h, w); real [24, 20, 20] for head_dim 128
        "rope_scaling": {"mrope_interleaved": True, "mrope_section": [3, 3, 2], "rope_type": "default"},
    },
    "vision_config": {
        # deepstack: the merged features of the blocks in deepstack_visual_indexes are added to the hidden
        # states of the first language layers at the image positions (real [5, 11, 17] of 24)
        "model_type": "qwen3_vl", "depth": 3, "hidden_size": 32, "intermediate_size": 64, "out_hidden_size": 64,
        "hidden_act": "gelu_pytorch_tanh", "num_heads": 2, "in_channels": 3, "patch_size": 16,
        "spatial_merge_size": 2, "temporal_patch_size": 2, "num_position_embeddings": 64,
        "deepstack_visual_indexes": [0, 1],
    },
}

_GEMMA3 = {
    "model_type": "gemma3", "architectures": ["Gemma3ForConditionalGeneration"], "mm_tokens_per_image": 4,
    "text_config": {
        # 5 sliding-window layers to 1 global in the real models (sliding_window 1024); here 1 to 1
        "model_type": "gemma3_text", "hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "query_pre_attn_scalar": 16,
        "rms_norm_eps": 1e-6, "vocab_size": 1024, "sliding_window": 64, "sliding_window_pattern": 2,
        "rope_global_base_freq": 1000000.0, "rope_local_base_freq": 10000.0, "rope_theta": 1000000.0,
        "rope_scaling": {"factor": 8.0, "rope_type": "linear"}, "max_position_embeddings": 131072,
        "hidden_activation": "gelu_pytorch_tanh", "final_logit_softcapping": None,
        "mm_tokens_per_image": 4,  # mlx-vlm reads it here (the real files have it at the top level)
    },
    "vision_config": {
        # SigLIP: image_size / patch_size patches per side, average-pooled to mm_tokens_per_image soft tokens
        # (real 896 / 14 = 64 per side pooled to 256)
        "model_type": "siglip_vision_model", "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2,
        "num_hidden_layers": 2, "patch_size": 14, "image_size": 56, "num_channels": 3, "layer_norm_eps": 1e-6,
        "vision_use_head": False,
    },
}

_SMOLVLM = {
    "model_type": "idefics3", "architectures": ["Idefics3ForConditionalGeneration"], "scale_factor": 4,
    "tie_word_embeddings": False,
    "text_config": {
        "model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "rms_norm_eps": 1e-5,
        "rope_theta": 100000.0, "vocab_size": 1024, "max_position_embeddings": 8192, "tie_word_embeddings": False,
        "hidden_act": "silu",
    },
    "vision_config": {
        # SigLIP on tiles of image_size; pixel shuffle by scale_factor: (128 / 16)^2 / 4^2 = 4 tokens a tile
        # (real 512 / 16 and 4: 64)
        "model_type": "idefics3", "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2,
        "num_hidden_layers": 2, "patch_size": 16, "image_size": 128, "num_channels": 3, "layer_norm_eps": 1e-6,
        "max_image_size": {"longest_edge": 128},
    },
}

_QWEN_TOKENIZER = {"add_bos_token": False, "errors": "replace", "split_special_tokens": False,
                   "model_max_length": 32768}

_SMOLVLM_ADDED: tuple[tuple[str, bool], ...] = (
    (("<global-img>", True),)
    + tuple((f"<row_{r}_col_{c}>", True) for r in range(1, 7) for c in range(1, 7))
    + (("<fake_token_around_image>", True), ("<image>", True), ("<end_of_utterance>", True))
)

FAMILIES = [
    Family(
        "qwen2_vl", "vision", _QWEN2_VL, template=QWEN2_VL_TEMPLATE, added_tokens=QWEN2_VL_ADDED_TOKENS,
        eos_token="<|im_end|>", eos_tokens=("<|im_end|>", "<|endoftext|>"), bos_token=None,
        pad_token="<|endoftext|>", tool_format="json_tools", cache="kv", source="Qwen/Qwen2-VL-2B-Instruct",
        extra_tokenizer_config={**_QWEN_TOKENIZER, "processor_class": "Qwen2VLProcessor"},
    ),
    Family(
        "qwen2_5_vl", "vision", _QWEN2_5_VL, template=QWEN2_VL_TEMPLATE, added_tokens=QWEN2_VL_ADDED_TOKENS,
        eos_token="<|im_end|>", eos_tokens=("<|im_end|>", "<|endoftext|>"), pad_token="<|endoftext|>",
        tool_format="json_tools", cache="kv", source="Qwen/Qwen2.5-VL-3B-Instruct",
        extra_tokenizer_config={**_QWEN_TOKENIZER, "processor_class": "Qwen2_5_VLProcessor"},
    ),
    Family(
        "qwen3_vl", "vision", _QWEN3_VL, template=QWEN3_VL_TEMPLATE, added_tokens=QWEN_ADDED_TOKENS,
        eos_token="<|im_end|>", eos_tokens=("<|im_end|>", "<|endoftext|>"), pad_token="<|endoftext|>",
        tool_format="json_tools", cache="kv", source="Qwen/Qwen3-VL-2B-Instruct",
        extra_tokenizer_config={**_QWEN_TOKENIZER, "model_max_length": 262144, "processor_class": "Qwen3VLProcessor"},
    ),
    Family(
        "qwen3_vl_thinking", "vision", _QWEN3_VL, template=QWEN3_VL_THINKING_TEMPLATE, added_tokens=QWEN_ADDED_TOKENS,
        eos_token="<|im_end|>", eos_tokens=("<|im_end|>", "<|endoftext|>"), pad_token="<|endoftext|>",
        tool_format="json_tools", reasoning="think-in-prompt", cache="kv", source="Qwen/Qwen3-VL-2B-Thinking",
        extra_tokenizer_config={**_QWEN_TOKENIZER, "model_max_length": 262144, "processor_class": "Qwen3VLProcessor"},
    ),
    Family(
        "gemma3", "vision", _GEMMA3, template=GEMMA3_TEMPLATE,
        # ids 0..4 and 105, 106 in the real vocabulary; <start_of_image> 255999, <end_of_image> 256000 and
        # <image_soft_token> 262144 (the first id after the 262144-entry SentencePiece vocabulary)
        special_tokens=("<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>"),
        added_tokens=(("<start_of_image>", True), ("<end_of_image>", True), ("<image_soft_token>", True)),
        eos_token="<eos>", eos_tokens=("<eos>", "<end_of_turn>"), end_of_turn="<end_of_turn>", bos_token="<bos>",
        pad_token="<pad>", add_bos=True, cache="rotating", source="google/gemma-3-4b-it",
        extra_tokenizer_config={
            "unk_token": "<unk>", "add_eos_token": False, "spaces_between_special_tokens": False,
            "processor_class": "Gemma3Processor", "model_max_length": 1000000000000000019884624838656,
            "extra_special_tokens": {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
                                     "image_token": "<image_soft_token>"},
        },
    ),
    Family(
        "smolvlm", "vision", _SMOLVLM, template=SMOLVLM_TEMPLATE,
        # SmolLM2's 17 special tokens first (<|endoftext|> 0, <|im_start|> 1, <|im_end|> 2, ...), then the
        # image tokens after the 49152-entry BPE vocabulary: <global-img> 49152, <row_1_col_1>..<row_6_col_6>,
        # <fake_token_around_image> 49189, <image> 49190, <end_of_utterance> 49279
        special_tokens=("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<repo_name>", "<reponame>", "<file_sep>",
                        "<filename>", "<gh_stars>", "<issue_start>", "<issue_comment>", "<issue_closed>",
                        "<jupyter_start>", "<jupyter_text>", "<jupyter_code>", "<jupyter_output>",
                        "<jupyter_script>", "<empty_output>"),
        added_tokens=_SMOLVLM_ADDED, eos_token="<end_of_utterance>", eos_tokens=("<end_of_utterance>",),
        bos_token="<|im_start|>", pad_token="<|im_end|>", cache="kv", source="HuggingFaceTB/SmolVLM-256M-Instruct",
        extra_tokenizer_config={
            "unk_token": "<|endoftext|>", "processor_class": "Idefics3Processor", "model_max_length": 8192,
            "additional_special_tokens": ["<fake_token_around_image>", "<image>", "<end_of_utterance>"],
        },
    ),
]
