"""Known defects of the installed mlx-lm that give wrong results silently, and what the provider does about
each one when it loads a model they affect.

Each ``Defect`` names the ``model_type`` it concerns (read from the model's ``config.json``, never from its
name), the mlx-lm versions it was seen in, a probe that decides whether the *installed* mlx-lm has it (run
on the affected code itself, with a few small arrays: a version that fixed it is left alone, a later one
that still has it is caught), and a fix applied to the loaded model only (mlx-lm's classes stay as they
are). When a fix cannot be applied or does not make the probe pass, the fallback is to decode one request
at a time for that model (no batch, so no mixed-length prefill).

``apply_guards(adapter)`` runs on the provider's worker thread right after the weights are loaded; what it
did is in ``adapter.info["guards"]``.

Defects:

``nemotron_h_ssm_lengths`` (mlx-lm 0.32.2; upstream main at 0.32.0 passes the lengths): in
``mlx_lm/models/nemotron_h.py`` ``NemotronHMamba2Mixer._ssm`` calls ``ssm_update(..., mask)`` without
``lengths=cache.lengths`` (mamba2, falcon_h1 and granitemoehybrid pass it). ``BatchGenerator`` right-pads a
batch of prompts of different lengths and tells each cache the rows' lengths; without them the SSM takes
its state at the padded end, so every shorter prompt of the batch continues from a wrong state (greedy
output differs from the same prompt alone from the first token). The fix gives the model's mixers a
``_ssm`` that passes ``lengths`` (``ssm_update`` accepts it in these versions), which is upstream's code.
"""

from __future__ import annotations

