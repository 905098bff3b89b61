"""The in-memory store of ``/v1/responses`` replies, for ``previous_response_id`` (and ``GET`` /
``DELETE /v1/responses/{id}``).

Each entry is a reply's public object and the conversation that produced it, continued by the reply (the
provider's chat messages, without the request's ``instructions``: OpenAI does not carry them over to the
next response). The store holds at most ``capacity`` entries (``--responses-store-size``, default
``SERVER_RESPONSES_STORE_SIZE``); when it is full the least recently used one is dropped, and a later
``previous_response_id`` naming it is answered 400 (``previous_response_not_found``). Nothing is written to
disk: a restarted server has forgotten every response. Requests with ``"store": false`` are not kept.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

__all__ = ["ResponseStore", "StoredResponse"]


@dataclass
class StoredResponse:
    """A reply (``body``: the Response object as sent) and its conversation (``messages``)."""

    body: dict[str, Any]
    messages: list[dict[str, Any]]


class ResponseStore:
    """A bounded LRU map of response id -> ``StoredResponse`` (thread-safe)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(0, int(capacity))
        self._items: "OrderedDict[str, StoredResponse]" = OrderedDict()
        self._lock = threading.Lock()

    def put(self, response_id: str, entry: StoredResponse) -> None:
        if self.capacity == 0:
            return
        with self._lock:
            self._items[response_id] = entry
            self._items.move_to_end(response_id)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def get(self, response_id: str) -> StoredResponse | None:
        with self._lock:
            entry = self._items.get(response_id)
            if entry is not None:
                self._items.move_to_end(response_id)
            return entry

    def delete(self, response_id: str) -> bool:
        with self._lock:
            return self._items.pop(response_id, None) is not None

    def __len__(self) -> int:
        return len(self._items)
