"""The prefix cache of a text model: KV caches of earlier prompts, reused by any later request of the same
model whose prompt starts with the same tokens (another turn, another conversation over the same system
prompt, a concurrent request).

Two tiers behind one lookup (``PrefixCache.fetch``):

- **RAM**: mlx-lm's ``LRUPromptCache`` (a token trie with LRU eviction by entries and bytes; a trimmable
  cache serves any shorter prefix of a stored one, deep-copied and trimmed), bounded by
  ``prompt_cache_bytes``.
- **Disk** (``prompt_cache_dir``, optional): ``prefix_disk.DiskPrefixStore``, written in the background,
  checked before use, surviving restarts. A disk entry longer than the RAM hit is loaded (and kept in RAM).

Entries are keyed by ``model_key``: everything that changes the KV (the model folder and its weights
revision, the dtype applied, the quantization, the KV-cache settings), so a different model, revision or
KV layout can never hit; inside one key, by the token ids themselves (a different chat template or system
prompt gives other ids and misses).

What gets stored (``TextAdapter``): each finished request's cache (prompt + reply) and snapshots taken
during prefill at message boundaries (``message_bounds``: the end of the system prompt, the end of the
history before the last message, the end of the conversation before the generation prompt; a model whose
layers are all plain attention keeps only the system prompt's: its whole-reply entries serve every shorter prefix). Recurrent
(Mamba, Gated DeltaNet) and sliding-window caches cannot be cut back to a shorter prefix; the snapshots
give them exact-prefix hits at those boundaries, so a follow-up turn or another conversation over the same
system prompt reuses what was computed. A lookup never covers the whole prompt: the last token is always
computed again, for its logits.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Sequence

__all__ = ["PrefixCache", "model_key", "message_bounds", "trimmable_layout", "FORMAT_VERSION"]

_DISK_TRIES = 4  # damaged disk entries skipped in one lookup before giving up on the disk tier for it
FORMAT_VERSION = 1  # of the key and of the disk entries; bump when either changes meaning

_WEIGHT_SUFFIXES = (".safetensors", ".json", ".model", ".tiktoken", ".jinja", ".txt", ".npz", ".gguf")


def _revision(folder: Path) -> list[tuple[str, int, int]]:
    """The weights revision of a model folder: name, size and modification time of its files (a Hugging Face
    snapshot folder also names the commit; a local folder changes this when any file is rewritten)."""
    try:
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES))
    except OSError:
        return []
    out = []
    for p in files:
        try:
            st = p.stat()
        except OSError:  # removed meanwhile
            continue
        out.append((p.name, int(st.st_size), int(st.st_mtime_ns)))
    return out


def _library_versions() -> dict[str, str | None]:
    """The versions of the libraries that compute the KV (an upgrade may change it: older entries then miss)."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in ("mlx", "mlx-lm", "mlx-vlm"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def model_key(folder: str | Path, settings: dict[str, Any]) -> str:
    """The key of every cache entry of one loaded model: a digest of its resolved folder, its weights revision
    and ``settings`` (dtype applied, quantization, KV-cache settings: whatever changes the KV)."""
    path = Path(folder).expanduser().resolve()
    blob = json.dumps({"format": FORMAT_VERSION, "path": str(path), "revision": _revision(path),
                       "settings": settings, "libraries": _library_versions()}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def trimmable_layout(model: Any) -> bool:
    """Whether every layer of ``model``'s cache is plain attention (mlx-lm's ``KVCache``), which can always be
    cut back to a shorter prefix; recurrent layers and sliding windows cannot (once a window has wrapped)."""
    from mlx_lm.models.cache import KVCache, make_prompt_cache

    try:
        return all(type(c) is KVCache for c in make_prompt_cache(model))
    except Exception:  # a model whose cache mlx-lm cannot make: no assumption
        return False


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def message_bounds(render: Callable[[list[Any], bool], list[int]], messages: list[Any], prompt: list[int],
                   system_roles: Callable[[Any], bool], *, system_only: bool = False) -> list[int]:
    """Positions in ``prompt`` where a snapshot of the KV cache is worth keeping: the end of the system prompt
    (rendered with an empty user turn after it, as mlx-lm's server does), the end of the history before the
    last message and the end of the whole conversation before the generation prompt.

    ``render(messages, add_generation_prompt)`` templates a part of the conversation (as the prompt was);
    each bound is the common token prefix of that rendering and ``prompt``, so it is exact whatever the
    template does; a template that refuses a partial conversation gives no bound there. Sorted, unique,
    each within ``(0, len(prompt))``. ``system_only``: the end of the system prompt alone (none without one)."""
    parts: list[tuple[list[Any], bool]] = []
    n_system = 0
    for m in messages:
        if not system_roles(m):
            break
        n_system += 1
    if 0 < n_system < len(messages):
        parts.append((list(messages[:n_system]) + [None], False))  # None: an empty user turn
    if not system_only:
        if len(messages) > 1:
            parts.append((list(messages[:-1]), False))
        parts.append((list(messages), False))
    bounds = set()
    for msgs, gen in parts:
        try:
            ids = render(msgs, gen)
        except Exception:  # a template may refuse a conversation that does not end with a user turn
            continue
        n = _common_prefix(ids, prompt)
        if 0 < n < len(prompt):
            bounds.add(n)
    return sorted(bounds)


class PrefixCache:
    """The RAM tier (and optional disk tier) of one loaded model's prefix cache, with its counters."""

    def __init__(self, key: str, max_bytes: int, *, max_entries: int, disk: Any = None) -> None:
        from mlx_lm.models.cache import LRUPromptCache

        self.key = key
        self.disk = disk
        self._ram = LRUPromptCache(max_size=max_entries, max_bytes=max_bytes) if max_bytes > 0 else None
        self.lookups = self.hits = self.reused_tokens = self.prefill_tokens = 0

    # ------------------------------------------------------------------ RAM-tier view (LRUPromptCache's)
    def __len__(self) -> int:
        return len(self._ram) if self._ram is not None else 0

    @property
    def in_ram(self) -> bool:
        """Whether entries are kept in RAM (a request may wait for another's snapshot only then)."""
        return self._ram is not None

    @property
    def nbytes(self) -> int:
        return int(self._ram.nbytes) if self._ram is not None else 0

    def trim_to(self, *, n_sequences: int | None = None, n_bytes: int | None = None) -> None:
        if self._ram is not None:
            self._ram.trim_to(n_sequences=n_sequences, n_bytes=n_bytes)

    def clear(self) -> None:
        """Empty the RAM tier (the disk tier is emptied with ``abstractllm cache clear``)."""
        self.trim_to(n_sequences=0)

    # ------------------------------------------------------------------ lookup and store
    def fetch(self, tokens: Sequence[int], variant: str = "") -> tuple[list[Any] | None, int]:
        """The cache of the longest stored prefix of ``tokens`` (a private copy, trimmed where needed) and the
        number of tokens it covers; ``(None, 0)`` on a miss. Never all of ``tokens``: at least the last one
        is left to compute. ``variant``: another KV layout of the same model (with ``kv_bits``, the
        full-precision caches of requests below ``quantized_kv_start``); only ``""`` has a disk tier."""
        tokens = list(tokens)
        self.lookups += 1
        if len(tokens) < 2:
            return None, 0
        probe = tokens[:-1]
        cache, n = None, 0
        if self._ram is not None:
            cache, n = self._fetch_ram(tokens, self.key + variant)
        if self.disk is not None and not variant:
            cache, n = self._fetch_disk(probe, cache, n)
        if cache is None or n <= 0:
            return None, 0
        self.hits += 1
        self.reused_tokens += n
        return cache, n

    def _fetch_ram(self, tokens: list[int], key: str) -> tuple[list[Any] | None, int]:
        from mlx_lm.models.cache import can_trim_prompt_cache, trim_prompt_cache

        found, rest = self._ram.fetch_nearest_cache(key, tokens)
        if found is not None and not rest:  # all of it: the last token is computed again, for its logits
            if can_trim_prompt_cache(found):
                trim_prompt_cache(found, 1)
                return found, len(tokens) - 1
            found, rest = self._ram.fetch_nearest_cache(key, tokens[:-1])  # a shorter snapshot
            rest = [*rest, tokens[-1]]
        return (found, len(tokens) - len(rest)) if found is not None else (None, 0)

    def _fetch_disk(self, probe: list[int], cache: list[Any] | None, n: int) -> tuple[list[Any] | None, int]:
        """The longest disk entry longer than the RAM hit, loaded (and kept in RAM), else the RAM hit. A damaged
        entry is skipped (the store warned and deleted it) and the next longest is tried."""
        for _ in range(_DISK_TRIES):
            found = self.disk.lookup(probe)
            if found is None or found[0] <= n:
                break
            loaded = self.disk.load(found[1])
            if loaded is None:
                continue
            if self._ram is not None:
                self._ram.insert_cache(self.key, list(probe[:found[0]]), loaded, cache_type="system")
                loaded = copy.deepcopy(loaded)
            return loaded, int(found[0])
        return cache, n

    def store(self, tokens: Sequence[int], cache: list[Any], cache_type: str = "assistant",
              variant: str = "") -> None:
        """Keep ``cache`` (which holds exactly ``tokens``) in RAM and, with a disk tier, on disk (written in
        the background). ``cache_type``: ``system`` / ``user`` snapshots outlive ``assistant`` entries."""
        tokens = list(tokens)
        if not tokens or not cache:
            return
        if self.disk is not None and not variant:
            self.disk.save(tokens, cache, cache_type)
        if self._ram is not None:
            self._ram.insert_cache(self.key + variant, tokens, cache, cache_type=cache_type)

    def close(self) -> None:
        """Finish the pending disk writes (at unload)."""
        if self.disk is not None:
            self.disk.close()

    def stats(self) -> dict[str, Any]:
        """``entries``, ``bytes``, ``lookups``, ``hits``, ``reused_tokens``, ``prefill_tokens`` and, with a
        disk tier, its counters under ``disk``."""
        out: dict[str, Any] = {"entries": len(self), "bytes": self.nbytes, "lookups": self.lookups,
                               "hits": self.hits, "reused_tokens": self.reused_tokens,
                               "prefill_tokens": self.prefill_tokens}
        if self.disk is not None:
            out["disk"] = dict(self.disk.stats)
        return out
