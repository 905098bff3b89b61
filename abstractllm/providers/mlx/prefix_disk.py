"""The disk tier of the prefix (KV) cache: prompt caches that survive restarts and are shared by processes.

One file per entry, ``<sha256(model_key, tokens)>.safetensors`` in one folder, in mlx-lm's
``save_prompt_cache`` layout (the flattened cache states, the class names and the scalar table as metadata,
so ``mlx_lm.models.cache.load_prompt_cache`` reads it too) plus our metadata under the same ``0.`` key:
``format`` (``FORMAT_VERSION``), ``model_key``, ``tokens`` (a JSON list), ``cache_type`` and ``checksum``
(sha256 of the header without it and of the tensor data).

``DiskPrefixStore.save`` evaluates the cache's arrays on the caller's (MLX worker) thread (views of its
buffers: nothing is copied there, so saving never holds up decoding) and copies them to host memory and
writes them on one background thread: a temp file in the same folder, fsync, ``os.replace``. Files are never
seen half written; two processes can share a folder (eviction runs under an ``fcntl.flock`` lock file, a file
vanishing under a reader is a miss). ``lookup`` finds the longest stored prefix of a prompt for this
``model_key``; ``load`` verifies the file and rebuilds the cache. A corrupt, truncated or older-format file
is skipped with one warning and deleted; another model's entries are left alone.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import secrets
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...exceptions import InvalidParameterError
from .prefix_disk_format import (FORMAT_VERSION, EntryInfo, Unusable, decode_arrays, encode, entry_info,
                                 device_state, entry_name, host_state, read_head, rebuild, split_header, verify)

try:  # POSIX; elsewhere eviction runs without the cross-process lock
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = ["DiskPrefixStore", "DiskHandle", "FORMAT_VERSION", "DIR_ENV", "default_dir", "entry_name",
           "list_entries", "clear_directory"]

log = logging.getLogger(__name__)

#: environment variable naming the default folder (``abstractllm cache``)
DIR_ENV = "ABSTRACTLLM_PROMPT_CACHE_DIR"
#: saves waiting for the writer thread (each holds a reference to a cache's arrays); more are dropped
MAX_PENDING_WRITES = 2
#: temp files older than this (seconds) were left by a dead process and are removed by eviction
STALE_TMP_S = 3600.0

_NAME = re.compile(r"^[0-9a-f]{64}\.safetensors$")
_TMP = ".tmp-"
_LOCK = ".lock"


@dataclass(frozen=True)
class DiskHandle:
    """What ``lookup`` returns with the token count: the entry's file (``load`` reads it)."""

    path: str
    n_tokens: int


def default_dir() -> Path:
    """``$ABSTRACTLLM_PROMPT_CACHE_DIR``, else ``prompt-cache`` in the user's cache folder
    (``$XDG_CACHE_HOME/abstractllm`` or ``~/.cache/abstractllm``; ``~/Library/Caches/abstractllm`` on macOS)."""
    env = os.environ.get(DIR_ENV)
    if env:
        return Path(env).expanduser()
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "abstractllm" / "prompt-cache"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "abstractllm" / "prompt-cache"


# --- folder operations (also without a store: the CLI) -----------------------------------------------------

def _write_chunk(f: Any, chunk: Any) -> None:
    """The lowest-level write of an entry (one buffer); an OSError here drops the entry."""
    f.write(chunk)


class _DirLock:
    """``fcntl.flock`` on the folder's lock file, across processes (none where fcntl is missing)."""

    def __init__(self, directory: Path) -> None:
        self.path, self.fd = directory / _LOCK, None

    def __enter__(self) -> "_DirLock":
        if fcntl is not None:
            try:
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
                fcntl.flock(self.fd, fcntl.LOCK_EX)
            except OSError as exc:
                log.debug("prompt cache: no lock on %s: %s", self.path, exc)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.fd is not None:
            os.close(self.fd)  # releases the lock


def _state_nbytes(cache: list) -> int:
    """The bytes of ``cache``'s state (its used part; nothing is evaluated or copied)."""
    from mlx.utils import tree_flatten

    from .prefix_disk_format import compact_state

    return sum(int(v.nbytes) for _, v in tree_flatten([compact_state(c) for c in cache]) if hasattr(v, "nbytes"))


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
        return True
    except FileNotFoundError:
        return False


