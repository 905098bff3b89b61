"""Scripted models: weights that make greedy decoding write a chosen reply after any prompt.

The construction: every layer's output projections are zero, so the last hidden state is a function of the
current token alone (its embedding, normed); the head is untied, and its row for the token that must follow
``t`` is the unit vector of ``t``'s hidden state (scaled). Greedy decoding is then a bigram machine that
follows the chain from the generation prompt's last token through the reply's tokens to end-of-turn. The
reply's tokens must be distinct: the reply is cut into pieces that each occur once, using the family's added
tokens for its markup (``<tool_call>``, ``<think>``, ...) the first time they appear, existing vocabulary
entries where they are free, and reserved vocabulary slots for the rest.
"""

from __future__ import annotations

from typing import Any, Iterable

__all__ = ["plan_pieces", "OUTPUT_PROJECTIONS", "script_weights"]

#: parameter-name parts of the projections that write into the residual stream, in mlx-lm's models
OUTPUT_PROJECTIONS = frozenset({"o_proj", "down_proj", "out_proj", "c_proj", "wo", "w2", "dense_4h_to_h"})
#: the logit of the scripted token: far above every other (those are 0 or a cosine below it)
_SCALE = 50.0


def _byte_level(text: str) -> str:
    from tokenizers.pre_tokenizers import ByteLevel  # noqa: F401  (only to ensure tokenizers is there)

    table = _bytes_to_unicode()
    return "".join(table[b] for b in text.encode("utf-8"))


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-to-unicode table (what byte-level BPE vocabularies are written in)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def plan_pieces(reply: str, vocab: dict[str, int], added: dict[str, int], reserved: list[int],
                avoid: Iterable[int], encode: Any = None, raw: bool = True) -> tuple[list[int], dict[int, str]]:
    """Cut ``reply`` into pieces whose token ids are all distinct and not in ``avoid``.

    ``vocab`` maps byte-level BPE strings to ids, ``added`` added-token contents to ids, ``reserved`` lists ids
    free to take a new string. Each added token's first occurrence is that token. The text between them is the
    tokenizer's own tokens (``encode(text)``, so the reply re-tokenizes to what the model generates) where those
    are distinct and free; else it is cut into words (a newline run, or a word with its leading spaces), a word
    already used being joined to the next one (or, at the end of a run, to the previous one); ``raw``: a run
    whose every cut is taken may be spelled raw (not for mlx-vlm, whose detokenizer reads byte-level strings
    only). Returns the ids in order and the new strings given to reserved ids.
    """
    avoid = set(avoid)
    by_id = {i: t for t, i in vocab.items()}
    seen = {by_id[i] for i in avoid if i in by_id}  # byte-level strings that must not be used
    ids: list[int] = []
    free = list(reserved)
    assigned: dict[int, str] = {}
    for run, is_marker in _runs(reply, {m: i for m, i in added.items() if i not in avoid}):
        if is_marker:
            ids.append(added[run])
            continue
        own = list(encode(run)) if encode is not None else []
        strings = [by_id.get(i) for i in own]
        if own and None not in strings and len(set(own)) == len(own) and not (set(strings) & seen):
            seen.update(strings)
            ids.extend(own)
            continue
        for piece in _unique_words(run, seen, raw):
            token = vocab.get(piece)
            if token is None:
                if not free:
                    raise ValueError("the scripted reply needs more reserved tokens than the vocabulary has")
                token = free.pop(0)
                assigned[token] = piece
            ids.append(token)
    return ids, assigned


def _runs(reply: str, markers: dict[str, int]) -> list[tuple[str, bool]]:
    """``reply`` as runs of text and markers (each marker's first occurrence; later ones stay text)."""
    out: list[tuple[str, bool]] = []
    unused = sorted(markers, key=len, reverse=True)
    text, i = "", 0
    while i < len(reply):
        marker = next((m for m in unused if reply.startswith(m, i)), None)
        if marker is None:
            text += reply[i]
            i += 1
            continue
        if text:
            out.append((text, False))
        out.append((marker, True))
        unused.remove(marker)
        text, i = "", i + len(marker)
    if text:
        out.append((text, False))
    return out


