"""The values a parameter may take: one validator per kind of value, each ``validator(name, value)`` returning
the normalized value or raising ``InvalidParameterError`` naming the parameter (``abstractllm.params`` pairs
each key with one of them). Also the byte counts of the configuration: ``parse_bytes`` ("8GB", "512MiB") and
``format_bytes``."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Callable

from .exceptions import InvalidParameterError, did_you_mean

__all__ = ["THINKING_LEVELS", "parse_bytes", "format_bytes"]


def _fail(name: str, message: str) -> InvalidParameterError:
    return InvalidParameterError(f"Invalid value for '{name}': {message}", param=name)


def _int(lo: int | None = None, hi: int | None = None, *, optional: bool = False) -> Callable[[str, Any], Any]:
    def check(name: str, value: Any) -> Any:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(name, f"expected an integer, got {type(value).__name__} {value!r}.")
        if lo is not None and value < lo:
            raise _fail(name, f"{value} is below the minimum {lo}.")
        if hi is not None and value > hi:
            raise _fail(name, f"{value} is above the maximum {hi}.")
        return value

    return check


def _float(lo: float, hi: float, *, lo_open: bool = False) -> Callable[[str, Any], Any]:
    def check(name: str, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(name, f"expected a number, got {type(value).__name__} {value!r}.")
        value = float(value)
        if math.isnan(value) or value > hi or value < lo or (lo_open and value == lo):
            bound = f"({lo}, {hi}]" if lo_open else f"[{lo}, {hi}]"
            raise _fail(name, f"{value} is outside {bound}.")
        return value

    return check


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(name, f"expected True or False, got {value!r}.")
    return value


def _str(name: str, value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise _fail(name, f"expected a non-empty string, got {value!r}.")
    return value


def _model(name: str, value: Any) -> str:
    if isinstance(value, Path):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise _fail(name, f"expected a local folder or a Hugging Face repo id, got {value!r}.")
    return value


def _stop(name: str, value: Any) -> list[str]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(s, str) for s in items):
        raise _fail(name, f"expected a string or a list of strings, got {value!r}.")
    if any(s == "" for s in items):
        raise _fail(name, "stop strings must not be empty.")
    if len(items) > 16:
        raise _fail(name, f"at most 16 stop strings, got {len(items)}.")
    return list(dict.fromkeys(items))


def _text(name: str, value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _fail(name, f"expected a string, got {type(value).__name__} {value!r:.80}.")
    return value


def _any(name: str, value: Any) -> Any:
    """A documented no-op key (accepted so that one config works on every provider)."""
    return value


def _url(name: str, value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, str) or not re.match(r"^https?://[^\s/]+", value):
        raise _fail(name, f"expected an http(s) URL such as 'http://localhost:8000/v1', got {value!r:.80}.")
    return value.rstrip("/")


def _seconds(name: str, value: Any) -> Any:
    if value is None:
        return None
    return _float(0.0, 86_400.0, lo_open=True)(name, value)


def _penalty(name: str, value: Any) -> Any:
    if value is None:
        return None
    return _float(-2.0, 2.0)(name, value)


def _logit_bias(name: str, value: Any) -> dict[int, float] | None:
    """``{token_id: bias}``; ids as ints or numeric strings (the OpenAI JSON form), biases in [-100, 100]."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _fail(name, f"expected a dict of token id -> bias, got {type(value).__name__}.")
    if len(value) > 1024:
        raise _fail(name, f"at most 1024 entries, got {len(value)}.")
    out: dict[int, float] = {}
    for key, bias in value.items():
        if isinstance(key, bool) or not (isinstance(key, int) or (isinstance(key, str) and key.strip().isdigit())):
            raise _fail(name, f"token ids must be non-negative integers (or numeric strings), got {key!r:.40}.")
        if isinstance(bias, bool) or not isinstance(bias, (int, float)) or math.isnan(bias) or not -100 <= bias <= 100:
            raise _fail(name, f"the bias of token {key} must be a number in [-100, 100], got {bias!r:.40}.")
        out[int(key)] = float(bias)
    return out


def _device(name: str, value: Any) -> str:
    names = {"auto": "auto", "cpu": "cpu", "gpu": "gpu", "metal": "gpu", "mps": "gpu", "cuda": "gpu"}
    if not isinstance(value, str) or value.lower() not in names:
        raise _fail(name, f"expected one of {', '.join(names)}; got {value!r}.{did_you_mean(str(value), names)}")
    return names[value.lower()]


def _image_detail(name: str, value: Any) -> Any:
    if value not in (None, "auto", "low", "high"):
        raise _fail(name, f"expected 'auto', 'low' or 'high', got {value!r}.")
    return value