import functools
import inspect
import logging
from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["Defect", "DEFECTS", "apply_guards", "installed_mlx_lm", "nemotron_h_loses_lengths"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Defect:
    """One known mlx-lm defect (see the module docstring).

    Attributes:
        name: a stable identifier.
        model_type: the ``config.json`` ``model_type`` of the models it affects.
        seen_in: the mlx-lm versions it was observed in (documentation; the probe decides).
        summary: what goes wrong, in one line.
        present: the probe: True when the installed mlx-lm has the defect.
        fix: applies the fix to a loaded model; returns how many modules it changed, or None when it cannot.
        fixed: the probe of the fixed code: True when the fix removes the defect.
    """

    name: str
    model_type: str
    seen_in: tuple[str, ...]
    summary: str
    present: Callable[[], bool]
    fix: Callable[[Any], "int | None"]
    fixed: Callable[[], bool]


def installed_mlx_lm() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mlx-lm")
    except PackageNotFoundError:  # pragma: no cover - mlx-lm is what loads the model
        return "unknown"


# ---------------------------------------------------------------------------------------------- nemotron_h
def _ssm_with_lengths(self: Any, hidden_states: Any, B: Any, C: Any, dt: Any, cache: Any, mask: Any) -> Any:
    """``NemotronHMamba2Mixer._ssm`` as upstream writes it: the cache's per-row ``lengths`` reach
    ``ssm_update``, so a right-padded row's state is taken at its own last token."""
    from mlx_lm.models import nemotron_h

    batch_size, seq_len, _ = hidden_states.shape
    hidden_states = hidden_states.reshape(batch_size, seq_len, self.num_heads, self.head_dim)
    B = B.reshape(batch_size, seq_len, self.n_groups, self.ssm_state_size)
    C = C.reshape(batch_size, seq_len, self.n_groups, self.ssm_state_size)
    if cache:
        state, lengths = cache[1], cache.lengths
    else:
        state, lengths = None, None
    y, state = nemotron_h.ssm_update(
        hidden_states, self.A_log, B, C, self.D.astype(hidden_states.dtype), dt, self.dt_bias, state,
        self.time_step_limit, mask, lengths=lengths,
    )
    if cache:
        cache[1] = state
    return y.reshape(batch_size, seq_len, self.intermediate_size)


@functools.cache
def _fixed_mixer_class() -> type:
    """A subclass of the installed ``NemotronHMamba2Mixer`` whose ``_ssm`` passes the lengths (made once;
    the loaded model's mixers are switched to it, nothing else is)."""
    from mlx_lm.models.nemotron_h import NemotronHMamba2Mixer

    return type("NemotronHMamba2Mixer", (NemotronHMamba2Mixer,),
                {"_ssm": _ssm_with_lengths, "__module__": __name__,
                 "__doc__": "mlx-lm's NemotronHMamba2Mixer with the batch lengths passed to ssm_update."})


def _probe_ssm(ssm: Callable[..., Any]) -> bool:
    """True when ``ssm`` (a ``NemotronHMamba2Mixer._ssm``) gives a right-padded row of a batch the same
    state as the row alone: two rows of lengths 3 and 6, a tiny mixer's shapes, fixed random keys (the
    global random state is not touched)."""
    from types import SimpleNamespace

    import mlx.core as mx
    from mlx_lm.models.cache import ArraysCache

    heads, head_dim, groups, state_size, length = 2, 4, 1, 4, 6
    mixer = SimpleNamespace(
        num_heads=heads, head_dim=head_dim, n_groups=groups, ssm_state_size=state_size,
        intermediate_size=heads * head_dim, time_step_limit=(0.0, float("inf")),
        A_log=mx.log(mx.arange(1, heads + 1, dtype=mx.float32)), D=mx.ones(heads), dt_bias=mx.ones(heads),
    )
    keys = mx.random.split(mx.random.key(0), 4)
    x = mx.random.normal((2, length, heads * head_dim), key=keys[0])
    B = mx.random.normal((2, length, groups * state_size), key=keys[1])
    C = mx.random.normal((2, length, groups * state_size), key=keys[2])
    dt = mx.random.normal((2, length, heads), key=keys[3])

    batch = ArraysCache(size=2)
    batch.prepare(lengths=[3, length])
    ssm(mixer, x, B, C, dt, batch, batch.make_mask(length))
    alone = ArraysCache(size=2)
    ssm(mixer, x[:1, :3], B[:1, :3], C[:1, :3], dt[:1, :3], alone, None)
    return bool(mx.allclose(batch[1][0], alone[1][0], atol=1e-5, rtol=1e-4).item())


@functools.cache
def nemotron_h_loses_lengths() -> bool:
    """True when the installed mlx-lm's ``NemotronHMamba2Mixer._ssm`` gives the shorter rows of a
    mixed-length batch a wrong state (the probe runs the installed method itself)."""
    from mlx_lm.models.nemotron_h import NemotronHMamba2Mixer

    return not _probe_ssm(NemotronHMamba2Mixer._ssm)


def _nemotron_h_fixed() -> bool:
    return _probe_ssm(_fixed_mixer_class()._ssm)


def _fix_nemotron_h(model: Any) -> int | None:
    from mlx_lm.models import nemotron_h

    if "lengths" not in inspect.signature(nemotron_h.ssm_update).parameters:
        return None  # the upstream fix needs ssm_update(lengths=...)
    fixed = _fixed_mixer_class()
    changed = 0
    for _, module in model.named_modules():
        if type(module) is nemotron_h.NemotronHMamba2Mixer:
            module.__class__ = fixed
            changed += 1
    return changed


#: the registry
DEFECTS: tuple[Defect, ...] = (
    Defect(
        name="nemotron_h_ssm_lengths", model_type="nemotron_h", seen_in=("0.32.2",),
        summary="NemotronHMamba2Mixer._ssm drops cache.lengths: shorter prompts of a mixed-length batch "
                "prefill continue from a wrong SSM state",
        present=nemotron_h_loses_lengths, fix=_fix_nemotron_h, fixed=_nemotron_h_fixed,
    ),
)


def _model_types(config: dict[str, Any]) -> set[str]:
    types = {config.get("model_type")}
    text = config.get("text_config")
    if isinstance(text, dict):
        types.add(text.get("model_type"))
    return {t for t in types if t}


def apply_guards(adapter: Any) -> list[dict[str, Any]]:
    """Check the loaded ``adapter.model`` (of ``adapter.spec.config``) against ``DEFECTS`` and fix what
    applies; record and return what was done (``adapter.info["guards"]``). The fallback for a defect that
    cannot be fixed: ``max_batch_size`` 1 for this model (its own copy of the settings)."""
    types = _model_types(adapter.spec.config)
    report: list[dict[str, Any]] = []
    for defect in DEFECTS:
        if defect.model_type not in types:
            continue
        entry = {"defect": defect.name, "mlx_lm": installed_mlx_lm()}
        try:
            present = defect.present()
        except Exception as exc:  # the affected code changed shape: assume it may be there
            log.warning("mlx-lm defect probe %s failed (%s: %s); assuming the defect", defect.name,
                        type(exc).__name__, exc)
            present = True
        if not present:
            continue
        try:
            changed = defect.fix(adapter.model) if defect.fixed() else None
        except Exception as exc:
            log.warning("mlx-lm defect fix %s failed (%s: %s)", defect.name, type(exc).__name__, exc)
            changed = None
        if changed is not None:
            entry.update(action="fixed", modules=changed)
        else:
            adapter.config = {**adapter.config, "max_batch_size": 1}
            entry.update(action="no batching")
            log.warning("mlx-lm %s has defect %s (%s) and it could not be fixed: this model decodes one "
                        "request at a time", entry["mlx_lm"], defect.name, defect.summary)
        report.append(entry)
    adapter.info["guards"] = report
    return report
