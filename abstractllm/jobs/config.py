"""Job configs: one flat dict per job, checked without loading any model.

A config has the job schema's keys: ``prompt`` (required, non-empty), ``system_prompt``, images
(``image_path``, ``image_paths``, ``image_url``, ``image_urls``: any of them, in that order), ``model``,
the generation parameters (``max_tokens``, ``temperature``, ``top_p``, ``top_k``, ``seed``, ``stop``, ...:
validated by ``abstractllm.params.PARAMS``, the same rules as ``generate``), ``max_attempts``,
``custom_id`` and ``metadata`` (a JSON object of your own, returned with the results).

This module imports no database library: ``validate_config`` works without the ``jobs`` extra.
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from ..exceptions import AbstractLLMError, did_you_mean
from ..params import GENERATION_PARAMS, JOB_MAX_ATTEMPTS, PARAMS
from .errors import InvalidConfigError, JobStoreError

__all__ = ["JobSpec", "validate_config", "job_spec", "JOB_PARAMS", "CONFIG_KEYS", "IMAGE_SUFFIXES", "json_value",
           "image_files", "read_jsonl", "default_db_url", "DB_ENV"]

#: generation parameters a job may carry (per-call parameters that make sense without a caller waiting)
JOB_PARAMS = frozenset(GENERATION_PARAMS - {"image", "images", "priority", "logprobs", "top_logprobs",
                                            "tool_choice"})
_IMAGE_KEYS = ("image_path", "image_paths", "image_url", "image_urls")
_OWN_KEYS = ("prompt", "system_prompt", "model", "max_attempts", "custom_id", "metadata", *_IMAGE_KEYS)
#: every key a job config may hold
CONFIG_KEYS = frozenset(_OWN_KEYS) | JOB_PARAMS
#: file suffixes ``abstractllm batch submit FOLDER`` takes as images (the files are not decoded)
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".heic", ".heif"})
#: environment variable naming the default store (a file path or a database URL)
DB_ENV = "ABSTRACTLLM_JOBS_DB"
_URL_PREFIXES = ("http://", "https://", "data:")


@dataclass
class JobSpec:
    """A validated job, ready to store: what ``validate_config`` checked, in the store's columns."""

    prompt: str | None
    images: list[str] = field(default_factory=list)
    system_prompt: str | None = None
    messages: list[Any] | None = None
    model: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    max_attempts: int = JOB_MAX_ATTEMPTS
    custom_id: str | None = None
    metadata: dict[str, Any] | None = None
    batch_id: str | None = None

    def to_config(self) -> dict[str, Any]:
        """The flat config form (what ``validate_config`` returns)."""
        out: dict[str, Any] = {"prompt": self.prompt}
        if self.images:
            out["images"] = list(self.images)
        for key in ("system_prompt", "model", "custom_id", "metadata"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        out.update(self.params)
        out["max_attempts"] = self.max_attempts
        return out


def json_value(value: Any) -> Any:
    """``value`` (a validated parameter) as a job stores it, in JSON: int keys of logit_bias become strings,
    which the validator takes back."""
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    return int(value) if hasattr(value, "__index__") and not isinstance(value, bool) else value


def _check_text(problems: list[str], key: str, value: Any, *, required: bool = False) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        problems.append(f"{key}: {'required, ' if required and value is None else ''}expected a non-empty string"
                        f"{'' if value is None else f', got {type(value).__name__} {value!r:.60}'}")
        return None
    if "\x00" in value:
        problems.append(f"{key}: contains a NUL character")
        return None
    return value


def _check_images(config: Mapping[str, Any], problems: list[str], base: Path | None, check_files: bool) -> list[str]:
    images: list[str] = []
    for key in _IMAGE_KEYS:
        value = config.get(key)
        if value is None:
            continue
        many = key.endswith("s")
        items = value if many else [value]
        if many and (not isinstance(value, (list, tuple)) or not value):
            problems.append(f"{key}: expected a non-empty list, got {type(value).__name__} {value!r:.60}")
            continue
        for i, item in enumerate(items):
            label = f"{key}[{i}]" if many else key
            if isinstance(item, os.PathLike) and key.startswith("image_path"):
                item = os.fspath(item)
            if not isinstance(item, str) or not item.strip():
                problems.append(f"{label}: expected a non-empty string, got {type(item).__name__} {item!r:.60}")
            elif key.startswith("image_url"):
                if not item[:8].lower().startswith(_URL_PREFIXES):
                    problems.append(f"{label}: expected an http(s):// URL or a data: URI, got {item!r:.60}")
                else:
                    images.append(item)
            else:
                path = Path(item).expanduser()
                if not path.is_absolute() and base is not None:
                    path = base / path
                path = path.absolute()
                if check_files and not path.is_file():
                    problems.append(f"{label}: no such file: {item}")
                else:
                    images.append(str(path))
    return images


def _check_params(config: Mapping[str, Any], problems: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for key in sorted(JOB_PARAMS & set(config)):
        if config[key] is None:
            continue
        try:
            value = PARAMS[key].validate(key, config[key])
        except AbstractLLMError as exc:
            problems.append(f"{key}: {str(exc).split(': ', 1)[-1]}")
            continue
        if isinstance(value, float) and not math.isfinite(value):
            problems.append(f"{key}: expected a finite number, got {value!r}")
            continue
        params[key] = json_value(value)
    return params


def job_spec(config: Mapping[str, Any], *, base: str | Path | None = None, check_files: bool = True) -> JobSpec:
    """Validate ``config`` and return it as a ``JobSpec`` (``InvalidConfigError`` lists every problem).
    Relative image paths are taken relative to ``base`` (default: the current folder) and stored absolute;
    ``check_files=False`` skips checking that they exist."""
    if not isinstance(config, Mapping):
        raise InvalidConfigError([f"expected a dict of job fields, got {type(config).__name__}"])
    problems: list[str] = []
    keys = [str(getattr(k, "value", k)) for k in config]
    config = dict(zip(keys, config.values()))
    for key in keys:
        if key not in CONFIG_KEYS:
            hint = did_you_mean(key, CONFIG_KEYS)
            problems.append(f"{key}: unknown field.{hint}" if hint else f"{key}: unknown field")
    prompt = _check_text(problems, "prompt", config.get("prompt"), required=True)
    system = _check_text(problems, "system_prompt", config.get("system_prompt"))
    model = _check_text(problems, "model", config.get("model"))
    custom_id = _check_text(problems, "custom_id", config.get("custom_id"))
    images = _check_images(config, problems, Path(base) if base is not None else None, check_files)
    params = _check_params(config, problems)
    attempts = config.get("max_attempts", JOB_MAX_ATTEMPTS)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= 100:
        problems.append(f"max_attempts: expected an integer in [1, 100], got {attempts!r:.40}")
    metadata = config.get("metadata")
    if metadata is not None:
        try:
            if not isinstance(metadata, dict):
                raise TypeError(f"expected a JSON object (dict), got {type(metadata).__name__}")
            json.dumps(metadata, allow_nan=False)
        except (TypeError, ValueError) as exc:
            problems.append(f"metadata: {exc}")
    if problems:
        first = problems[0].split(":", 1)[0].split("[", 1)[0]
        raise InvalidConfigError(problems, param=first)
    return JobSpec(prompt=prompt, images=images, system_prompt=system, model=model, params=params,
                   max_attempts=attempts, custom_id=custom_id, metadata=metadata)


def validate_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Check a job config without loading any model and return it normalized (images gathered into
    ``images``, paths made absolute, parameters validated as ``generate`` validates them).

    Raises ``InvalidConfigError`` naming every problem at once (its ``problems`` list)."""
    return job_spec(config).to_config()


def read_jsonl(path: str | Path, defaults: Mapping[str, Any] | None = None) -> list[JobSpec]:
    """Read a JSONL file of job configs (one JSON object a line; blank lines skipped), each merged over
    ``defaults``. Relative image paths are relative to the file's folder. Every bad line is reported,
    with its line number, in one ``InvalidConfigError``; nothing is returned then."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidConfigError([f"no such file: {path}"], where="jobs file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidConfigError([f"cannot read {path}: {exc}"], where="jobs file") from None
    specs: list[JobSpec] = []
    problems: list[str] = []
    first_line: int | None = None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except ValueError as exc:
            problems.append(f"line {number}: not valid JSON ({exc})")
            first_line = first_line or number
            continue
        if not isinstance(data, dict):
            problems.append(f"line {number}: expected a JSON object, got {type(data).__name__}")
            first_line = first_line or number
            continue
        try:
            specs.append(job_spec({**(defaults or {}), **data}, base=path.parent))
        except InvalidConfigError as exc:
            problems += [f"line {number}: {p}" for p in exc.problems]
            first_line = first_line or number
    if problems:
        raise InvalidConfigError(problems, line=first_line, where=f"jobs file {path}")
    if not specs:
        raise InvalidConfigError([f"{path} holds no job (one JSON object a line)"], where="jobs file")
    return specs


def image_files(folder: str | Path, *, recursive: bool = False) -> Iterator[Path]:
    """The image files of ``folder`` by suffix (``IMAGE_SUFFIXES``), sorted; nothing is decoded."""
    root = Path(folder)
    pattern = root.rglob("*") if recursive else root.iterdir()
    yield from sorted(p.absolute() for p in pattern if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _data_dir() -> Path:
    home = Path.home()
    if sys.platform == "darwin":
        return home / "Library" / "Application Support" / "abstractllm"
    if os.name == "nt":
        return Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local") / "abstractllm"
    return Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share") / "abstractllm"


def default_db_url(create_folder: bool = False) -> str:
    """The default store: ``$ABSTRACTLLM_JOBS_DB`` (a path or a database URL), else ``jobs.db`` in the
    user's data folder (``~/.local/share/abstractllm`` on Linux, ``~/Library/Application Support/
    abstractllm`` on macOS), whose folder is created with ``create_folder``."""
    env = os.environ.get(DB_ENV)
    if env:
        return env
    folder = _data_dir()
    if create_folder:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise JobStoreError(f"Cannot create the job store's folder {folder}: {exc.strerror or exc}. "
                                f"Pass --db PATH or set {DB_ENV}.") from exc
    return str(folder / "jobs.db")
