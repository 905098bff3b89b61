"""What a model family is, for the zoo: its config, its tokenizer layout and its chat template, with where
each fact comes from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Family", "TEXT_MACRO"]

#: A Jinja macro the zoo's templates share: ``text(content)``, a message's text from a string or a list of parts.
TEXT_MACRO = (
    "{%- macro text(content) -%}"
    "{%- if content is string -%}{{- content -}}"
    "{%- elif content -%}{%- for part in content -%}{%- if part.type == 'text' -%}{{- part.text -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- endmacro -%}"
)


@dataclass(frozen=True)
class Family:
    """One family of real models, reproduced at a tiny size.

    Attributes:
        name: the zoo's name (``"qwen3"``, ``"llama"``, ...).
        kind: ``"text"`` (loaded by mlx-lm) or ``"vision"`` (mlx-vlm).
        config: ``config.json`` at the tiny size, without token ids (the builder fills them in).
        added_tokens: ``(content, special)`` pairs at the end of the vocabulary, in the real files' order and
            with their real ``special`` flags (Qwen's ``<tool_call>`` is an added token with ``special: false``).
        special_tokens: tokens at the start of the vocabulary (Llama 2 / Mistral's ``<unk>``, ``<s>``, ``</s>``).
        eos_token / bos_token / pad_token: ``tokenizer_config.json``'s.
        eos_tokens: the ids ``generation_config.json`` stops on, by content (first = ``config.json``'s).
        add_bos: whether the tokenizer itself prepends ``bos_token`` (else the template writes it, or none).
        template: the chat template, written for the zoo from the family's documented behaviour.
        tool_format: the tool-call format the backends infer from the template (``None``: no tools).
        reasoning: ``"think"`` (``<think>`` written by the model), ``"think-in-prompt"`` (the generation prompt
            opens it), ``"harmony"`` (gpt-oss channels) or ``None``.
        cache: ``"kv"`` (trimmable), ``"rotating"`` (sliding window) or ``"hybrid"`` (recurrent layers).
        source: the public files the facts come from.
        extra_tokenizer_config: more ``tokenizer_config.json`` keys.
        end_of_turn: the token a reply ends with (a scripted model's last), where it is not ``eos_token``.
    """

    name: str
    kind: str
    config: dict[str, Any]
    template: str
    eos_token: str
    eos_tokens: tuple[str, ...]
    added_tokens: tuple[tuple[str, bool], ...] = ()
    special_tokens: tuple[str, ...] = ()
    bos_token: str | None = None
    pad_token: str | None = None
    add_bos: bool = False
    tool_format: str | None = None
    reasoning: str | None = None
    cache: str = "kv"
    source: str = ""
    extra_tokenizer_config: dict[str, Any] = field(default_factory=dict)
    end_of_turn: str | None = None  # the token a reply ends with, where it is not eos_token (Gemma's)

    @property
    def model_type(self) -> str:
        return self.config["model_type"]
