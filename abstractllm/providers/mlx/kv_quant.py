"""KV-cache quantization under continuous batching (``kv_bits``, ``kv_group_size``, ``quantized_kv_start``).

mlx-lm quantizes the KV cache only in single-stream generation (``QuantizedKVCache``); its ``BatchGenerator``
batches caches that have a ``merge``. This module adds the batched form:

- ``BatchQuantizedKVCache``: mlx-lm's ``BatchKVCache`` (left padding, offsets, masks, prepare/finalize,
  filter, extend, extract, merge, trim) with keys and values stored as ``mx.quantize`` triples. It has
  ``bits`` and ``group_size``, so the models' attention (``mlx_lm.models.base.scaled_dot_product_attention``)
  takes the quantized path.
- ``MergeableQuantizedKVCache``: one request's quantized cache (a ``QuantizedKVCache`` with ``merge``,
  ``size``): what ``extract`` returns, what ``BatchGenerator.insert(caches=...)`` takes; trimmable, and
  ``save_prompt_cache`` / ``load_prompt_cache`` round-trip it (``load_prompt_cache`` here).

Semantics (exact and simple):

- *Quantize on write.* A quantized request's keys and values are quantized when they are written, from its
  first token, and attention always reads the quantized values, also for the tokens of the chunk being
  prefilled. Its tokens are then a function of its own tokens only: the same alone or batched, whatever the
  prefill chunking, and from a quantized prefix-cache entry or cold. (mlx-lm's single-stream
  ``generate_step(kv_bits=...)`` differs: it computes its first prefill chunk at full precision and quantizes
  the cache after it, so its tokens depend on ``prefill_step_size``. With ``prompt_cache=`` set to
  ``QuantizedKVCache`` layers it behaves as here.)
- *quantized_kv_start.* Decided once per request at admission (``use_quantized_kv``): a request whose prompt
  has at least ``quantized_kv_start`` tokens (all of them, reused prefix included: the decision never depends
  on a cache hit) is quantized for its whole life; a shorter one stays full precision for its whole life.
  mlx-lm's comparison is the same (``offset >= quantized_kv_start``); 0 quantizes every request.
- *One kind per batch.* A layer's batch cache is either full precision or quantized (one attention path per
  call): ``merge`` and ``extend`` refuse a mix with ``ValueError``. The scheduler keeps quantized and
  full-precision requests in different batches (or makes one wait), as it does for other cache kinds;
  ``is_quantized_cache`` tells which kind a request's cache list is.
- *Which layers.* Only plain ``KVCache`` layers are quantized (also inside a ``CacheList``). Recurrent state
  (``ArraysCache``: Mamba, Gated DeltaNet) and sliding-window ``RotatingKVCache`` layers are kept as they are;
  with ``max_kv_size`` every layer is rotating and nothing is quantized.
- *Prefix cache.* Quantized and full-precision caches differ in content, so entries are keyed by the KV
  settings and the mode; ``quantize_cache`` converts a full-precision cache (the values the full-precision
  prefill computed, quantized, as mlx-lm does at its switch point). That is *not* what a quantized prefill of
  the same tokens gives (its deeper layers attended over quantized values): do not serve a converted cache
  where tokens must equal a cold quantized request's.
"""

from __future__ import annotations

from typing import Any, List, Sequence

import mlx.core as mx
from mlx_lm.models import cache as _mc
from mlx_lm.models.cache import BatchKVCache, CacheList, KVCache, QuantizedKVCache, dynamic_roll

from ...exceptions import InvalidParameterError, UnsupportedFeatureError

__all__ = ["BatchQuantizedKVCache", "MergeableQuantizedKVCache", "KV_BITS_CHOICES", "KV_GROUP_SIZES",
           "check_kv_quantization", "probe_kv_quantization", "make_quantized_cache", "quantize_cache",
           "is_quantized_cache", "use_quantized_kv", "load_prompt_cache"]