def _scan(directory: Path) -> list[tuple[str, os.stat_result]]:
    """(name, stat) of each entry file; temp files left by dead processes are removed on the way."""
    out = []
    try:
        items = list(os.scandir(directory))
    except OSError:
        return out
    for item in items:
        try:
            if _NAME.match(item.name):
                out.append((item.name, item.stat()))
            elif item.name.startswith(_TMP) and time.time() - item.stat().st_mtime > STALE_TMP_S:
                _unlink(Path(item.path))
        except OSError:  # vanished meanwhile
            pass
    return out


def list_entries(directory: str | Path) -> list[dict[str, Any]]:
    """Every entry in ``directory``, newest first: ``model_key``, ``tokens`` (count), ``bytes``, ``mtime``,
    ``path``, ``cache_type``; an unreadable file has ``model_key`` None and ``error``. Nothing is deleted."""
    directory = Path(directory).expanduser()
    out = []
    for name, st in _scan(directory):
        row: dict[str, Any] = {"model_key": None, "tokens": None, "bytes": st.st_size, "mtime": st.st_mtime,
                               "path": str(directory / name), "cache_type": None}
        try:
            meta, _ = split_header(read_head(directory / name)[0])
            info = entry_info(name, meta, None)
            if info.model_key is None:
                raise Unusable("written by a newer version")
            row.update(model_key=info.model_key, tokens=len(info.tokens or ()), cache_type=info.cache_type)
        except FileNotFoundError:
            continue
        except (Unusable, OSError) as exc:
            row["error"] = str(exc)
        out.append(row)
    return sorted(out, key=lambda r: -r["mtime"])


def clear_directory(directory: str | Path) -> int:
    """Delete every entry (and temp file) in ``directory``; returns the entries removed."""
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        return 0
    removed = 0
    with _DirLock(directory):
        for item in list(os.scandir(directory)):
            if _NAME.match(item.name) or item.name.startswith(_TMP):
                removed += _unlink(Path(item.path)) and not item.name.startswith(_TMP)
    return removed


def _check_dir(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f"{_TMP}probe-{os.getpid()}-{secrets.token_hex(4)}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise InvalidParameterError(
            f"prompt_cache_dir {str(directory)!r} is not a writable folder ({exc.strerror or exc}). Choose "
            "another folder, or leave the disk prompt cache off.", param="prompt_cache_dir", value=str(directory),
            original_exception=exc) from exc


# --- the store -------------------------------------------------------------------------------------------------

