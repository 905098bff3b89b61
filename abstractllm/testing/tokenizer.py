"""Train a byte-level BPE tokenizer offline and write it as a Hugging Face tokenizer folder."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Sequence

from .corpus import CORPUS

__all__ = ["CHATML_TEMPLATE", "write_tokenizer", "CHATML_SPECIAL_TOKENS", "LLAMA3_TEMPLATE",
           "LLAMA3_SPECIAL_TOKENS", "qwen_template"]

CHATML_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

#: The tools part of a Qwen / Hermes chat template: the tools listed in the system turn, assistant tool calls
#: as ``<tool_call>{"name", "arguments"}</tool_call>`` and tool results as ``<tool_response>`` user turns
#: (mlx-lm and mlx-vlm recognise the format as ``json_tools``). ``PARTS`` renders a message's content.
_QWEN_TOOLS_HEADER = (
    "{%- if tools %}"
    "{{- '<|im_start|>system\\n' }}"
    "{%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] + '\\n\\n' }}{%- endif %}"
    "{{- '# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided "
    "with function signatures within <tools></tools> XML tags:\\n<tools>' }}"
    "{%- for tool in tools %}{{- '\\n' }}{{- tool | tojson }}{%- endfor %}"
    "{{- '\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\\n<tool_call>\\n{\"name\": <function-name>, \"arguments\": "
    "<args-json-object>}\\n</tool_call><|im_end|>\\n' }}"
    "{%- endif %}"
)
_QWEN_TOOL_CALLS = (
    "{%- if message['tool_calls'] %}{%- for tool_call in message['tool_calls'] %}"
    "{%- if tool_call['function'] is defined %}{%- set tool_call = tool_call['function'] %}{%- endif %}"
    "{{- '\\n<tool_call>\\n{\"name\": \"' + tool_call.name + '\", \"arguments\": ' }}"
    "{%- if tool_call.arguments is string %}{{- tool_call.arguments }}{%- else %}{{- tool_call.arguments | tojson }}"
    "{%- endif %}{{- '}\\n</tool_call>' }}"
    "{%- endfor %}{%- endif %}"
)


def qwen_template(parts: str) -> str:
    """A ChatML (Qwen) template with tools, rendering each message's content with ``parts``."""
    return (
        _QWEN_TOOLS_HEADER
        + "{%- for message in messages %}"
        "{%- if message['role'] == 'system' and tools and loop.first %}"
        "{%- elif message['role'] == 'tool' %}"
        "{{- '<|im_start|>user\\n<tool_response>\\n' }}"
        "{%- if message['content'] is string %}{{- message['content'] }}{%- endif %}"
        "{{- '\\n</tool_response><|im_end|>\\n' }}"
        "{%- else %}"
        "{{- '<|im_start|>' + message['role'] + '\\n' }}"
        + parts
        + _QWEN_TOOL_CALLS
        + "{{- '<|im_end|>\\n' }}"
        "{%- endif %}"
        "{%- endfor %}"
        "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
    )


#: A ChatML template (the Qwen family's) with tools; content as a string or as a list of text parts.
CHATML_TEMPLATE = qwen_template(
    "{%- if message['content'] is string %}{{- message['content'] }}"
    "{%- elif message['content'] %}{%- for part in message['content'] %}"
    "{%- if part['type'] == 'text' %}{{- part['text'] }}{%- endif %}"
    "{%- endfor %}{%- endif %}"
)

LLAMA3_SPECIAL_TOKENS = ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                         "<|eot_id|>", "<|python_tag|>")