#: the KV bit widths offered (mlx can do 2-8; these are the ones worth having)
KV_BITS_CHOICES = (4, 8)
#: the group sizes ``mx.quantize`` supports; the head dimension must be a multiple of it
KV_GROUP_SIZES = (32, 64, 128)


def check_kv_quantization(bits: int, group_size: int, quantized_kv_start: int = 0) -> None:
    """Raise ``InvalidParameterError`` unless ``bits`` is 4 or 8, ``group_size`` 32, 64 or 128 and
    ``quantized_kv_start`` a non-negative int."""
    if isinstance(bits, bool) or bits not in KV_BITS_CHOICES:
        raise InvalidParameterError(f"kv_bits must be one of {KV_BITS_CHOICES}, got {bits!r}",
                                    param="kv_bits", value=bits)
    if isinstance(group_size, bool) or group_size not in KV_GROUP_SIZES:
        raise InvalidParameterError(f"kv_group_size must be one of {KV_GROUP_SIZES}, got {group_size!r}",
                                    param="kv_group_size", value=group_size)
    if isinstance(quantized_kv_start, bool) or not isinstance(quantized_kv_start, int) or quantized_kv_start < 0:
        raise InvalidParameterError(f"quantized_kv_start must be an int >= 0, got {quantized_kv_start!r}",
                                    param="quantized_kv_start", value=quantized_kv_start)


def use_quantized_kv(prompt_tokens: int, kv_bits: int | None, quantized_kv_start: int) -> bool:
    """Whether a request with ``prompt_tokens`` prompt tokens (all of them, reused prefix included) gets a
    quantized cache: ``kv_bits`` set and ``prompt_tokens >= quantized_kv_start``. Decided once, at admission."""
    return kv_bits is not None and prompt_tokens >= quantized_kv_start


def _quantize(x: mx.array, group_size: int, bits: int) -> tuple:
    return tuple(mx.quantize(x, group_size=group_size, bits=bits))


def _same_format(caches: Sequence[Any]) -> tuple[int, int]:
    """(group_size, bits) shared by every quantized cache in ``caches``; ``ValueError`` on a mix with a
    non-empty full-precision cache or with another format."""
    formats = set()
    for c in caches:
        if isinstance(c, (QuantizedKVCache, BatchQuantizedKVCache)):
            formats.add((c.group_size, c.bits))
        elif not (isinstance(c, (KVCache, BatchKVCache)) and c.empty()):
            raise ValueError(f"cannot batch a {type(c).__name__} with quantized KV caches: one batch holds one "
                             "cache kind (convert it with quantize_cache, or batch it apart)")
    if len(formats) != 1:
        raise ValueError(f"cannot batch quantized KV caches of different formats (group_size, bits): {formats}")
    return formats.pop()


class MergeableQuantizedKVCache(QuantizedKVCache):
    """One request's quantized KV cache (mlx-lm's ``QuantizedKVCache``) that ``BatchGenerator`` can batch:
    ``merge`` gives a ``BatchQuantizedKVCache``. Trimmable; ``state`` as ``QuantizedKVCache``'s."""

    def size(self) -> int:
        return self.offset

    @property
    def state(self):
        return self.keys, self.values, self.offset, self.group_size, self.bits

    @state.setter
    def state(self, v):
        keys, values, self.offset, self.group_size, self.bits = v
        self.keys = None if keys is None else tuple(keys)  # a loaded file gives lists
        self.values = None if values is None else tuple(values)

    @classmethod
    def merge(cls, caches):
        return BatchQuantizedKVCache.merge(caches)

    @property
    def nbytes(self) -> int:
        return 0 if self.keys is None else sum(x.nbytes for x in (*self.keys, *self.values))


