"""The file format of the disk prompt cache (``prefix_disk``): mlx-lm's ``save_prompt_cache`` layout plus
abstractllm's metadata, written and read on the writer thread without MLX operations (``device_state`` on
the MLX thread evaluates the arrays; ``host_state`` there only reads their buffers).

A file is safetensors: the flattened cache states (``tree_flatten([c.state for c in cache])``), and as
metadata the class names (``1.<i>``), mlx-lm's scalar table (``2.<i>``) and, under ``0.`` (mlx-lm's user
metadata), ``format`` (``FORMAT_VERSION``), ``model_key``, ``tokens`` (a JSON list), ``cache_type``,
``created`` and ``checksum``: sha256 of the metadata without it, of the tensor index and of the tensor data.
bfloat16 arrays travel as their uint16 bits (numpy has no bfloat16). ``mlx_lm.models.cache.load_prompt_cache``
reads these files too.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

__all__ = ["FORMAT_VERSION", "Unusable", "EntryInfo", "entry_name", "compact_state", "device_state", "host_state",
           "encode", "split_header", "entry_info", "read_head", "verify", "decode_arrays", "rebuild"]

#: the on-disk format; files of an older version are deleted, of a newer one ignored
FORMAT_VERSION = 1

_MAX_HEADER = 1 << 28
_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "uint16", "F64": "float64", "I8": "int8", "U8": "uint8",
           "I16": "int16", "U16": "uint16", "I32": "int32", "U32": "uint32", "I64": "int64", "U64": "uint64",
           "BOOL": "bool"}
_TAGS = {v: k for k, v in _DTYPES.items() if k != "BF16"}


class Unusable(Exception):
    """A file that must not be served: ``delete`` says whether it is ours to delete (corrupt, old format)."""

    def __init__(self, reason: str, delete: bool = True) -> None:
        super().__init__(reason)
        self.delete = delete


@dataclass(frozen=True)
class EntryInfo:
    """What a file's metadata says, as the store's index keeps it."""

    model_key: str | None  # None: a file of a newer format (ignored)
    tokens: tuple[int, ...] | None  # kept for this store's model only
    cache_type: str = ""


def entry_name(model_key: str, tokens: list[int] | tuple[int, ...]) -> str:
    """The file name of the entry of ``tokens`` under ``model_key``."""
    text = json.dumps([model_key, list(tokens)], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest() + ".safetensors"


# --- host copies (caller's thread) -----------------------------------------------------------------------

def compact_state(c: Any) -> Any:
    """``c.state`` without the unused tail of a preallocated KV buffer (KVCache grows in steps of 256)."""
    from mlx_lm.models import cache as mc

    kind = type(c)
    if kind is mc.CacheList:
        return [(compact_state(sub), type(sub).__name__) for sub in c.caches]
    keys = getattr(c, "keys", None)
    known = kind in (mc.KVCache, mc.RotatingKVCache) or issubclass(kind, mc.QuantizedKVCache)  # kv_quant's too
    if keys is None or not known:
        return c.state
    first = keys[0] if isinstance(keys, (tuple, list)) else keys
    n = c.offset
    if n >= first.shape[2] or (kind is mc.RotatingKVCache and c._idx != n):
        return c.state
    cut = (lambda a: tuple(x[..., :n, :] for x in a)) if isinstance(keys, (tuple, list)) else (
        lambda a: a[..., :n, :])
    return (cut(c.keys), cut(c.values)) + tuple(c.state[2:])


def device_state(cache: list) -> tuple[list[str], list[tuple[str, Any]]]:
    """(class names, [(key, value)]) of ``cache``'s compact state, for ``host_state`` on another thread. Run on
    the MLX thread: the arrays are evaluated here (views of the cache's own buffers: nothing is copied; bfloat16
    as its uint16 bits), so reading them later needs no MLX stream, and a later update of the cache does not
    change them. ``TypeError`` for a value that cannot be saved."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    flat: list[tuple[str, Any]] = []
    for key, value in tree_flatten([compact_state(c) for c in cache]):
        if isinstance(value, mx.array):
            name = str(value.dtype).rsplit(".", 1)[-1]
            if name != "bfloat16" and name not in _TAGS:
                raise TypeError(f"cache arrays of dtype {name} cannot be saved")
            # a view is a new array over the same buffer: an in-place update of the cache later (``a[i] = x``
            # rewrites that array object) leaves it, and the buffer it shares is then copied, not overwritten
            value = value.view(mx.uint16 if name == "bfloat16" else value.dtype)
            flat.append((key, ("BF16" if name == "bfloat16" else _TAGS[name], value)))
        elif value is None or isinstance(value, (bool, int, float, str)):
            flat.append((key, value))
        else:
            raise TypeError(f"cache state of type {type(value).__name__} cannot be saved")
    mx.eval([v[1] for _, v in flat if isinstance(v, tuple)])
    return [type(c).__name__ for c in cache], flat