#: A Llama 3.1 style template: custom tools listed in the first user turn, calls answered as plain JSON
#: ``{"name": ..., "parameters": ...}`` (a format mlx-lm has no parser for), results as ``ipython`` turns.
LLAMA3_TEMPLATE = (
    "{{- bos_token }}"
    "{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content'] %}"
    "{%- set messages = messages[1:] %}{%- else %}{%- set system_message = '' %}{%- endif %}"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' + system_message + '<|eot_id|>' }}"
    "{%- for message in messages %}"
    "{%- if message['content'] is string %}{%- set content = message['content'] %}"
    "{%- elif message['content'] %}{%- set content = message['content'] | map(attribute='text') | join('') %}"
    "{%- else %}{%- set content = '' %}{%- endif %}"
    "{%- if tools and loop.first and message['role'] == 'user' %}"
    "{{- '<|start_header_id|>user<|end_header_id|>\\n\\nGiven the following functions, please respond with a JSON "
    "for a function call with its proper arguments that best answers the given prompt.\\n\\nRespond in the format "
    "{\"name\": function name, \"parameters\": dictionary of argument name and its value}. Do not use variables.\\n\\n' }}"
    "{%- for tool in tools %}{{- tool | tojson }}{{- '\\n\\n' }}{%- endfor %}"
    "{{- content + '<|eot_id|>' }}"
    "{%- elif message['role'] == 'assistant' and message['tool_calls'] %}"
    "{%- for tool_call in message['tool_calls'] %}"
    "{%- if tool_call['function'] is defined %}{%- set tool_call = tool_call['function'] %}{%- endif %}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n{\"name\": \"' + tool_call.name + '\", \"parameters\": ' }}"
    "{%- if tool_call.arguments is string %}{{- tool_call.arguments }}{%- else %}{{- tool_call.arguments | tojson }}"
    "{%- endif %}{{- '}<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- elif message['role'] == 'tool' or message['role'] == 'ipython' %}"
    "{{- '<|start_header_id|>ipython<|end_header_id|>\\n\\n' + content + '<|eot_id|>' }}"
    "{%- else %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + content + '<|eot_id|>' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)


def _extend_vocab(data: dict, target: int, seed: int) -> None:
    """Add deterministic synthetic merges until the BPE vocab (special tokens included) has ``target``
    entries, so a large preset gets its real vocabulary size without a large corpus."""
    vocab: dict[str, int] = data["model"]["vocab"]
    merges: list = data["model"]["merges"]
    n_added = len([t for t in data.get("added_tokens", []) if t["content"] not in vocab])
    rng = random.Random(seed)
    tokens = sorted(vocab, key=vocab.get)
    next_id = max(vocab.values()) + 1
    while len(vocab) + n_added < target:
        a, b = rng.choice(tokens), rng.choice(tokens)
        new = a + b
        if new in vocab or len(new) > 24:
            continue
        vocab[new] = next_id
        next_id += 1
        merges.append([a, b])
        tokens.append(new)


def write_tokenizer(
    path: str | Path,
    vocab_size: int,
    *,
    special_tokens: Sequence[str] = CHATML_SPECIAL_TOKENS,
    eos_token: str = "<|im_end|>",
    pad_token: str = "<|endoftext|>",
    bos_token: str | None = None,
    chat_template: str | None = CHATML_TEMPLATE,
    seed: int = 0,
    extra_config: dict | None = None,
    added_tokens: Sequence[tuple[str, bool]] = (),
    reserve: int = 0,
) -> dict[str, int]:
    """Train a byte-level BPE tokenizer of exactly ``vocab_size`` tokens on the built-in corpus and write
    ``tokenizer.json`` and ``tokenizer_config.json`` (with ``chat_template``) into ``path``.

    ``special_tokens`` get the first ids (trained with the BPE). ``added_tokens`` are ``(content, special)``
    pairs appended after the BPE vocabulary, at the end of the id space, each one token with its own
    ``special`` flag: the layout of real Qwen, Llama 3 or Mistral files, where markers such as
    ``<tool_call>`` or ``<think>`` are added tokens with ``"special": false``.

    ``reserve`` ids just before the added tokens hold placeholder entries that no merge reaches (``<|reserved_N|>``,
    text that never comes out of encoding): a scripted model (``abstractllm.testing.zoo``) gives them the
    pieces of its reply.

    Returns the ids of the special and added tokens.
    """
    from tokenizers import Tokenizer

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if vocab_size < 256 + len(special_tokens):
        raise ValueError(f"vocab_size must be at least {256 + len(special_tokens)} for a byte-level BPE")
    data = _train_bpe(vocab_size - len(added_tokens) - reserve, special_tokens, seed)
    vocab = data["model"]["vocab"]
    for n in range(reserve):
        vocab[f"<|reserved_{n}|>"] = max(vocab.values()) + 1
    if added_tokens:
        data = _add_tokens(data, added_tokens)
    (path / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    check = Tokenizer.from_file(str(path / "tokenizer.json"))
    if check.get_vocab_size() != vocab_size:
        raise RuntimeError(f"tokenizer has {check.get_vocab_size()} tokens, wanted {vocab_size}")
    ids = {t: check.token_to_id(t) for t in special_tokens}
    flags = {t: True for t in special_tokens}
    for content, special in added_tokens:
        ids[content] = check.token_to_id(content)
        flags[content] = special
    config = _tokenizer_config(ids, flags, eos_token=eos_token, pad_token=pad_token, bos_token=bos_token)
    if chat_template is not None:
        config["chat_template"] = chat_template
    config.update(extra_config or {})
    (path / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
    return ids


def _tokenizer_config(ids: dict[str, int], flags: dict[str, bool], *, eos_token: str, pad_token: str,
                      bos_token: str | None) -> dict:
    """``tokenizer_config.json`` (without its chat template): the special and added tokens (``ids``, each with its
    ``special`` flag in ``flags``) and the roles of some."""
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": 32768,
        "eos_token": eos_token,
        "pad_token": pad_token,
        "bos_token": bos_token,
        "unk_token": None,
        "clean_up_tokenization_spaces": False,
        "added_tokens_decoder": {
            str(i): {"content": t, "special": flags[t], "lstrip": False, "rstrip": False,
                     "normalized": False, "single_word": False}
            for t, i in ids.items()
        },
    }


def _train_bpe(size: int, special_tokens: Sequence[str], seed: int) -> dict:
    """A byte-level BPE of ``size`` tokens (``special_tokens`` first) trained on the built-in corpus, extended with
    synthetic merges past what the corpus gives: the ``tokenizer.json`` data."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=min(size, 8192),
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS.splitlines(), trainer=trainer)
    data = json.loads(tok.to_str())
    _extend_vocab(data, size, seed)
    return data


def _add_tokens(data: dict, added_tokens: Sequence[tuple[str, bool]]) -> dict:
    """``data`` with ``added_tokens`` (``(content, special)`` pairs) appended, one at a time: ids in the order
    given."""
    from tokenizers import AddedToken, Tokenizer

    tok = Tokenizer.from_str(json.dumps(data, ensure_ascii=False))
    for content, special in added_tokens:
        token = AddedToken(content, special=special, normalized=False)
        (tok.add_special_tokens if special else tok.add_tokens)([token])
    return json.loads(tok.to_str())