class BatchQuantizedKVCache(BatchKVCache):
    """mlx-lm's ``BatchKVCache`` storing keys and values quantized (``mx.quantize`` triples: packed, scales,
    biases). Left padding, offsets, masks and trimming are ``BatchKVCache``'s."""

    def __init__(self, left_padding: List[int], *, group_size: int, bits: int):
        super().__init__(left_padding)
        self.group_size = group_size
        self.bits = bits

    def _grow(self, qk: tuple, qv: tuple, prev: int, n: int) -> None:
        steps = (self.step + n - 1) // self.step * self.step

        def fresh(x):
            return mx.zeros((*x.shape[:2], steps, x.shape[3]), x.dtype)

        new_k, new_v = tuple(map(fresh, qk)), tuple(map(fresh, qv))
        if self.keys is None:
            self.keys, self.values = new_k, new_v
            return
        old = (*self.keys, *self.values)
        if prev % self.step != 0:
            old = tuple(x[..., :prev, :] for x in old)
        grown = tuple(mx.concatenate([a, b], axis=2) for a, b in zip(old, (*new_k, *new_v)))
        self.keys, self.values = grown[: len(qk)], grown[len(qk):]

    def update_and_fetch(self, keys, values):
        prev, n = self._idx, keys.shape[2]
        qk = _quantize(keys, self.group_size, self.bits)
        qv = _quantize(values, self.group_size, self.bits)
        if self.keys is None or prev + n > self.keys[0].shape[2]:
            self._grow(qk, qv, prev, n)
        self.offset = self.offset + n
        self._idx += n
        for dst, src in zip((*self.keys, *self.values), (*qk, *qv)):
            dst[..., prev: self._idx, :] = src
        return self.keys_and_values()

    def keys_and_values(self):
        return tuple(x[..., : self._idx, :] for x in self.keys), tuple(x[..., : self._idx, :] for x in self.values)

    def finalize(self):
        if self._right_padding is not None:
            shift = self._right_padding[:, None]
            self.keys = tuple(dynamic_roll(x, shift, axis=2) for x in self.keys)
            self.values = tuple(dynamic_roll(x, shift, axis=2) for x in self.values)
            self.offset = self.offset - self._right_padding
            self.left_padding += self._right_padding
            self._right_padding = None

    @property
    def state(self):
        return self.keys, self.values, self.offset, self.left_padding, self._idx, self.group_size, self.bits

    @state.setter
    def state(self, v):
        keys, values, self.offset, self.left_padding, self._idx, self.group_size, self.bits = v
        self.keys = None if keys is None else tuple(keys)
        self.values = None if values is None else tuple(values)
        self._right_padding = None

    def filter(self, batch_indices):
        """In-place: keep the sequences at ``batch_indices``, then drop the padding columns all of them share."""
        if self.keys is not None:
            self.keys = tuple(x[batch_indices] for x in self.keys)
            self.values = tuple(x[batch_indices] for x in self.values)
        self.offset = self.offset[batch_indices]
        self.left_padding = self.left_padding[batch_indices]
        shared = min(self.left_padding.tolist())
        if shared > 0:
            if self.keys is not None:
                self.keys = tuple(x[..., shared:, :] for x in self.keys)
                self.values = tuple(x[..., shared:, :] for x in self.values)
            self._idx -= shared
            self.left_padding -= shared

    def _padded(self, c: "BatchQuantizedKVCache", ref: tuple, max_idx: int, max_size: int):
        """``c``'s arrays right-justified at ``max_idx`` and ``max_size`` long, its offsets and left padding."""
        parts = (*c.keys, *c.values) if c.keys is not None else tuple(
            mx.zeros((c.offset.shape[0], x.shape[1], 0, x.shape[3]), x.dtype) for x in ref)
        left = max_idx - c._idx
        right = max_size - parts[0].shape[2] - left
        if right < 0:
            parts, right = tuple(x[..., :right, :] for x in parts), 0
        if left or right:
            parts = tuple(mx.pad(x, [(0, 0), (0, 0), (left, right), (0, 0)]) for x in parts)
        return parts, c.offset, c.left_padding + left

    def extend(self, other):
        """In-place: append the sequences of ``other`` (a ``BatchQuantizedKVCache`` of the same format)."""
        if not isinstance(other, BatchQuantizedKVCache):
            raise ValueError(f"cannot extend a quantized batch cache with a {type(other).__name__}: one batch "
                             "holds one cache kind")
        _same_format([self, other])
        if self.keys is None and other.keys is None:
            self.left_padding = mx.concatenate([self.left_padding, other.left_padding])
            self.offset = mx.concatenate([self.offset, other.offset])
            return
        ref = (*self.keys, *self.values) if self.keys is not None else (*other.keys, *other.values)
        max_idx = max(self._idx, other._idx)
        max_size = max(c.keys[0].shape[2] for c in (self, other) if c.keys is not None)
        (pa, oa, la), (pb, ob, lb) = (self._padded(c, ref, max_idx, max_size) for c in (self, other))
        parts = tuple(mx.concatenate([a, b]) for a, b in zip(pa, pb))
        half = len(parts) // 2
        self.keys, self.values = parts[:half], parts[half:]
        self.offset, self.left_padding = mx.concatenate([oa, ob]), mx.concatenate([la, lb])
        self._idx = max_idx

    def extract(self, idx: int) -> MergeableQuantizedKVCache:
        """Sequence ``idx`` alone, without its padding, as a ``MergeableQuantizedKVCache``."""
        cache = MergeableQuantizedKVCache(group_size=self.group_size, bits=self.bits)
        if self.keys is None:
            return cache
        padding = int(self.left_padding[idx].item())
        cache.keys = tuple(mx.contiguous(x[idx: idx + 1, :, padding: self._idx]) for x in self.keys)
        cache.values = tuple(mx.contiguous(x[idx: idx + 1, :, padding: self._idx]) for x in self.values)
        cache.offset = self._idx - padding
        return cache

    @classmethod
    def merge(cls, caches):
        """One batch cache from per-request quantized caches (empty full-precision ``KVCache`` layers are
        accepted as empty), left-padded to the longest."""
        group_size, bits = _same_format(caches)
        lengths = [c.offset if c.keys is not None else 0 for c in caches]
        max_len = max(lengths)
        padding = [max_len - n for n in lengths]
        cache = cls(padding, group_size=group_size, bits=bits)
        if max_len == 0:
            return cache
        ref = next(c for c, n in zip(caches, lengths) if n)
        ref_parts = (*ref.keys, *ref.values)
        out = [mx.zeros((len(caches), x.shape[1], max_len, x.shape[3]), x.dtype) for x in ref_parts]
        for i, (c, n, p) in enumerate(zip(caches, lengths, padding)):
            if n:
                for dst, src in zip(out, (*c.keys, *c.values)):
                    dst[i: i + 1, :, p: p + n] = src[..., :n, :]
        half = len(out) // 2
        cache.keys, cache.values = tuple(out[:half]), tuple(out[half:])
        cache.offset += max_len
        cache._idx = max_len
        return cache

    @property
    def nbytes(self) -> int:
        return 0 if self.keys is None else sum(x.nbytes for x in (*self.keys, *self.values))


