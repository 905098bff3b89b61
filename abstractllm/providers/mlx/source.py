"""Find a model (local folder or Hugging Face repo id) and inspect it without loading it.

``resolve_model`` returns a local folder: a path as given, or a repo id through ``huggingface_hub``
(the local cache first, else a download with its progress bar). ``inspect_model`` reads ``config.json``
and the safetensors headers to decide text vs vision (from the config, never the name), the
architecture, the quantization and the bytes of the weights. Nothing here imports mlx.
"""

from __future__ import annotations

import json
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...exceptions import ModelLoadError, ModelNotFoundError

__all__ = ["ModelSpec", "resolve_model", "inspect_model", "looks_like_repo_id", "read_chat_template"]

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]{0,95}/[\w.\-]{1,96}$")
_HUB_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "*.model", "*.txt", "*.tiktoken"]
_REMOTE_CODE_PATTERNS = ["*.py"]  # only with trust_remote_code
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "U32": 4, "I16": 2, "I8": 1,
                "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
# Keys whose presence in config.json marks a vision-language model.
_VISION_KEYS = ("vision_config", "vision_tower_config", "mm_vision_tower", "visual")


@dataclass
class ModelSpec:
    """What is known about a model folder before loading it."""

    path: Path
    config: dict[str, Any]
    kind: str  # "text" | "vision"
    model_type: str
    weight_files: list[Path]
    weight_bytes: int  # bytes of the tensors as stored
    float_params: int  # number of float parameters (quantizable)
    float_bytes: int  # bytes of those float parameters as stored
    largest_tensor_bytes: int
    quantization: dict[str, Any] | None
    has_chat_template: bool

    @property
    def is_quantized(self) -> bool:
        return self.quantization is not None

    @property
    def context_length(self) -> int | None:
        """The context length ``config.json`` declares (``max_position_embeddings`` or a synonym)."""
        for cfg in (self.config.get("text_config") or {}, self.config):
            for key in ("max_position_embeddings", "max_sequence_length", "seq_length", "n_positions"):
                value = cfg.get(key) if isinstance(cfg, dict) else None
                if isinstance(value, int) and value > 0:
                    return value
        return None

    @property
    def vocab_size(self) -> int | None:
        cfg = self.config.get("text_config") or {}
        vocab = cfg.get("vocab_size") or self.config.get("vocab_size")
        return vocab if isinstance(vocab, int) else None


def looks_like_repo_id(model: str) -> bool:
    return bool(_REPO_ID.match(model)) and not model.startswith((".", "/", "~"))


def _hub_cache_dir() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except Exception:
        return os.path.expanduser("~/.cache/huggingface/hub")


def resolve_model(model: str, revision: str | None = None, *, trust_remote_code: bool = False,
                  cache_dir: str | None = None) -> Path:
    """Return the local folder of ``model`` (a folder path, or a hub repo id: cached or downloaded into
    ``cache_dir``, default the Hugging Face cache). Python files of a repo are fetched only with
    ``trust_remote_code``."""
    patterns = _HUB_PATTERNS + (_REMOTE_CODE_PATTERNS if trust_remote_code else [])
    where = {"cache_dir": str(Path(cache_dir).expanduser())} if cache_dir else {}
    local = Path(model).expanduser()
    if local.exists():
        if not local.is_dir():
            raise ModelNotFoundError(f"Model path {str(local)!r} is a file; give the model's folder instead.")
        return local.resolve()
    if not looks_like_repo_id(model):
        raise ModelNotFoundError(
            f"No model folder at {model!r}, and it is not a Hugging Face repo id (like 'org/name')."
        )
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:  # pragma: no cover - part of the mlx extra
        raise ModelNotFoundError(
            f"{model!r} looks like a Hugging Face repo id but huggingface_hub is not installed: "
            'pip install "abstractllm[mlx]"'
        ) from exc
    try:
        return Path(snapshot_download(model, revision=revision, allow_patterns=patterns, local_files_only=True,
                                      **where))
    except Exception:
        pass  # not in the cache: download it
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    if offline:
        raise ModelNotFoundError(
            f"Model {model!r} is not in the Hugging Face cache ({cache_dir or _hub_cache_dir()}) and HF_HUB_OFFLINE is set. "
            "Download it once while online, or pass a local folder."
        )
    try:
        return Path(snapshot_download(model, revision=revision, allow_patterns=patterns, **where))
    except Exception as exc:
        raise ModelNotFoundError(
            f"Model {model!r} is not in the Hugging Face cache ({cache_dir or _hub_cache_dir()}) and could not be "
            f"downloaded: {type(exc).__name__}: {exc}. Check the repo id and your network, or pass a local folder."
        ) from exc