def _unique_words(run: str, seen: set[str], raw: bool = True) -> list[str]:
    """``run`` cut into words (byte-level strings) none of which is in ``seen`` or repeated; adds them to it."""
    import re

    words = re.findall(r"\n+|[^\S\n]*\S+|[^\S\n]+", run)
    out: list[tuple[str, str]] = []  # (text, spelling)
    i = 0
    while i < len(words):
        text = words[i]
        i += 1
        piece = _fresh(text, seen, raw=False)
        while piece is None and i < len(words):  # taken: join the next word
            text += words[i]
            i += 1
            piece = _fresh(text, seen, raw=False)
        while piece is None and out:  # the end of the run: join the previous word
            previous, spelling = out.pop()
            seen.discard(spelling)
            text = previous + text
            piece = _fresh(text, seen, raw=False)
        if piece is None:  # the whole run is taken: its raw spelling
            piece = _fresh(text, seen, raw=raw)
        if piece is None:
            raise ValueError(f"cannot cut the scripted reply into distinct tokens at {run!r:.40}")
        seen.add(piece)
        out.append((text, piece))
    return [spelling for _, spelling in out]


def _fresh(text: str, seen: set[str], raw: bool = True) -> str | None:
    """A spelling of ``text`` not in ``seen``: its byte-level string, else (``raw``, ASCII text with whitespace)
    the text itself: byte-level decoders (HF's and mlx-lm's) pass a token that is not byte-level through as its
    UTF-8 bytes, so a repeated ``"\\n\\n"`` gets a second token (llguidance reads such a token differently:
    the last resort)."""
    for spelling in (_byte_level(text), text if raw and text.isascii() else None):
        if spelling is not None and spelling not in seen:
            return spelling
    return None


def script_weights(model: Any, starts: list[int], chain: list[int]) -> None:
    """Make ``model`` (an mlx-lm text model with an untied head) write ``chain`` greedily after any of the
    ``starts`` tokens: zero its output projections, then set its head's rows (see the module docstring)."""
    import mlx.core as mx
    from mlx.utils import tree_flatten, tree_unflatten

    zeroed = [(k, mx.zeros_like(v)) for k, v in tree_flatten(model.parameters())
              if OUTPUT_PROJECTIONS & set(k.split("."))]
    if not zeroed:
        raise ValueError("this architecture has no output projections the script construction knows")
    model.update(tree_unflatten(zeroed))
    owner = _head_owner(model)
    head = owner.lm_head
    hidden = _hidden_states(model, owner, sorted(set(starts) | set(chain[:-1])))
    weight = mx.zeros_like(head.weight)
    rows: dict[int, Any] = {}
    edges = [(s, chain[0]) for s in starts] + list(zip(chain[:-1], chain[1:]))
    for src, dst in edges:
        h = hidden[src]
        rows[dst] = rows.get(dst, 0) + h / mx.linalg.norm(h) * _SCALE
    index = mx.array(list(rows))
    weight[index] = mx.stack(list(rows.values())).astype(weight.dtype)
    head.weight = weight
    mx.eval(model.parameters())


def _head_owner(model: Any) -> Any:
    for _, module in model.named_modules():
        if "lm_head" in module and hasattr(module["lm_head"], "weight"):
            return module
    raise ValueError("a scripted model needs an untied lm_head; this family's model ties it to the embedding")


def _hidden_states(model: Any, owner: Any, tokens: list[int]) -> dict[int, Any]:
    """The input of the head for each of ``tokens`` alone (it does not depend on the context once the
    output projections are zero)."""
    import mlx.core as mx
    import mlx.nn as nn

    seen: list[Any] = []

    class _Record(nn.Module):
        def __init__(self, head: Any) -> None:
            super().__init__()
            self.inner = head

        def __call__(self, x: Any) -> Any:
            seen.append(x)
            return self.inner(x)

    head = owner.lm_head
    owner.lm_head = _Record(head)
    try:
        model(mx.array(tokens)[:, None])
    finally:
        owner.lm_head = head
    states = seen[-1][:, -1, :].astype(mx.float32)
    return {t: states[i] for i, t in enumerate(tokens)}
