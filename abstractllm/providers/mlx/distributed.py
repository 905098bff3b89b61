"""Several processes, one model: the group ``mlx.launch`` starts, which architectures mlx-lm can shard, and
the sharded load (each rank holds its shard only; the memory guard counts the shard).

``mlx.launch`` starts the same program once per rank (``-n 2`` on one machine, ``--hostfile hosts.json``
over several) and tells each process its rank; ``mx.distributed.init()`` joins them. mlx-lm shards the
model: **tensor** parallelism (``model.shard(group)``: every layer's projections split across the ranks,
an all-reduce per layer) for the architectures whose model has a ``shard`` method, **pipeline**
parallelism (``model.model.pipeline(group)``: each rank runs a contiguous run of layers) for those built
on ``PipelineMixin``. ``mlx_lm.utils.sharded_load`` loads either. The lock-step generation is in
``lockstep.py``; the provider that puts them together in ``distributed_provider.py``.

Collectives here (``share``, ``gather``) are ``all_sum`` / ``all_gather`` on small arrays: every rank must
call them in the same order, on the provider's worker thread.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...exceptions import MemoryLimitError, ModelLoadError, UnsupportedFeatureError
from .backend import import_backend
from .memory import MemoryEstimate, check_load_memory
from .source import ModelSpec
from .text import TextAdapter
from .weights import float_itemsize_for, quantize_bits

__all__ = ["World", "join_world", "sharding_support", "model_sharding", "resolve_mode", "share", "gather",
           "estimate_shard_bytes", "ShardedTextAdapter", "load_sharded_adapter", "LAUNCH_HINT"]

LAUNCH_HINT = ("start every rank with mlx.launch: `mlx.launch --backend ring -n 2 python app.py` on one machine, "
               "`mlx.launch --hostfile hosts.json python app.py` over several (docs/distributed.md)")


@dataclass(frozen=True)
class World:
    """This process's place in the group: ``rank`` (0 answers the callers), ``size`` (ranks in all)."""

    group: Any
    rank: int
    size: int

    @property
    def is_leader(self) -> bool:
        return self.rank == 0


def join_world() -> World:
    """Join the group ``mlx.launch`` started (MLX's own detection, any backend); ``UnsupportedFeatureError``
    naming ``mlx.launch`` when this process runs alone."""
    mx = import_backend("mlx.core")
    try:
        group = mx.distributed.init()
    except RuntimeError as exc:  # e.g. a hostfile whose peers never connect
        raise UnsupportedFeatureError(f"distributed: MLX could not join the other ranks ({exc}); {LAUNCH_HINT}.",
                                      feature="distributed", provider="mlx") from exc
    if group.size() < 2:
        raise UnsupportedFeatureError(
            "distributed= shards the model over several processes, but this one runs alone (MLX's world size "
            f"is 1): {LAUNCH_HINT}. Without mlx.launch, leave distributed unset.",
            feature="distributed", provider="mlx")
    return World(group, int(group.rank()), int(group.size()))


# ---------------------------------------------------------------------------------------------- support
_SUPPORT: dict[str, list[str]] | None = None


def sharding_support() -> dict[str, list[str]]:
    """The model types of the installed mlx-lm with tensor / pipeline parallelism (from its sources, no
    model module imported): ``{"tensor": [...], "pipeline": [...]}``."""
    global _SUPPORT
    if _SUPPORT is None:
        models = Path(import_backend("mlx_lm.models").__path__[0])
        tensor, pipeline = [], []
        for path in sorted(models.glob("*.py")):
            try:
                text = path.read_text(encoding="utf-8")
            except OSError:
                continue
            if "def shard(" in text:
                tensor.append(path.stem)
            if "(PipelineMixin" in text or ", PipelineMixin" in text:
                pipeline.append(path.stem)
        _SUPPORT = {"tensor": tensor, "pipeline": pipeline}
    return _SUPPORT


def model_sharding(spec: ModelSpec) -> set[str]:
    """Which kinds of sharding mlx-lm has for this model's architecture (its model class, as mlx-lm
    resolves it from ``config.json``)."""
    import inspect

    utils = import_backend("mlx_lm.utils")
    model_class, _ = utils._get_classes(spec.config)
    module = inspect.getmodule(model_class)
    kinds = set()
    if hasattr(model_class, "shard"):
        kinds.add("tensor")
    mixin = getattr(import_backend("mlx_lm.models.pipeline"), "PipelineMixin", None)
    if mixin is not None and any(isinstance(v, type) and issubclass(v, mixin) and v is not mixin
                                 for v in vars(module).values()):
        kinds.add("pipeline")
    return kinds