def _convert(c: Any, bits: int, group_size: int) -> Any:
    """One layer's cache in quantized form (plain ``KVCache`` only; others unchanged)."""
    if type(c) is KVCache:
        q = MergeableQuantizedKVCache(group_size=group_size, bits=bits)
        if c.keys is not None and c.offset > 0:
            q.keys = _quantize(c.keys[..., : c.offset, :], group_size, bits)
            q.values = _quantize(c.values[..., : c.offset, :], group_size, bits)
            q.offset = c.offset
        return q
    if isinstance(c, QuantizedKVCache):
        if (c.group_size, c.bits) != (group_size, bits):
            raise ValueError(f"this cache is quantized with group_size={c.group_size}, bits={c.bits}, not "
                             f"group_size={group_size}, bits={bits}")
        return c if isinstance(c, MergeableQuantizedKVCache) else MergeableQuantizedKVCache.from_state(c.state)
    if type(c) is CacheList:
        return CacheList(*(_convert(x, bits, group_size) for x in c.caches))
    return c


def make_quantized_cache(model: Any, bits: int, group_size: int, max_kv_size: int | None = None) -> list:
    """A new request's cache list for ``BatchGenerator.insert(caches=[...])``: mlx-lm's
    ``make_prompt_cache(model, max_kv_size)`` with every plain ``KVCache`` layer (also inside a ``CacheList``)
    replaced by an empty ``MergeableQuantizedKVCache``; other layers (recurrent, rotating) unchanged."""
    check_kv_quantization(bits, group_size)
    return [_convert(c, bits, group_size) for c in _mc.make_prompt_cache(model, max_kv_size)]