class DiskPrefixStore:
    """Prompt caches of one model on disk, under ``max_bytes`` (least recently used evicted first).

    ``directory`` is created; an unwritable one raises ``InvalidParameterError`` (``param="prompt_cache_dir"``).
    ``model_key`` must name everything that changes the KV (model, revision, dtype, quantization, KV settings):
    entries of other keys in the same folder are ignored, never served. ``save`` and ``load`` run on the MLX
    worker thread; the disk writes run on the store's own thread. ``stats``: ``reads`` / ``read_bytes``
    (entries loaded), ``writes`` / ``written_bytes``, ``hits`` (successful loads), ``misses`` (lookups
    without an entry, loads that found none), ``dropped`` (saves not written: full disk, I/O error, over
    budget, too many pending), ``corrupt`` (files skipped and deleted), ``evicted``.
    """

    def __init__(self, directory: str | Path, max_bytes: int, model_key: str, *,
                 max_pending: int = MAX_PENDING_WRITES) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise InvalidParameterError(f"prompt_cache_disk_bytes must be a non-negative integer, got {max_bytes!r}.",
                                        param="prompt_cache_disk_bytes", value=max_bytes)
        if not isinstance(model_key, str) or not model_key:
            raise InvalidParameterError(f"model_key must be a non-empty string, got {model_key!r}.",
                                        param="model_key", value=model_key)
        self.directory = Path(directory).expanduser().absolute()
        _check_dir(self.directory)
        self.max_bytes, self.model_key, self.max_pending = max_bytes, model_key, max(1, int(max_pending))
        self._cond = threading.Condition()
        self._index: dict[str, EntryInfo] = {}
        self._jobs: deque = deque()
        self._pending: set[str] = set()  # names queued or being written
        self._warned: set[str] = set()
        self._failing = False  # a write failed: later failures are logged at debug until one succeeds
        self._thread: threading.Thread | None = None
        self._closed = False
        self._stats = dict.fromkeys(("reads", "writes", "read_bytes", "written_bytes", "hits", "misses",
                                     "dropped", "corrupt", "evicted"), 0)

    @property
    def stats(self) -> dict[str, int]:
        """A copy of the counters (see the class docstring)."""
        with self._cond:
            return dict(self._stats)

    def _count(self, **delta: int) -> None:
        with self._cond:
            for key, n in delta.items():
                self._stats[key] += n

    # saving ------------------------------------------------------------------------------------------------
    def save(self, tokens: list[int], cache: list, cache_type: str = "assistant") -> None:
        """Store ``cache`` (the state after ``tokens``): evaluates its arrays now (no copy), copies and writes
        them on the store's thread. Never raises and never waits on the disk; an entry already stored is only
        touched."""
        try:
            tokens = [int(t) for t in tokens]
            name = entry_name(self.model_key, tokens)
            if not tokens or not cache or self._closed or self._already(name):
                return
            size = _state_nbytes(cache)  # nothing is kept for an entry that cannot be written
            state = device_state(cache) if size <= self.max_bytes and len(self._jobs) < self.max_pending else None
            with self._cond:
                if state is None or len(self._jobs) >= self.max_pending:
                    self._stats["dropped"] += 1
                    log.debug("prompt cache: entry of %d tokens not saved (%d bytes; %d writes waiting)",
                              len(tokens), size, len(self._jobs))
                    return
                self._jobs.append((name, tokens, str(cache_type), state))
                self._pending.add(name)
                self._start_writer()
                self._cond.notify_all()
        except Exception as exc:  # a save must never fail the request that made the cache
            self._count(dropped=1)
            log.warning("prompt cache: could not save an entry to disk: %s", exc, exc_info=log.isEnabledFor(10))

    def _already(self, name: str) -> bool:
        """True when ``name`` is being written or is on disk (then marked recently used)."""
        with self._cond:
            if name in self._pending:
                return True
        try:
            os.utime(self.directory / name)
            return True
        except OSError:
            return False

    def _start_writer(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._writer, name="abstractllm-prompt-cache-writer",
                                            daemon=True)
            self._thread.start()

    def _writer(self) -> None:
        while True:
            with self._cond:
                while not self._jobs:
                    if self._closed:
                        return
                    self._cond.wait()
                job = self._jobs.popleft()
            try:
                self._write(*job)
            except Exception as exc:  # pragma: no cover - defensive: the writer thread must survive
                self._count(dropped=1)
                log.warning("prompt cache: could not write an entry: %s", exc)
            finally:
                with self._cond:
                    self._pending.discard(job[0])
                    self._cond.notify_all()

    def _write(self, name: str, tokens: list[int], cache_type: str, state: tuple) -> None:
        head, buffers, size = encode(self.model_key, tokens, cache_type, host_state(state))
        if size > self.max_bytes:
            self._count(dropped=1)
            return
        tmp = self.directory / f"{_TMP}{name}-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            with open(tmp, "wb") as f:
                for chunk in [head, *buffers]:
                    _write_chunk(f, chunk)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.directory / name)
        except OSError as exc:
            self._write_failed(tmp, exc)
            return
        except BaseException:
            with contextlib.suppress(OSError):
                _unlink(tmp)
            raise
        with self._cond:
            self._failing = False
            self._stats["writes"] += 1
            self._stats["written_bytes"] += size
            self._index[name] = EntryInfo(self.model_key, tuple(tokens), cache_type)
        self._evict(keep=name)

    def _write_failed(self, tmp: Path, exc: OSError) -> None:
        try:
            _unlink(tmp)
        except OSError:
            pass
        with self._cond:
            self._stats["dropped"] += 1
            first, self._failing = not self._failing, True
        why = "the disk is full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else str(exc)
        (log.warning if first else log.debug)("prompt cache: entry not written to %s, dropped: %s",
                                              self.directory, why)

    def _evict(self, keep: str | None = None) -> None:
        """Delete the least recently used entries (any model's) until the folder fits ``max_bytes``."""
        with _DirLock(self.directory):
            files = sorted((st.st_mtime_ns, name, st.st_size) for name, st in _scan(self.directory))
            total = sum(size for _, _, size in files)
            for _, name, size in files:
                if total <= self.max_bytes:
                    break
                if name == keep:
                    continue
                if _unlink(self.directory / name):
                    self._count(evicted=1)
                total -= size
                with self._cond:
                    self._index.pop(name, None)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every save so far is written (or dropped); False if ``timeout`` seconds passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending, timeout)

    def close(self, timeout: float | None = None) -> None:
        """Finish the pending writes (up to ``timeout``) and stop the writer thread; later saves are ignored."""
        self.flush(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # reading -----------------------------------------------------------------------------------------------
    def lookup(self, tokens: list[int]) -> tuple[int, DiskHandle] | None:
        """The longest stored entry of this model whose tokens are a prefix of ``tokens`` (or all of them):
        ``(its token count, a handle for load)``, or None. Sees entries written by other processes."""
        self._refresh()
        query, best = tuple(tokens), None
        with self._cond:
            for name, info in self._index.items():
                n = len(info.tokens) if info.tokens is not None else 0
                if n and n <= len(query) and (best is None or n > best[0]) and query[:n] == info.tokens:
                    best = (n, DiskHandle(str(self.directory / name), n))
            if best is None:
                self._stats["misses"] += 1
        return best

    def _refresh(self) -> None:
        """Sync the index with the folder: forget vanished files, read the metadata of new ones."""
        names = {name for name, _ in _scan(self.directory)}
        with self._cond:
            for gone in self._index.keys() - names:
                del self._index[gone]
            new = names - self._index.keys()
        for name in new:
            try:
                meta, _ = split_header(read_head(self.directory / name)[0])
                info = entry_info(name, meta, self.model_key)
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.debug("prompt cache: cannot read %s: %s", name, exc)
                continue
            except Unusable as exc:
                self._discard(self.directory / name, exc)
                continue
            with self._cond:
                self._index[name] = info

    def load(self, handle: DiskHandle) -> list | None:
        """The cache of ``handle`` (from ``lookup``), verified; None (a miss) when the file vanished, or is
        corrupt, truncated or of an older format (then deleted, with one warning)."""
        path = Path(handle.path)
        try:
            data = path.read_bytes()
            meta, index, offset = verify(data, path.name, self.model_key)
            cache = rebuild(meta, decode_arrays(data, offset, index))
        except FileNotFoundError:
            return self._miss(path)
        except OSError as exc:
            log.warning("prompt cache: cannot read %s: %s", path, exc)
            return self._miss(path)
        except Exception as exc:  # Unusable, or a malformed state that passed the checks
            self._discard(path, exc)
            return self._miss(path)
        try:
            os.utime(path)  # recently used
        except OSError:
            pass
        self._count(reads=1, read_bytes=len(data), hits=1)
        return cache

    def _miss(self, path: Path) -> None:
        with self._cond:
            self._index.pop(path.name, None)
            self._stats["misses"] += 1

    def _discard(self, path: Path, exc: BaseException) -> None:
        """Skip a bad file: one warning, deleted unless it belongs to someone else."""
        delete = getattr(exc, "delete", True)
        with self._cond:
            self._index.pop(path.name, None)
            first = path.name not in self._warned
            self._warned.add(path.name)
            if delete:
                self._stats["corrupt"] += 1
        if first:
            log.warning("prompt cache: skipped %s%s: %s", path, " (deleted)" if delete else "", exc)
        if delete:
            try:
                _unlink(path)
            except OSError:
                pass

    # the folder --------------------------------------------------------------------------------------------
    def entries(self) -> list[dict[str, Any]]:
        """Every entry in the folder (all models), newest first (see ``list_entries``)."""
        return list_entries(self.directory)

    def clear(self) -> int:
        """Delete every entry in the folder (all models); returns the files removed."""
        with self._cond:
            self._index.clear()
        return clear_directory(self.directory)
