"""Read a media input, whatever form the user holds it in, into memory: nothing is written to disk.

``read_source`` accepts a path (``str`` / ``Path`` / ``file://``), encoded bytes, a binary file object, a
base64 string or ``data:`` URI, an ``http(s)`` URL (fetched with a timeout, a byte limit and a
content-type check), an OpenAI content part (``{"type": "image_url", "image_url": {"url": ...}}``), a
``PIL.Image`` or a numpy array. It returns a ``MediaSource``: the encoded bytes, or the decoded object as
given. Decoding is the job of ``images`` / ``video``. Every failure is an ``ImageProcessingError``.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..exceptions import ImageProcessingError
from ..params import default_of
from .kinds import IMAGE_PART_TYPES, VIDEO_PART_TYPES

__all__ = ["MediaSource", "read_source", "describe", "fetch_url", "URLRefusedError"]

_B64_CHARS = re.compile(rb"^[A-Za-z0-9+/_\-\s]*={0,2}\s*$")


class URLRefusedError(ImageProcessingError):
    """``fetch_url`` refused to connect: an address the URL's host (or a redirect's) resolves to was
    refused by ``allow_address``."""


@dataclass
class MediaSource:
    """One media input read into memory: ``data`` (encoded bytes) or ``obj`` (a PIL image / array)."""

    label: str  # a short description of where it came from, for error messages
    data: bytes | None = None
    obj: Any = None
    content_type: str | None = None  # from a data URI or an HTTP response


def describe(item: Any) -> str:
    """A short, safe description of a media input for messages (no huge strings)."""
    if isinstance(item, (str, os.PathLike)):
        s = str(item)
        if s.startswith("data:"):
            return f"data URI ({s[:30]}...)"
        return repr(s if len(s) <= 80 else s[:77] + "...")
    if isinstance(item, (bytes, bytearray, memoryview)):
        return f"bytes input ({len(item)} bytes)"
    return type(item).__name__


def _limit_error(label: str, size: int | None, max_bytes: int) -> ImageProcessingError:
    got = f"{size} bytes" if size is not None else "more"
    return ImageProcessingError(
        f"{label} is too large: {got}, the limit is {max_bytes} bytes (max_image_bytes). "
        "Send a smaller file or raise max_image_bytes."
    )


def _check_bytes(data: bytes, label: str, max_bytes: int) -> bytes:
    if not data:
        raise ImageProcessingError(f"{label} is empty (0 bytes).")
    if len(data) > max_bytes:
        raise _limit_error(label, len(data), max_bytes)
    return data


def _read_path(path: Path, label: str, max_bytes: int) -> MediaSource:
    try:
        if path.is_dir():
            raise ImageProcessingError(f"{label} is a directory, not an image or video file.")
        if not path.is_file():
            raise ImageProcessingError(f"No such file: {label}.")
        size = path.stat().st_size
        if size > max_bytes:
            raise _limit_error(label, size, max_bytes)
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except ImageProcessingError:
        raise
    except OSError as exc:
        raise ImageProcessingError(f"Cannot read {label}: {exc}") from exc
    return MediaSource(label=label, data=_check_bytes(data, label, max_bytes))


def _decode_b64(text: str, label: str, max_bytes: int) -> bytes:
    raw = text.strip().encode("ascii", "ignore") if text.isascii() else None
    if raw is None or not _B64_CHARS.match(raw):
        raise ImageProcessingError(f"{label} is not valid base64.")
    raw = re.sub(rb"\s+", b"", raw)
    if len(raw) * 3 // 4 > max_bytes:
        raise _limit_error(label, len(raw) * 3 // 4, max_bytes)
    try:
        if b"-" in raw or b"_" in raw:
            data = base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
        else:
            data = base64.b64decode(raw + b"=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageProcessingError(f"{label} is not valid base64: {exc}") from exc
    return _check_bytes(data, label, max_bytes)


def _read_data_uri(uri: str, max_bytes: int, accept: tuple[str, ...]) -> MediaSource:
    label = describe(uri)
    head, sep, payload = uri.partition(",")
    if not sep:
        raise ImageProcessingError(f"{label} is not a valid data URI: no ',' before the payload.")
    meta = head[5:].split(";")
    mime = (meta[0] or "text/plain").strip().lower()
    if not mime.startswith(accept):
        raise ImageProcessingError(f"{label} declares type {mime!r}; expected {' or '.join(a + '*' for a in accept)}.")
    if "base64" in (m.strip().lower() for m in meta[1:]):
        data = _decode_b64(payload, label, max_bytes)
    else:
        from urllib.parse import unquote_to_bytes

        data = _check_bytes(unquote_to_bytes(payload), label, max_bytes)
    return MediaSource(label=label, data=data, content_type=mime)


def _http_only_redirects():
    import urllib.request

    class HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
        """Follow redirects to http(s) URLs only (never ftp:// or file://)."""

        def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D401
            if not newurl.lower().startswith(("http://", "https://")):
                raise ImageProcessingError(f"{describe(req.full_url)} redirects to a non-http(s) URL; refused.")
            return super().redirect_request(req, fp, code, msg, headers, newurl)

    return HttpOnlyRedirects


def _HttpOnlyRedirects():  # noqa: N802 - a factory used like a class
    return _http_only_redirects()()


def _guarded_handlers(allow_address: Callable[[str], bool]) -> list[Any]:
    """urllib handlers whose connections resolve the host once, check every address with
    ``allow_address``, and connect only to a checked address (so DNS cannot change it in between).
    Each redirect opens a new connection, so every hop is checked."""
    import socket
    import urllib.request

    def create_connection(address, timeout=socket._GLOBAL_DEFAULT_TIMEOUT, source_address=None, **kw):
        host, port = address[0], address[1]
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        refused = [info[4][0] for info in infos if not allow_address(info[4][0])]
        if refused:
            raise URLRefusedError(f"Refused to connect to {host!r}: it resolves to a refused address ({refused[0]}).")
        last: OSError | None = None
        for family, kind, proto, _, sockaddr in infos:  # connect to the checked address itself
            sock = socket.socket(family, kind, proto)
            try:
                if timeout is not socket._GLOBAL_DEFAULT_TIMEOUT:
                    sock.settimeout(timeout)
                if source_address:
                    sock.bind(source_address)
                sock.connect(sockaddr)
                return sock
            except OSError as exc:
                sock.close()
                last = exc
        raise last or OSError(f"cannot connect to {host!r}")

    def guarded(http_class: type) -> type:
        class Guarded(http_class):  # type: ignore[misc, valid-type]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self._create_connection = create_connection

        return Guarded

    class HTTP(urllib.request.HTTPHandler):
        def do_open(self, http_class, req, **kwargs):  # noqa: D401
            return super().do_open(guarded(http_class), req, **kwargs)

    class HTTPS(urllib.request.HTTPSHandler):
        def do_open(self, http_class, req, **kwargs):  # noqa: D401
            return super().do_open(guarded(http_class), req, **kwargs)

    # no proxy: the addresses checked must be the ones connected to
    return [urllib.request.ProxyHandler({}), HTTP(), HTTPS()]


def fetch_url(
    url: str,
    *,
    timeout: float,
    max_bytes: int,
    accept: tuple[str, ...] = ("image/",),
    allow_address: Callable[[str], bool] | None = None,
) -> MediaSource:
    """GET ``url`` with ``timeout`` seconds (connect and each read, and the whole download), at most
    ``max_bytes``, and a content type starting with one of ``accept`` (or a generic binary type).

    ``allow_address``: when given, called with every IP address the host of the URL, and of each
    redirect, resolves to, before connecting; one ``False`` refuses the fetch with ``URLRefusedError``
    and nothing is sent to that host (a server passes e.g. ``lambda ip: ipaddress.ip_address(ip).is_global``
    to keep requests away from loopback and private networks). Environment proxies are then not used.
    ``None`` (the default): every address is allowed.
    """
    import socket
    import time
    import urllib.error
    import urllib.request

    label = describe(url)
    handlers = _guarded_handlers(allow_address) if allow_address is not None else []
    opener = urllib.request.build_opener(*handlers, _HttpOnlyRedirects())
    request = urllib.request.Request(
        url, headers={"User-Agent": "abstractllm", "Accept": ", ".join(a + "*" for a in accept)}
    )
    deadline = time.monotonic() + timeout
    try:
        with opener.open(request, timeout=timeout) as resp:
            ctype = _checked_type(resp, label, accept, max_bytes)
            data = _read_body(resp, label, max_bytes, timeout, deadline)
    except ImageProcessingError:
        raise
    except urllib.error.HTTPError as exc:
        raise ImageProcessingError(f"Fetching {label} failed: HTTP {exc.code} {exc.reason}.") from exc
    except (socket.timeout, TimeoutError) as exc:
        raise ImageProcessingError(f"Fetching {label} timed out after {timeout:g} s (image_fetch_timeout).") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, (socket.timeout, TimeoutError)):
            raise ImageProcessingError(
                f"Fetching {label} timed out after {timeout:g} s (image_fetch_timeout)."
            ) from exc
        raise ImageProcessingError(f"Fetching {label} failed: {exc.reason}.") from exc
    except (OSError, ValueError) as exc:
        raise ImageProcessingError(f"Fetching {label} failed: {type(exc).__name__}: {exc}") from exc
    return MediaSource(label=label, data=_check_bytes(data, label, max_bytes), content_type=ctype or None)