def _path(name: str, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, Path):
        return str(value)
    if not isinstance(value, str) or not value.strip():
        raise _fail(name, f"expected a folder path, got {value!r}.")
    return value


def _writable_dir(name: str, value: Any) -> Any:
    """A folder path that is, or can be created as, a writable folder (checked now, so a bad one is refused when
    the provider is created: a server with it does not start). Nothing is created here."""
    import os

    value = _path(name, value)
    if value is None:
        return None
    path = Path(value).expanduser()
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        what = "is not a folder" if probe == path and path.exists() else "is not a writable folder"
        raise _fail(name, f"{str(path)!r} {what}" + ("" if probe == path else f" (its ancestor {str(probe)!r} "
                                                           "cannot be written)") + ".")
    return str(path)


def _quantize(name: str, value: Any) -> int | None:
    if value is None or value is False:
        return None
    if value is True:
        return 4
    if isinstance(value, int) and value in (2, 3, 4, 5, 6, 8):
        return value
    raise _fail(name, f"expected True (4 bits), False, or one of 2, 3, 4, 5, 6, 8 bits; got {value!r}.")


def _dtype(name: str, value: Any) -> str:
    allowed = ("auto", "float32", "float16", "bfloat16")
    if value not in allowed:
        raise _fail(name, f"expected one of {', '.join(allowed)}; got {value!r}.{did_you_mean(str(value), allowed)}")
    return value


_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_bytes(value: Any, name: str = "size") -> int:
    """Parse a byte count: an int, or a string such as ``"8GB"``, ``"512 MiB"``, ``"1.5g"``."""
    if isinstance(value, bool):
        raise _fail(name, f"expected a byte count, got {value!r}.")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < 0 or (isinstance(value, float) and not math.isfinite(value)):
            raise _fail(name, f"expected a non-negative byte count, got {value!r}.")
        return int(value)
    if isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", value)
        if m and m.group(2).lower() in _UNITS:
            return int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    raise _fail(name, f"expected bytes as an int or a string like '8GB' or '512MiB', got {value!r}.")


def format_bytes(n: float) -> str:
    """``1234567`` -> ``"1.23 MB"`` (decimal units, as in error messages and tables)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n} B"  # pragma: no cover


def _bytes(*, optional: bool = True) -> Callable[[str, Any], Any]:
    def check(name: str, value: Any) -> Any:
        if value is None and optional:
            return None
        return parse_bytes(value, name)

    return check


#: the levels ``thinking`` takes besides True / False
THINKING_LEVELS = ("low", "medium", "high")


def _thinking(name: str, value: Any) -> Any:
    if value is None or isinstance(value, bool) or value in THINKING_LEVELS:
        return value
    raise _fail(name, f"expected True, False or one of {', '.join(map(repr, THINKING_LEVELS))}, got {value!r}.")


def _template_kwargs(name: str, value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise _fail(name, f"expected an object of template variables, got {type(value).__name__} {value!r:.80}.")
    return dict(value)


def _optional_bool(name: str, value: Any) -> Any:
    return None if value is None else _bool(name, value)


def _response_format(name: str, value: Any) -> Any:
    from .structured import normalize_response_format

    return normalize_response_format(value)


def _priority(name: str, value: Any) -> Any:
    from .enums import RequestPriority

    if isinstance(value, str) and value.upper() in RequestPriority.__members__:
        return RequestPriority[value.upper()]
    if isinstance(value, int) and not isinstance(value, bool) and value in set(RequestPriority):
        return RequestPriority(value)
    raise _fail(name, f"expected RequestPriority.LOW, NORMAL or HIGH (or 'low', 'normal', 'high'), got {value!r}.")


def _token_ids(name: str, value: Any) -> list[int]:
    if value is None:
        return []
    items = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0
                                                       for t in items):
        raise _fail(name, f"expected a list of non-negative token ids, got {value!r:.80}.")
    if len(items) > 64:
        raise _fail(name, f"at most 64 stop token ids, got {len(items)}.")
    return list(dict.fromkeys(items))


def _distributed(name: str, value: Any) -> Any:
    if value is None or value is False:
        return None
    if value is True:
        return "auto"
    if isinstance(value, str) and value.lower() in ("tensor", "pipeline", "auto"):
        return value.lower()
    raise _fail(name, f"expected 'tensor', 'pipeline' or 'auto' (or None), got {value!r}.")


def _kv_bits(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value in (4, 8):
        return value
    raise _fail(name, f"expected 4 or 8 bits (or None: a float KV cache), got {value!r}.")


def _one_of(*allowed: int) -> Callable[[str, Any], Any]:
    def check(name: str, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
            raise _fail(name, f"expected one of {', '.join(map(str, allowed))}, got {value!r}.")
        return value

    return check