def resolve_mode(spec: ModelSpec, mode: str) -> str:
    """``tensor`` or ``pipeline`` for this model (``auto``: tensor where mlx-lm has it, else pipeline);
    ``UnsupportedFeatureError`` naming the architectures that have the kind asked for."""
    if spec.kind == "vision":
        raise UnsupportedFeatureError(
            f"distributed={mode!r}: {spec.path.name!r} is a vision model, and mlx-vlm has no sharded loading; "
            "distributed mode serves text models (docs/distributed.md).", feature="distributed", provider="mlx")
    kinds = model_sharding(spec)
    if mode == "auto" and kinds:
        return "tensor" if "tensor" in kinds else "pipeline"
    if mode in kinds:
        return mode
    support = sharding_support()
    wanted = ["tensor", "pipeline"] if mode == "auto" else [mode]
    lists = "; ".join(f"{kind} parallelism for {', '.join(support[kind])}" for kind in wanted)
    raise UnsupportedFeatureError(
        f"distributed={mode!r}: mlx-lm cannot shard {spec.model_type!r} models that way. It has {lists}."
        + (f" This model has {' and '.join(sorted(kinds))} parallelism." if kinds else ""),
        feature="distributed", provider="mlx")


# ---------------------------------------------------------------------------------------------- collectives
def share(world: World, obj: Any = None, stream: Any = None, count: int = 0) -> tuple[Any, int]:
    """Rank 0's ``obj`` and ``count`` on every rank (the others pass nothing): the pickled size and the
    count in one ``all_sum`` (the others add zeros), then, unless ``obj`` is None, its bytes in another.

    ``stream``: the stream the model generates on (mlx-lm's ``generation_stream``). Collectives must run
    in the same order on every rank; on the generation stream they queue behind the step that is still
    being computed asynchronously, instead of racing it on another stream."""
    import contextlib

    import mlx.core as mx

    with mx.stream(stream) if stream is not None else contextlib.nullcontext():
        return _share(world, obj, count)


def _share(world: World, obj: Any, count: int) -> tuple[Any, int]:
    import mlx.core as mx
    import numpy as np

    leader = world.is_leader
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL) if leader and obj is not None else b""
    header = mx.array([len(data), count] if leader else [0, 0], dtype=mx.int64)
    size, count = mx.distributed.all_sum(header, group=world.group).tolist()
    if size == 0:
        return None, count
    buf = mx.array(np.frombuffer(data, dtype=np.uint8)) if leader else mx.zeros((size,), dtype=mx.uint8)
    out = mx.distributed.all_sum(buf, group=world.group)
    mx.eval(out)
    return (obj if leader else pickle.loads(np.array(out).tobytes())), count


def gather(world: World, obj: Any, stream: Any = None) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank (two ``all_gather``: sizes, then the padded
    pickled bytes); ``stream`` as for ``share``."""
    import contextlib

    import mlx.core as mx

    with mx.stream(stream) if stream is not None else contextlib.nullcontext():
        return _gather(world, obj)


def _gather(world: World, obj: Any) -> list[Any]:
    import mlx.core as mx
    import numpy as np

    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    sizes = mx.distributed.all_gather(mx.array([len(data)], dtype=mx.int64), group=world.group).tolist()
    row = np.zeros((1, max(sizes)), dtype=np.uint8)
    row[0, :len(data)] = np.frombuffer(data, dtype=np.uint8)
    table = np.array(mx.distributed.all_gather(mx.array(row), group=world.group))
    return [pickle.loads(table[i, :sizes[i]].tobytes()) for i in range(world.size)]


# ---------------------------------------------------------------------------------------------- loading
def _shard_lazily(spec: ModelSpec, world: World, mode: str) -> Any:
    """mlx-lm's model with lazy weights (nothing read), sharded as ``sharded_load`` will: the shapes of
    this rank's shard, for the memory estimate."""
    utils = import_backend("mlx_lm.utils")
    model, _ = utils.load_model(spec.path, lazy=True, strict=False)
    if mode == "tensor":
        model.shard(world.group)
    else:
        model.model.pipeline(world.group)
    return model