def _checked_type(resp: Any, label: str, accept: tuple[str, ...], max_bytes: int) -> str:
    """The response's content type (lowercase, without parameters; "" if none), refused unless it starts with one
    of ``accept`` or is a generic binary type; a ``Content-Length`` above ``max_bytes`` is refused too."""
    ctype = (resp.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if (
        ctype
        and not ctype.startswith(accept)
        and ctype not in ("application/octet-stream", "binary/octet-stream")
    ):
        raise ImageProcessingError(
            f"{label} answered with content type {ctype!r}, not {' or '.join(a + '*' for a in accept)}."
        )
    length = resp.headers.get("Content-Length")
    if length and length.isdigit() and int(length) > max_bytes:
        raise _limit_error(label, int(length), max_bytes)
    return ctype


def _read_body(resp: Any, label: str, max_bytes: int, timeout: float, deadline: float) -> bytes:
    """The response's body, read in chunks: at most ``max_bytes``, done by ``deadline`` (``time.monotonic()``)."""
    import time

    chunks, total = [], 0
    while True:
        if time.monotonic() > deadline:
            raise ImageProcessingError(
                f"Fetching {label} took longer than {timeout:g} s (image_fetch_timeout)."
            )
        chunk = resp.read(65536)
        if not chunk:
            break
        total += len(chunk)
        if total > max_bytes:
            raise _limit_error(label, None, max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


def _from_string(text: str, max_bytes: int, timeout: float, accept: tuple[str, ...]) -> MediaSource:
    if text.startswith("data:"):
        return _read_data_uri(text, max_bytes, accept)
    lowered = text[:8].lower()
    if lowered.startswith(("http://", "https://")):
        return fetch_url(text, timeout=timeout, max_bytes=max_bytes, accept=accept)
    if lowered.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return _read_path(Path(unquote(urlparse(text).path)), describe(text), max_bytes)
    if not text.strip():
        raise ImageProcessingError("An image input is an empty string.")
    looks_like_path = len(text) < 1024 and ("/" in text or "\\" in text or "." in text[-6:] or text.startswith("~"))
    if looks_like_path:
        path = Path(text).expanduser()
        try:
            exists = path.exists()
        except OSError:
            exists = False
        if exists:
            return _read_path(path, describe(text), max_bytes)
    is_b64 = len(text) >= 16 and text.isascii() and bool(_B64_CHARS.match(text.encode("ascii")))
    if is_b64 and not (looks_like_path and len(text) < 64):
        return MediaSource(label="base64 string", data=_decode_b64(text, "base64 string", max_bytes))
    if looks_like_path:
        return _read_path(Path(text).expanduser(), describe(text), max_bytes)
    raise ImageProcessingError(
        f"{describe(text)} is neither an existing file, an http(s) URL, a data URI nor valid base64."
    )


def read_source(
    item: Any,
    *,
    max_bytes: int = default_of("max_image_bytes"),
    timeout: float = default_of("image_fetch_timeout"),
    accept: tuple[str, ...] = ("image/",),
) -> MediaSource:
    """Read one media input into memory (see the module docstring for the accepted forms).

    ``accept``: MIME prefixes allowed for data URIs and URLs (``("image/",)``, ``("video/",)``).
    Raises ``ImageProcessingError`` for anything unreadable, too large, or of the wrong type.
    """
    if isinstance(item, dict):
        value = None
        for key in (*IMAGE_PART_TYPES, *VIDEO_PART_TYPES, "url"):
            if key in item:
                value = item[key]
                break
        if isinstance(value, dict):
            value = value.get("url")
        if value is None or isinstance(value, dict):
            keys = ", ".join(map(str, list(item)[:6]))
            raise ImageProcessingError(
                f"Unknown media dict with keys [{keys}]: expected an OpenAI content part like "
                "{'type': 'image_url', 'image_url': {'url': ...}}."
            )
        return read_source(value, max_bytes=max_bytes, timeout=timeout, accept=accept)
    if isinstance(item, str):
        return _from_string(item, max_bytes, timeout, accept)
    if isinstance(item, os.PathLike):
        return _read_path(Path(item).expanduser(), describe(item), max_bytes)
    if isinstance(item, (bytes, bytearray, memoryview)):
        data = bytes(item)
        if data[:5] == b"data:":
            return _read_data_uri(data.decode("ascii", "replace"), max_bytes, accept)
        return MediaSource(label=describe(item), data=_check_bytes(data, describe(item), max_bytes))
    if hasattr(item, "read") and callable(item.read):
        label = f"file object {getattr(item, 'name', type(item).__name__)!s:.60}"
        try:
            data = item.read(max_bytes + 1)
        except Exception as exc:
            raise ImageProcessingError(f"Cannot read {label}: {type(exc).__name__}: {exc}") from exc
        if isinstance(data, str):
            raise ImageProcessingError(f"{label} is open in text mode; open it with 'rb'.")
        return MediaSource(label=label, data=_check_bytes(bytes(data), label, max_bytes))
    module = type(item).__module__.split(".")[0]
    if module == "PIL" or module == "numpy":
        return MediaSource(label=type(item).__name__, obj=item)
    raise ImageProcessingError(
        f"Unsupported media input of type {type(item).__name__}: give a path, URL, bytes, a file object, "
        "base64 / data URI, a PIL image or a numpy array."
    )
