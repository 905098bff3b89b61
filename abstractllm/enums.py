"""String enums for configuration keys and provider capabilities.

Both are ``str`` enums, so a member and its value are interchangeable::

    create_llm("mlx", **{ModelParameter.MODEL: "m", ModelParameter.TEMPERATURE: 0.7})
    create_llm("mlx", model="m", temperature=0.7)          # the same
"""

from __future__ import annotations

from enum import Enum

__all__ = ["ModelParameter", "ModelCapability"]


class _StrEnum(str, Enum):
    def __str__(self) -> str:  # format like the plain string on every Python version
        return str(self.value)


class ModelParameter(_StrEnum):
    """Names of configuration keys (``create_llm``) and per-call generation parameters (``generate``)."""

    # Which model
    MODEL = "model"
    REVISION = "revision"
    TRUST_REMOTE_CODE = "trust_remote_code"
    # Generation (valid in create_llm as defaults and per call)
    MAX_TOKENS = "max_tokens"
    TEMPERATURE = "temperature"
    TOP_P = "top_p"
    TOP_K = "top_k"
    MIN_P = "min_p"
    REPETITION_PENALTY = "repetition_penalty"
    REPETITION_CONTEXT_SIZE = "repetition_context_size"
    SEED = "seed"
    STOP = "stop"
    # Loading and memory
    QUANTIZE = "quantize"
    DTYPE = "dtype"
    MEMORY_LIMIT = "memory_limit"
    PROMPT_CACHE_BYTES = "prompt_cache_bytes"
    MAX_KV_SIZE = "max_kv_size"
    PREFILL_STEP_SIZE = "prefill_step_size"
    # Vision and video
    MAX_IMAGE_PIXELS = "max_image_pixels"
    VIDEO_FPS = "video_fps"
    VIDEO_MAX_FRAMES = "video_max_frames"
    IMAGE_FETCH_TIMEOUT = "image_fetch_timeout"
    MAX_IMAGE_BYTES = "max_image_bytes"


class ModelCapability(_StrEnum):
    """What a provider (for its configured model) can do; checked before any work is done."""

    TEXT = "text"
    VISION = "vision"
    MULTI_IMAGE = "multi_image"
    VIDEO = "video"
    STREAMING = "streaming"
    ASYNC = "async"
    SYSTEM_PROMPT = "system_prompt"
    CHAT_HISTORY = "chat_history"
    STOP_SEQUENCES = "stop_sequences"
    SEED = "seed"
    PROMPT_CACHE = "prompt_cache"
    QUANTIZATION = "quantization"