def _to_host(array: Any, tag: str) -> Any:
    """A contiguous numpy copy of an evaluated MLX array, through its buffer (any thread; numpy's copy loop
    releases the GIL, so a long copy does not stall the MLX thread's Python code)."""
    import numpy as np

    if not array.size:
        return np.zeros(array.shape, dtype=_DTYPES[tag])
    src = np.asarray(memoryview(array))
    out = np.empty(src.shape, dtype=src.dtype)
    np.copyto(out, src)
    return out


def host_state(device: tuple[list[str], list[tuple[str, Any]]]) -> tuple[list[str], dict[str, tuple[str, Any]], list]:
    """(class names, {key: (safetensors dtype, numpy array)}, mlx-lm's scalar table) from ``device_state``'s
    result, copied to host memory. Runs on the writer thread."""
    import numpy as np

    classes, flat = device
    arrays: dict[str, tuple[str, Any]] = {}
    scalars: list = [""]  # mlx-lm: must be non-empty
    for key, value in flat:
        if isinstance(value, tuple):
            arrays[key] = (value[0], _to_host(value[1], value[0]))
            continue
        if isinstance(value, (bool, int, float)):
            scalars.append((key, "scalar"))
            host = np.array(value, dtype=bool if isinstance(value, bool) else
                            ("int32" if isinstance(value, int) else "float32"))
        elif isinstance(value, str):
            scalars.append((key, "string"))
            host = np.array([ord(ch) for ch in value], dtype="int32")
        else:
            scalars.append((key, "none"))
            host = np.zeros((0,), dtype="float32")
        arrays[key] = (_TAGS[str(host.dtype)], host)
    return classes, arrays, scalars


# --- the file format ----------------------------------------------------------------------------------------

def _digest(meta: dict[str, str], index: dict[str, Any], buffers: Iterator[Any]) -> str:
    h = hashlib.sha256(json.dumps([{k: v for k, v in meta.items() if k != "0.checksum"}, index],
                                  sort_keys=True, separators=(",", ":")).encode())
    for buf in buffers:
        h.update(buf)
    return h.hexdigest()


