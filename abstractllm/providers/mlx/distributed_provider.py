"""``DistributedMLXProvider``: the MLX provider over a model sharded across the processes ``mlx.launch``
started. ``create_llm("mlx", model=..., distributed="tensor" | "pipeline" | "auto")`` returns one (under
``mlx.launch``; alone, it raises ``UnsupportedFeatureError`` naming ``mlx.launch``).

Every rank creates it with the same configuration. Rank 0 serves the calls; the ranks generate in lock-step
(``lockstep.py``). In a plain script every rank makes the same calls and gets the same results; a rank
that has nothing to call (a server's other ranks) calls ``follow()``, which returns when rank 0 closes.
``close()`` on every rank ends the group (rank 0's close stops it; the others' wait for it).
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any

from ...exceptions import InvalidRequestError, UnsupportedFeatureError
from ...params import PROMPT_CACHE_MIN_DEFAULT_BYTES, defaults
from .backend import import_backend
from .distributed import join_world, load_sharded_adapter
from .engine import convert_backend_error
from .lockstep import DistributedEngine, LockstepWorker
from .provider import RELOAD_KEYS, MLXProvider

__all__ = ["DistributedMLXProvider"]

_FIXED = RELOAD_KEYS | {"distributed", "distributed_timeout"}
_OPEN: "weakref.WeakSet[DistributedMLXProvider]" = weakref.WeakSet()
_OPEN_LOCK = threading.Lock()


def _in_use(provider: "DistributedMLXProvider") -> bool:
    """Open, and its loop not ended for good: it may still exchange messages with the other ranks."""
    engine = provider._engine
    return not provider._closed and not (engine is not None and engine.finished)


class DistributedMLXProvider(MLXProvider):
    """See the module docstring. ``rank`` and ``world_size`` say where this process stands."""

    distributed_capable = True

    def __init__(self, config: dict[Any, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.world = join_world()
        with _OPEN_LOCK:
            if any(_in_use(p) for p in _OPEN):
                raise UnsupportedFeatureError(
                    "One distributed provider per process at a time: the ranks exchange messages in one fixed "
                    "order, and a second provider would interleave its own with the first's. close() the other "
                    "one (on every rank) first.", feature="distributed")
            _OPEN.add(self)

    @property
    def rank(self) -> int:
        """This process's rank: 0 answers the callers, the others follow it."""
        return self.world.rank

    @property
    def world_size(self) -> int:
        """How many processes share the model."""
        return self.world.size

    def _normalize_config(self, config: dict[str, Any]) -> dict[str, Any]:
        # the default prompt_cache_bytes follows this machine's memory; the ranks' caches must evict alike
        config.setdefault("prompt_cache_bytes", PROMPT_CACHE_MIN_DEFAULT_BYTES)
        config = super()._normalize_config(config)
        config.setdefault("distributed_timeout", defaults(["distributed_timeout"])["distributed_timeout"])
        old = getattr(self, "config", None)
        if old is not None:  # update_config: what the ranks loaded together stays
            changed = sorted(k for k in _FIXED if config.get(k) != old.get(k))
            if changed:
                raise UnsupportedFeatureError(
                    f"In distributed mode {', '.join(changed)} cannot change after creation (every rank loaded "
                    "its shard together): close this provider on every rank and create a new one.",
                    feature="distributed")
        return config

    # ------------------------------------------------------------------ the loop
    @property
    def worker(self) -> LockstepWorker:  # type: ignore[override]
        with self._worker_lock:
            self._check_open()
            if self._worker is None:
                self._worker = LockstepWorker(f"abstractllm-{self.name}-rank{self.world.rank}",
                                              on_exit=self._worker_on_exit())
                weakref.finalize(self, self._worker.close)
            return self._worker  # type: ignore[return-value]

    @property
    def engine(self) -> DistributedEngine:  # type: ignore[override]
        with self._engine_lock:
            if self._engine is None:
                worker = self.worker
                engine = DistributedEngine(
                    worker, world=self.world, timeout_s=float(self.config["distributed_timeout"]),
                    model=self.config["model"], max_batch_size=int(self.config["max_batch_size"]),
                    max_queue_size=int(self.config["max_queue_size"]), adapter_for_run=self._load_on_worker,
                    convert=convert_backend_error)
                worker.engine = engine
                self._engine = engine
            return self._engine  # type: ignore[return-value]

    def _load_on_worker(self) -> Any:
        if self._adapter is None:
            t0 = time.perf_counter()
            self._adapter, self._estimate = load_sharded_adapter(self.spec, self.config, self.world)
            self.load_time_s = time.perf_counter() - t0
        return self._adapter

    def load(self) -> "DistributedMLXProvider":
        """Load this rank's shard now, with the other ranks (they must call it too, or generate)."""
        self.engine.ensure_loaded()
        return self

    def follow(self) -> None:
        """On a rank other than 0 with nothing to call itself: load, then run rank 0's requests (their
        output is dropped here) until rank 0 closes the group. Raises when the group fails."""
        if self.world.is_leader:
            raise InvalidRequestError("follow() is for the ranks other than 0: rank 0 answers the calls "
                                      "(generate, or abstractllm serve --distributed).")
        self.engine.follow()

    def unload(self) -> None:
        """Not in distributed mode: the shards stay loaded until ``close()`` on every rank."""
        raise UnsupportedFeatureError("In distributed mode the model stays loaded until close() (every rank "
                                      "loads its shard together).", feature="unload")

    def clear_cache(self) -> None:
        """Drop the prompt cache on every rank at the same step (rank 0 decides: on another rank this only
        frees MLX's buffer cache), and MLX's buffer cache."""
        engine = self._engine
        if engine is None or not engine.loop_running:
            return
        if self.world.is_leader:
            engine.run_op("clear_cache")
        else:
            engine.call(lambda: import_backend("mlx.core").clear_cache())

    def _release(self) -> None:
        engine = self._engine
        if engine is not None:
            engine.stop()  # rank 0: tell the others; another rank: wait for rank 0's close
        worker = self._worker
        if worker is not None and worker.thread is not None and not worker.closed:
            worker.call(self._unload_on_worker)

    # ------------------------------------------------------------------ information
    @property
    def distributed_error(self) -> BaseException | None:
        """Why the group stopped (a rank died, a step failed), or None."""
        engine = self._engine
        return engine.fatal if engine is not None else None

    def on_fatal(self, callback: Any) -> None:
        """Call ``callback(error)`` when the group fails (a server stops on it)."""
        self.engine.on_fatal(callback)

    def get_model_info(self) -> dict[str, Any]:
        """``MLXProvider.get_model_info()`` plus ``world_size``, ``rank``, ``distributed`` (the mode once
        loaded, else the configured one) and ``weights_bytes`` (this rank's resident weights; None until
        loaded)."""
        info = super().get_model_info()
        adapter = self._adapter
        info.update(world_size=self.world.size, rank=self.world.rank,
                    distributed=(adapter.mode if adapter is not None else self.config["distributed"]),
                    weights_bytes=(adapter.info.get("weights_bytes") if adapter is not None else None))
        return info

    def distributed_status(self) -> dict[str, Any]:
        """``world_size``, ``rank``, ``mode`` and every rank's memory as last gathered (rank 0 gathers it
        about once a second): ``ranks`` (``rank``, ``host``, ``pid``, ``weights_bytes``, ``mlx_active``,
        ``mlx_peak``, ``mlx_cache``, ``process_rss``), ``ranks_age_s``, and ``error`` once the group failed."""
        engine = self._engine
        adapter = self._adapter
        age = None
        if engine is not None and engine.gathered_at is not None:
            age = round(time.monotonic() - engine.gathered_at, 3)
        return {"world_size": self.world.size, "rank": self.world.rank,
                "mode": adapter.mode if adapter is not None else self.config["distributed"],
                "ranks": list(engine.ranks) if engine is not None else [], "ranks_age_s": age,
                "error": str(engine.fatal) if engine is not None and engine.fatal is not None else None}