def _safetensors_header(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            if n <= 0 or n > 100_000_000:
                raise ValueError("bad header length")
            header = json.loads(fh.read(n))
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
        size = path.stat().st_size
        if 8 + n + end > size:
            raise ValueError(f"truncated: the header needs {8 + n + end} bytes, the file has {size}; "
                             "an incomplete download?")
        return header
    except (OSError, ValueError, KeyError, TypeError, IndexError, struct.error) as exc:
        raise ModelLoadError(f"Weight file {str(path)!r} is not a valid safetensors file ({exc}).") from exc


def inspect_model(path: Path) -> ModelSpec:
    """Read ``config.json`` and the weight headers of a model folder; raise a typed error if unusable."""
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise ModelLoadError(f"{str(path)!r} has no config.json: it is not a Hugging Face-style model folder.")
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{str(cfg_path)!r} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise ModelLoadError(f"{str(cfg_path)!r} must hold a JSON object.")
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise ModelLoadError(f"{str(cfg_path)!r} has no 'model_type': the architecture is unknown.")

    is_vision = any(k in config for k in _VISION_KEYS)
    # Whether mlx-lm / mlx-vlm has a model of this type is asked of them when the model loads (their own
    # model-class lookups; importing them here would import mlx before the backend's speed setup).
    weight_files = sorted(path.glob("*.safetensors"))
    if not weight_files:
        raise ModelLoadError(f"{str(path)!r} has no *.safetensors weights (MLX models need safetensors).")
    weight_bytes = float_params = float_bytes = largest = 0
    for wf in weight_files:
        for name, info in _safetensors_header(wf).items():
            if name == "__metadata__":
                continue
            count = 1
            for d in info.get("shape", []):
                count *= int(d)
            nbytes = int(info["data_offsets"][1]) - int(info["data_offsets"][0])
            weight_bytes += nbytes
            largest = max(largest, nbytes)
            if info.get("dtype") in ("F32", "F16", "BF16", "F64"):
                float_params += count
                float_bytes += nbytes
    quant = config.get("quantization") or config.get("quantization_config")
    has_template = (path / "chat_template.jinja").is_file() or (path / "chat_template.json").is_file()
    tok_cfg = path / "tokenizer_config.json"
    if not has_template and tok_cfg.is_file():
        try:
            has_template = bool(json.loads(tok_cfg.read_text(encoding="utf-8")).get("chat_template"))
        except (OSError, ValueError):
            has_template = False
    return ModelSpec(
        path=path,
        config=config,
        kind="vision" if is_vision else "text",
        model_type=model_type,
        weight_files=weight_files,
        weight_bytes=weight_bytes,
        float_params=float_params,
        float_bytes=float_bytes,
        largest_tensor_bytes=largest,
        quantization=quant if isinstance(quant, dict) else None,
        has_chat_template=has_template,
    )


def read_chat_template(path: Path) -> str | None:
    """The chat template a model folder ships (``chat_template.jinja``, ``chat_template.json`` or
    ``tokenizer_config.json``), as text; ``None`` if it has none."""
    jinja = path / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    for name in ("chat_template.json", "tokenizer_config.json"):
        f = path / name
        if f.is_file():
            try:
                value = json.loads(f.read_text(encoding="utf-8")).get("chat_template")
            except (OSError, ValueError, AttributeError):
                continue
            if isinstance(value, list):  # named variants: the default one
                value = next((v.get("template") for v in value if isinstance(v, dict) and v.get("name") == "default"),
                             None)
            if isinstance(value, str):
                return value
    return None