def encode(model_key: str, tokens: list[int], cache_type: str, host: tuple) -> tuple[bytes, list, int]:
    """(the 8-byte length + header, the data buffers, the file size) of one entry (writer thread)."""
    classes, arrays, scalars = host
    meta = {"0.format": str(FORMAT_VERSION), "0.model_key": model_key, "0.cache_type": cache_type,
            "0.tokens": json.dumps(tokens, separators=(",", ":")), "0.created": f"{time.time():.3f}"}
    meta.update({f"1.{i}": name for i, name in enumerate(classes)})
    meta["2.0"] = ""
    for i, (key, kind) in enumerate(scalars[1:], start=1):
        meta[f"2.{i}.0"], meta[f"2.{i}.1"] = key, kind
    index, offset, buffers = {}, 0, []
    for key, (tag, arr) in arrays.items():
        index[key] = {"dtype": tag, "shape": list(arr.shape), "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
        if arr.nbytes:
            buffers.append(memoryview(arr).cast("B"))
    meta["0.checksum"] = _digest(meta, index, iter(buffers))
    header = json.dumps({"__metadata__": meta, **index}, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    head = struct.pack("<Q", len(header)) + header
    return head, buffers, len(head) + offset


def split_header(head: bytes) -> tuple[dict[str, str], dict[str, Any]]:
    try:
        header = json.loads(head)
        meta = header.pop("__metadata__")
    except (ValueError, KeyError, AttributeError) as exc:
        raise Unusable(f"unreadable header ({exc})") from None
    if not isinstance(meta, dict):
        raise Unusable("unreadable header")
    return meta, header


def entry_info(name: str, meta: dict[str, str], model_key: str | None) -> EntryInfo:
    """Check the metadata of file ``name``: raises ``Unusable`` for a corrupt or old file."""
    try:
        version = int(meta.get("0.format", "0"))
        key, tokens = meta["0.model_key"], json.loads(meta["0.tokens"])
    except (KeyError, ValueError, TypeError):
        raise Unusable("not an abstractllm prompt-cache file (no model key, tokens or format)") from None
    if version < FORMAT_VERSION:
        raise Unusable(f"older format version {version} (now {FORMAT_VERSION})")
    if version > FORMAT_VERSION:
        return EntryInfo(None, None)
    if not isinstance(tokens, list) or not all(type(t) is int for t in tokens) or entry_name(key, tokens) != name:
        raise Unusable("its contents do not match its name")
    mine = model_key is None or key == model_key
    return EntryInfo(key, tuple(tokens) if mine else None, str(meta.get("0.cache_type", "")))


def read_head(path: Path) -> tuple[bytes, int]:
    """(the header's JSON bytes, the file size): opens the file once."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        raw = f.read(8)
        if len(raw) < 8:
            raise Unusable("truncated (no header)")
        (n,) = struct.unpack("<Q", raw)
        if n > min(_MAX_HEADER, size - 8):
            raise Unusable("truncated header")
        return f.read(n), size


def decode_arrays(data: bytes, offset: int, index: dict[str, Any]) -> dict[str, Any]:
    """The tensors of a verified file as MLX arrays (worker thread)."""
    import mlx.core as mx
    import numpy as np

    out = {}
    for key, t in index.items():
        dtype = np.dtype(_DTYPES[t["dtype"]])
        start, end = t["data_offsets"]
        arr = np.frombuffer(data, dtype=dtype, count=(end - start) // dtype.itemsize, offset=offset + start)
        arr = mx.array(arr.reshape(t["shape"]))
        out[key] = arr.view(mx.bfloat16) if t["dtype"] == "BF16" else arr
    return out


def verify(data: bytes, name: str, model_key: str) -> tuple[dict[str, str], dict[str, Any], int]:
    """(metadata, tensor index, data offset) of a whole file's bytes, or ``Unusable``."""
    if len(data) < 8:
        raise Unusable("truncated (no header)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise Unusable("truncated header")
    meta, index = split_header(data[8:8 + n])
    info = entry_info(name, meta, model_key)
    if info.model_key is None:
        raise Unusable("written by a newer version", delete=False)
    if info.tokens is None:
        raise Unusable(f"belongs to another model ({info.model_key})", delete=False)
    try:
        spans = sorted((t["data_offsets"][0], t["data_offsets"][1], t["dtype"]) for t in index.values())
        ok = all(a == (spans[i - 1][1] if i else 0) and b >= a and d in _DTYPES for i, (a, b, d) in enumerate(spans))
    except (TypeError, KeyError, IndexError):
        ok = False
    size = spans[-1][1] if ok and spans else 0
    if not ok or 8 + n + size != len(data):
        raise Unusable("truncated or malformed data")
    view = memoryview(data)
    buffers = (view[8 + n + t["data_offsets"][0]:8 + n + t["data_offsets"][1]] for t in index.values())
    if _digest(meta, index, buffers) != meta.get("0.checksum"):
        raise Unusable("checksum mismatch")
    return meta, index, 8 + n


def rebuild(meta: dict[str, str], arrays: dict[str, Any]) -> list:
    """mlx-lm's ``load_prompt_cache`` on arrays already read: the cache objects."""
    from mlx.utils import tree_unflatten
    from mlx_lm.models import cache as mc

    _, classes, scalars = tree_unflatten(list(meta.items()))
    for pos, kind in scalars[1:]:
        value = arrays[pos]
        arrays[pos] = {"scalar": lambda: value.item(), "none": lambda: None,
                       "string": lambda: "".join(chr(i) for i in value.tolist())}[kind]()
    states = tree_unflatten(list(arrays.items())) if arrays else []
    states = list(states) + [[]] * (len(classes) - len(states))  # a layer without state has no arrays
    out = []
    for name, state in zip(classes, states):
        cls = getattr(mc, name, None)
        if not (isinstance(cls, type) and issubclass(cls, mc._BaseCache)):
            raise Unusable(f"unknown cache class {name!r}")
        out.append(cls.from_state(state))
    return out
