"""Train a byte-level BPE tokenizer offline and write it as a Hugging Face tokenizer folder."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Sequence

from .corpus import CORPUS

__all__ = ["CHATML_TEMPLATE", "write_tokenizer", "CHATML_SPECIAL_TOKENS"]

CHATML_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

#: A ChatML template (the Qwen family's), content as a string or as a list of text parts.
CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string %}{{- message['content'] }}"
    "{%- else %}{%- for part in message['content'] %}"
    "{%- if part['type'] == 'text' %}{{- part['text'] }}{%- endif %}"
    "{%- endfor %}{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
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
    chat_template: str | None = CHATML_TEMPLATE,
    seed: int = 0,
    extra_config: dict | None = None,
) -> dict[str, int]:
    """Train a byte-level BPE tokenizer of exactly ``vocab_size`` tokens on the built-in corpus and write
    ``tokenizer.json`` and ``tokenizer_config.json`` (with ``chat_template``) into ``path``.

    Returns the ids of the special tokens.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if vocab_size < 256 + len(special_tokens):
        raise ValueError(f"vocab_size must be at least {256 + len(special_tokens)} for a byte-level BPE")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=min(vocab_size, 8192),
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS.splitlines(), trainer=trainer)
    data = json.loads(tok.to_str())
    _extend_vocab(data, vocab_size, seed)
    (path / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    check = Tokenizer.from_file(str(path / "tokenizer.json"))
    if check.get_vocab_size() != vocab_size:
        raise RuntimeError(f"tokenizer has {check.get_vocab_size()} tokens, wanted {vocab_size}")
    ids = {t: check.token_to_id(t) for t in special_tokens}
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": 32768,
        "eos_token": eos_token,
        "pad_token": pad_token,
        "bos_token": None,
        "unk_token": None,
        "clean_up_tokenization_spaces": False,
        "added_tokens_decoder": {
            str(i): {"content": t, "special": True, "lstrip": False, "rstrip": False,
                     "normalized": False, "single_word": False}
            for t, i in ids.items()
        },
    }
    if chat_template is not None:
        config["chat_template"] = chat_template
    config.update(extra_config or {})
    (path / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
    return ids
