"""What of a model's generated text reaches ``content``: its control tokens never do, and the text is what the
tokenizer's own ``decode`` gives for the generated ids.

- Control tokens: added tokens flagged ``special`` (``<|im_start|>``, ``<|eot_id|>``, ``<start_of_turn>``, ...)
  are template structure, not text; HF's ``decode(skip_special_tokens=True)`` drops them and so do we, except
  the markup a parser of this model reads (its tool-call or reasoning markers, which the parsers take out).
- mlx-lm's ``BPEStreamingDetokenizer`` drops the first reply token's leading space (an SPM habit); for a
  byte-level BPE tokenizer ``decode`` keeps it, and a reply sent back in the history must re-tokenize to what
  was generated, so the space is kept.
"""

from __future__ import annotations

from typing import Any, Iterable

__all__ = ["hidden_tokens", "reply_detokenizer"]


def hidden_tokens(hf_tokenizer: Any, keep: Iterable[str | None] = ()) -> dict[int, str]:
    """``{id: text}`` of the tokenizer's special added tokens, less the markup in ``keep``."""
    kept = {k for k in keep if k}
    decoder = getattr(hf_tokenizer, "added_tokens_decoder", None) or {}
    return {int(i): t.content for i, t in decoder.items()
            if getattr(t, "special", False) and t.content not in kept}


def _keep_space(text: str) -> str:
    return text


def reply_detokenizer(tokenizer: Any) -> Any:
    """A fresh streaming detokenizer of an mlx-lm ``TokenizerWrapper`` whose text equals ``decode(ids)``."""
    from mlx_lm.tokenizer_utils import BPEStreamingDetokenizer

    detokenizer = tokenizer.detokenizer
    if isinstance(detokenizer, BPEStreamingDetokenizer):
        detokenizer._maybe_trim_space = _keep_space  # mlx-lm 0.32: trims the first token's leading space
    return detokenizer