def quantize_cache(cache: Sequence[Any], bits: int, group_size: int) -> list:
    """``cache`` (one request's layers) in quantized form: each plain ``KVCache``'s ``offset`` tokens quantized
    (mlx-lm's ``to_quantized``); a ``QuantizedKVCache`` of the same format made mergeable; other layers kept
    (the same objects, not copies). ``cache`` itself is not modified. See the module docstring for when the
    result differs from a quantized prefill of the same tokens."""
    check_kv_quantization(bits, group_size)
    return [_convert(c, bits, group_size) for c in cache]


def _layers(cache: Sequence[Any]):
    for c in cache:
        if type(c) is CacheList:
            yield from _layers(c.caches)
        else:
            yield c


def is_quantized_cache(cache: Sequence[Any]) -> bool:
    """Whether a request's (or a batch's) cache list holds quantized KV layers."""
    return any(isinstance(c, (QuantizedKVCache, BatchQuantizedKVCache)) for c in _layers(cache))


def probe_kv_quantization(model: Any, bits: int, group_size: int) -> None:
    """Check once, at load, that ``model`` runs with a quantized KV cache: one token through the model.
    ``InvalidParameterError`` when the head dimension is not a multiple of ``group_size``;
    ``UnsupportedFeatureError`` when the model's attention cannot read a quantized cache (attention sinks:
    gpt-oss) or anything else fails. Run it on the model's thread."""
    cache = make_quantized_cache(model, bits, group_size)
    if not is_quantized_cache(cache):
        return  # no plain KV layer: nothing will be quantized
    try:
        mx.eval(model(mx.array([[0]]), cache=cache))
    except ValueError as exc:
        if "group size" in str(exc):
            raise InvalidParameterError(f"kv_group_size={group_size} does not divide this model's attention "
                                        f"head dimension; choose another of {KV_GROUP_SIZES}",
                                        param="kv_group_size", value=group_size) from exc
        raise UnsupportedFeatureError(f"this model cannot use a quantized KV cache (kv_bits): {exc}") from exc
    except Exception as exc:  # noqa: BLE001  (any failure of the quantized path is the same refusal)
        raise UnsupportedFeatureError(f"this model cannot use a quantized KV cache (kv_bits): {exc}") from exc


_CLASSES = (MergeableQuantizedKVCache, BatchQuantizedKVCache)


def _register() -> None:
    """mlx-lm resolves saved cache classes by name in ``mlx_lm.models.cache`` (``load_prompt_cache``,
    ``CacheList``'s state): make ours resolvable there, never shadowing a class of mlx-lm's own."""
    for cls in _CLASSES:
        if not hasattr(_mc, cls.__name__):
            setattr(_mc, cls.__name__, cls)


_register()


def load_prompt_cache(file_name: str, return_metadata: bool = False):
    """mlx-lm's ``load_prompt_cache`` that knows this module's classes; a plain ``QuantizedKVCache`` in the file
    (e.g. saved by mlx-lm itself) comes back mergeable."""
    _register()
    loaded = _mc.load_prompt_cache(file_name, return_metadata=return_metadata)
    cache, metadata = loaded if return_metadata else (loaded, None)
    cache = [_upgrade(c) for c in cache]
    return (cache, metadata) if return_metadata else cache


def _upgrade(c: Any) -> Any:
    if isinstance(c, QuantizedKVCache) and not isinstance(c, MergeableQuantizedKVCache):
        return MergeableQuantizedKVCache.from_state(c.state)
    if type(c) is CacheList:
        return CacheList(*(_upgrade(x) for x in c.caches))
    return c
