"""The in-memory store of ``/v1/responses`` replies, for ``previous_response_id`` (and ``GET`` /
``DELETE /v1/responses/{id}``).

Each entry is a reply's public object and the conversation that produced it, continued by the reply (the
provider's chat messages, without the request's ``instructions``: OpenAI does not carry them over to the
next response). The store is bounded twice: at most ``capacity`` entries (``--responses-store-size``,
default ``SERVER_RESPONSES_STORE_SIZE``) and at most ``max_bytes`` (``--responses-store-bytes``, default
``SERVER_RESPONSES_STORE_BYTES``; an entry's size is that of its JSON, images sent as data URIs included).
When either is exceeded the least recently used entries are dropped; an entry larger than ``max_bytes`` is
not kept. A ``previous_response_id`` naming a dropped entry is answered 400 (``previous_response_not_found``).
Nothing is written to disk: a restarted server has forgotten every response. Requests with
``"store": false`` are not kept.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ResponseStore", "StoredResponse"]


@dataclass
class StoredResponse:
    """A reply (``body``: the Response object as sent) and its conversation (``messages``)."""

    body: dict[str, Any]
    messages: list[dict[str, Any]]
    nbytes: int = field(default=0, compare=False)

    def size(self) -> int:
        """Its size as JSON (what it costs to keep, roughly: texts and data URIs dominate)."""
        if not self.nbytes:
            self.nbytes = len(json.dumps([self.body, self.messages], ensure_ascii=False, default=str))
        return self.nbytes


class ResponseStore:
    """A bounded LRU map of response id -> ``StoredResponse`` (thread-safe)."""

    def __init__(self, capacity: int, max_bytes: int | None = None) -> None:
        self.capacity = max(0, int(capacity))
        self.max_bytes = None if max_bytes is None else max(0, int(max_bytes))
        self.nbytes = 0
        self._items: "OrderedDict[str, StoredResponse]" = OrderedDict()
        self._lock = threading.Lock()

    def put(self, response_id: str, entry: StoredResponse) -> bool:
        """Keep ``entry`` (dropping the least recently used ones to make room); False if it is too large
        to keep at all (or the store keeps nothing)."""
        size = entry.size()
        if self.capacity == 0 or (self.max_bytes is not None and size > self.max_bytes):
            return False
        with self._lock:
            old = self._items.pop(response_id, None)
            if old is not None:
                self.nbytes -= old.size()
            self._items[response_id] = entry
            self.nbytes += size
            while len(self._items) > self.capacity or (self.max_bytes is not None and self.nbytes > self.max_bytes):
                _, dropped = self._items.popitem(last=False)
                self.nbytes -= dropped.size()
        return True

    def get(self, response_id: str) -> StoredResponse | None:
        with self._lock:
            entry = self._items.get(response_id)
            if entry is not None:
                self._items.move_to_end(response_id)
            return entry

    def delete(self, response_id: str) -> bool:
        with self._lock:
            entry = self._items.pop(response_id, None)
            if entry is not None:
                self.nbytes -= entry.size()
            return entry is not None

    def __len__(self) -> int:
        return len(self._items)