def estimate_shard_bytes(spec: ModelSpec, world: World, mode: str, float_itemsize: int | None) -> MemoryEstimate:
    """What loading this rank's shard needs: its weights (floats at ``float_itemsize`` after the dtype
    cast), the floats that are cast as stored too (``sharded_load`` reads them before the cast), and the
    usual working margin."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    from .memory import _MARGIN_FRACTION, _MARGIN_MIN

    model = _shard_lazily(spec, world, mode)
    weights = cast = 0
    for _, value in tree_flatten(model.parameters()):
        if mx.issubdtype(value.dtype, mx.floating) and float_itemsize and value.dtype.size != float_itemsize:
            cast += value.nbytes  # read as stored, then cast: both for a moment
            weights += value.size * float_itemsize
        else:
            weights += value.nbytes
    return MemoryEstimate(weights, cast, max(int(weights * _MARGIN_FRACTION), _MARGIN_MIN))


class ShardedTextAdapter(TextAdapter):
    """The text adapter over this rank's shard (``mlx_lm.utils.sharded_load``). Everything else is the
    text adapter's: the batch, sampling, the prompt cache (off under pipeline parallelism, where each
    rank's cache holds other layers and their byte budgets would evict differently)."""

    def __init__(self, spec: ModelSpec, config: dict[str, Any], on_gpu: bool, world: World, mode: str) -> None:
        super().__init__(spec, config, on_gpu)
        self.world = world
        self.mode = mode

    def _load_weights(self) -> tuple[Any, Any, dict[str, Any]]:
        utils = import_backend("mlx_lm.utils")
        trust = bool(self.config.get("trust_remote_code"))
        group = self.world.group
        try:
            return utils.sharded_load(
                str(self.spec.path), pipeline_group=group if self.mode == "pipeline" else None,
                tensor_group=group if self.mode == "tensor" else None, return_config=True,
                tokenizer_config={"trust_remote_code": trust}, trust_remote_code=trust)
        except (ValueError, KeyError, TypeError, OSError, ImportError) as exc:
            raise ModelLoadError(f"mlx-lm could not load a shard of {str(self.spec.path)!r} on rank "
                                 f"{self.world.rank}: {type(exc).__name__}: {exc}") from exc

    def load(self) -> None:
        from mlx.utils import tree_flatten

        super().load()
        self.info["weights_bytes"] = int(sum(v.nbytes for _, v in tree_flatten(self.model.parameters())))
        self.info["distributed"] = self.mode
        if self.mode == "pipeline":
            self._cache = None
        elif self._cache is not None and self._cache.disk is not None:
            # no disk tier across ranks: each rank's shard would need its own entries, and a rank missing one
            # that another has would break the lock-step (every rank must reuse as many tokens)
            self._cache.disk.close()
            self._cache.disk = None
        # The KV cache of a shard: a 1/size share of the heads (tensor) or of the layers (pipeline). Rank 0
        # checks that a request's cache fits before admitting it; the others admit what rank 0 admitted
        # (their own check could only refuse it there and stop the group: the shards are alike).
        per_token = -(-self.kv_bytes_per_token // self.world.size)
        self.kv_bytes_per_token = per_token if self.world.is_leader else 0


def load_sharded_adapter(spec: ModelSpec, config: dict[str, Any], world: World) -> tuple[ShardedTextAdapter,
                                                                                       MemoryEstimate]:
    """Load this rank's shard, every rank together (run on each rank's worker thread, in step).

    What every rank decides alike (the architecture, the mode, unsupported options) raises before any
    collective; the memory guard, which each rank answers for itself, is agreed on (``gather``) so that all
    ranks raise when one cannot fit its shard, and none waits for it in ``sharded_load``."""
    from .loading import check_architecture, set_device
    from .backend import on_gpu

    mx = import_backend("mlx.core")
    import_backend("mlx_lm")
    set_device(mx, config.get("device") or "auto")
    gpu = on_gpu()
    check_architecture(spec)
    mode = resolve_mode(spec, config.get("distributed") or "auto")
    bits = quantize_bits(config)
    if bits and not spec.is_quantized:
        raise UnsupportedFeatureError(
            f"quantize={bits} on load is not available in distributed mode (mlx's sharded layers cannot be "
            "quantized after sharding): load a pre-quantized model (mlx_lm.convert -q, or an mlx-community "
            "'-4bit' repo); its quantized layers are sharded as they are.", feature="quantize", provider="mlx")
    problem: BaseException | None = None
    estimate = MemoryEstimate(0, 0, 0)
    try:
        estimate = estimate_shard_bytes(spec, world, mode, float_itemsize_for(config["dtype"], spec, gpu))
        check_load_memory(spec, estimate, config.get("memory_limit"))
    except MemoryLimitError as exc:
        problem = MemoryLimitError(f"rank {world.rank} of {world.size} cannot hold its shard ({mode} parallelism): "
                                   f"{exc}", required_bytes=exc.required_bytes, available_bytes=exc.available_bytes)
    except Exception as exc:  # e.g. weights that mlx-lm cannot read
        problem = ModelLoadError(f"rank {world.rank} of {world.size} could not read {spec.path.name!r}: "
                                 f"{type(exc).__name__}: {exc}")
    # Agreed on: when one rank cannot load, all raise (none waits for it inside sharded_load).
    verdicts = gather(world, None if problem is None else (type(problem).__name__, str(problem)))
    if problem is not None:
        raise problem
    failed = [(rank, v) for rank, v in enumerate(verdicts) if v is not None]
    if failed:
        rank, (name, message) = failed[0]
        raise ModelLoadError(f"rank {rank} of {world.size} cannot load its shard of {spec.path.name!r} "
                             f"({name}: {message})")
    adapter = ShardedTextAdapter(spec, config, gpu, world, mode)
    adapter.load()
    adapter.info["estimated_shard_bytes"] = estimate.weights_bytes
    return adapter, estimate
