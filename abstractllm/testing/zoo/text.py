"""Build a text family's model folder (mlx-lm), random or scripted."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from ..tokenizer import write_tokenizer
from ..weights import randomize_weights
from .family import Family
from .script import plan_pieces, script_weights

__all__ = ["build_text_family", "write_family_tokenizer", "generation_prompt_ends", "script_tokenizer"]


def write_family_tokenizer(family: Family, path: Path, vocab_size: int, seed: int, reserve: int = 0) -> dict[str, int]:
    """The family's tokenizer files in ``path``: its layout of special and added tokens, BOS rule and
    template. Returns the ids of its special and added tokens."""
    ids = write_tokenizer(
        path, vocab_size, special_tokens=family.special_tokens, added_tokens=family.added_tokens,
        eos_token=family.eos_token, pad_token=family.pad_token, bos_token=family.bos_token,
        chat_template=family.template, seed=seed, reserve=reserve,
        extra_config={"add_bos_token": family.add_bos, **family.extra_tokenizer_config},
    )
    if family.add_bos:  # the tokenizer itself prepends BOS (Llama 3, Mistral): a post-processor does it
        data = json.loads((path / "tokenizer.json").read_text(encoding="utf-8"))
        bos, bos_id = family.bos_token, ids[family.bos_token]
        data["post_processor"] = {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}},
        }
        (path / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return ids


def _token_ids(family: Family, ids: dict[str, int]) -> dict[str, Any]:
    eos = [ids[t] for t in family.eos_tokens]
    out: dict[str, Any] = {"eos_token_id": eos[0] if len(eos) == 1 else eos}
    if family.bos_token:
        out["bos_token_id"] = ids[family.bos_token]
    if family.pad_token:
        out["pad_token_id"] = ids[family.pad_token]
    return out


def generation_prompt_ends(path: Path) -> list[int]:
    """The last token of the family's generation prompt, for each way it is rendered (with and without a
    system prompt and tools, thinking on and off)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    tool = {"type": "function", "function": {"name": "f", "description": "d",
                                             "parameters": {"type": "object", "properties": {}}}}
    ends = set()
    for messages in ([{"role": "user", "content": "Hi"}],
                     [{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}]):
        for kw in ({}, {"tools": [tool]}, {"enable_thinking": False}, {"enable_thinking": True}):
            try:
                ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, **kw)
            except Exception:  # a template that refuses a combination (e.g. no system role)
                continue
            ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
            ends.add(int(ids[-1]))
    return sorted(ends)


def build_text_family(family: Family, path: Path, *, seed: int = 0, script: str | None = None) -> Path:
    from ...providers.mlx.backend import enable_fast_blas

    enable_fast_blas()  # before the first import of mlx.core, as the provider does
    import mlx.core as mx
    from mlx_lm.utils import _get_classes, save_config, save_model

    path.mkdir(parents=True, exist_ok=True)
    config = copy.deepcopy(family.config)
    text = config.get("text_config", config)
    if script is not None:
        text["tie_word_embeddings"] = False
    reserve = len(script) + 4 if script else 0
    ids = write_family_tokenizer(family, path, text["vocab_size"], seed, reserve)
    config.update(_token_ids(family, ids), torch_dtype="float32")
    model_class, args_class = _get_classes(config)
    model = model_class(args_class.from_dict(config))
    randomize_weights(model, seed, 1.0)
    if script is not None:
        chain, starts = script_tokenizer(family, path, script, ids)
        script_weights(model, starts, chain)
    save_model(path, model, donate_model=True)
    save_config(config, path / "config.json")
    (path / "generation_config.json").write_text(json.dumps(
        {**_token_ids(family, ids), "do_sample": False}, indent=2), encoding="utf-8")
    if script is not None:
        _check_script(path, script)
    del mx
    return path


def script_tokenizer(family: Family, path: Path, script: str, ids: dict[str, int], raw: bool = True
                     ) -> tuple[list[int], list[int]]:
    """Give the reserved vocabulary slots the pieces of ``script``; return the reply's chain of ids (ending
    with end-of-turn) and the generation prompt's last tokens. ``raw``: see ``script.plan_pieces``."""
    data = json.loads((path / "tokenizer.json").read_text(encoding="utf-8"))
    vocab: dict[str, int] = data["model"]["vocab"]
    reserved = sorted(i for t, i in vocab.items() if t.startswith("<|reserved_"))
    starts = generation_prompt_ends(path)
    eos = ids[family.end_of_turn or family.eos_token]
    markers = [*family.special_tokens, *(t for t, _ in family.added_tokens)]
    added = {t: ids[t] for t in markers if ids[t] != eos}
    from tokenizers import Tokenizer

    own = Tokenizer.from_str(json.dumps(data, ensure_ascii=False))
    chain, assigned = plan_pieces(script, {t: i for t, i in vocab.items() if i not in reserved}, added, reserved,
                                  avoid=[*starts, eos], encode=lambda text: own.encode(text, add_special_tokens=False).ids,
                                  raw=raw)
    by_id = {i: t for t, i in vocab.items()}
    for token, piece in assigned.items():
        del vocab[by_id[token]]
        vocab[piece] = token
    (path / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return chain + [eos], starts


def _check_script(path: Path, script: str) -> None:
    """Greedy mlx-lm on the built folder must write ``script`` and stop."""
    import mlx.core as mx
    from mlx_lm import load, stream_generate

    model, tokenizer = load(str(path))
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Hello"}], add_generation_prompt=True)
    tokens = [r.token for r in stream_generate(model, tokenizer, prompt, max_tokens=len(script) + 8)]
    got = tokenizer.decode([t for t in tokens if t not in tokenizer.eos_token_ids])
    mx.clear_cache()
    if got != script or tokens[-1] not in tokenizer.eos_token_ids:
        raise ValueError(f"the scripted model writes {got!r}, not {script!r}: this family cannot be scripted "
                         "by the construction in abstractllm.testing.zoo.script")
