"""String enums: configuration keys, provider capabilities and chat roles.

All are ``str`` enums, so a member and its value are interchangeable::

    create_llm("mlx", **{ModelParameter.MODEL: "m", ModelParameter.TEMPERATURE: 0.7})
    create_llm("mlx", model="m", temperature=0.7)          # the same

AbstractLLM 1.x names are members too (``ModelParameter.SYSTEM_PROMPT``, ``ModelCapability.MAX_TOKENS``,
``MessageRole``); 1.x capability strings look up their member (``ModelCapability("supports_vision") is
ModelCapability.VISION``). Which providers implement which key is declared in ``abstractllm.params`` (each
provider's ``accepted_config`` / ``ignored_config`` is derived from it); see docs/migration.md.
"""

from __future__ import annotations

from enum import Enum, IntEnum

__all__ = ["ModelParameter", "ModelCapability", "MessageRole", "RequestPriority"]


class _StrEnum(str, Enum):
    def __str__(self) -> str:  # format like the plain string on every Python version
        return str(self.value)


class ModelParameter(_StrEnum):
    """Names of configuration keys (``create_llm``) and per-call generation parameters (``generate``)."""

    # Which model, and where it is served
    MODEL = "model"
    REVISION = "revision"
    TRUST_REMOTE_CODE = "trust_remote_code"
    API_KEY = "api_key"
    BASE_URL = "base_url"
    ORGANIZATION = "organization"
    TIMEOUT = "timeout"
    REQUEST_TIMEOUT = "request_timeout"
    MAX_RETRIES = "max_retries"
    RETRY_COUNT = "retry_count"
    PROXY = "proxy"
    USER = "user"
    # Generation (valid in create_llm as defaults and per call)
    SYSTEM_PROMPT = "system_prompt"
    MAX_TOKENS = "max_tokens"
    MAX_OUTPUT_TOKENS = "max_output_tokens"
    TEMPERATURE = "temperature"
    TOP_P = "top_p"
    TOP_K = "top_k"
    MIN_P = "min_p"
    REPETITION_PENALTY = "repetition_penalty"
    REPETITION_CONTEXT_SIZE = "repetition_context_size"
    FREQUENCY_PENALTY = "frequency_penalty"
    PRESENCE_PENALTY = "presence_penalty"
    LOGIT_BIAS = "logit_bias"
    SEED = "seed"
    STOP = "stop"
    STOP_TOKEN_IDS = "stop_token_ids"
    MIN_TOKENS = "min_tokens"
    LOGPROBS = "logprobs"
    TOP_LOGPROBS = "top_logprobs"
    PRIORITY = "priority"
    TOOLS = "tools"
    TOOL_CHOICE = "tool_choice"
    RESPONSE_FORMAT = "response_format"
    N = "n"
    # Context management (1.x)
    MAX_INPUT_TOKENS = "max_input_tokens"
    CONTEXT_WINDOW = "context_window"
    TRUNCATION_STRATEGY = "truncation_strategy"
    # Loading and memory
    QUANTIZE = "quantize"
    LOAD_IN_4BIT = "load_in_4bit"
    LOAD_IN_8BIT = "load_in_8bit"
    DTYPE = "dtype"
    DEVICE = "device"
    DEVICE_MAP = "device_map"
    CACHE_DIR = "cache_dir"
    MEMORY_LIMIT = "memory_limit"
    PROMPT_CACHE_BYTES = "prompt_cache_bytes"
    PROMPT_CACHE_DIR = "prompt_cache_dir"
    PROMPT_CACHE_DISK_BYTES = "prompt_cache_disk_bytes"
    MAX_KV_SIZE = "max_kv_size"
    KV_BITS = "kv_bits"
    KV_GROUP_SIZE = "kv_group_size"
    QUANTIZED_KV_START = "quantized_kv_start"
    PREFILL_STEP_SIZE = "prefill_step_size"
    # Batching engine
    MAX_BATCH_SIZE = "max_batch_size"
    MAX_QUEUE_SIZE = "max_queue_size"
    PREFILL_CHUNK_SIZE = "prefill_chunk_size"
    # Several machines (mlx.launch)
    DISTRIBUTED = "distributed"
    DISTRIBUTED_TIMEOUT = "distributed_timeout"
    # Inputs: images, video, text files
    IMAGE = "image"
    IMAGES = "images"
    IMAGE_DETAIL = "image_detail"
    MAX_IMAGE_PIXELS = "max_image_pixels"
    VIDEO_FPS = "video_fps"
    VIDEO_MAX_FRAMES = "video_max_frames"
    IMAGE_FETCH_TIMEOUT = "image_fetch_timeout"
    MAX_IMAGE_BYTES = "max_image_bytes"
    MAX_TEXT_FILE_BYTES = "max_text_file_bytes"
    # Reasoning models
    THINKING = "thinking"
    THINKING_BUDGET = "thinking_budget"
    CHAT_TEMPLATE_KWARGS = "chat_template_kwargs"
    # Safety and logging (1.x; accepted as documented no-ops by the local provider)
    CONTENT_FILTER = "content_filter"
    MODERATION = "moderation"
    LOGGING_ENABLED = "logging_enabled"


class ModelCapability(_StrEnum):
    """What a provider (for its configured model) can do; checked before any work is done.

    ``get_capabilities()`` answers with a ``Capabilities`` mapping: the supported members map to ``True``
    (``MAX_TOKENS`` to the context length), every other member to ``False``.
    """

    TEXT = "text"
    VISION = "vision"
    MULTI_IMAGE = "multi_image"
    VIDEO = "video"
    STREAMING = "streaming"
    ASYNC = "async"
    SYSTEM_PROMPT = "system_prompt"
    CHAT_HISTORY = "chat_history"
    MULTI_TURN = "chat_history"  # 1.x name of CHAT_HISTORY (an alias: the same member)
    STOP_SEQUENCES = "stop_sequences"
    SEED = "seed"
    PROMPT_CACHE = "prompt_cache"
    QUANTIZATION = "quantization"
    MAX_TOKENS = "max_tokens"  # the value is the context length in tokens
    FUNCTION_CALLING = "function_calling"
    TOOL_USE = "tool_use"
    JSON_MODE = "json_mode"
    EMBEDDINGS = "embeddings"
    PARALLEL_INFERENCE = "parallel_inference"
    AUDIO_PROCESSING = "audio_processing"
    FINE_TUNING = "fine_tuning"
    MULTILINGUAL = "multilingual"
    RAG = "rag"
    IMAGE_GENERATION = "image_generation"

    @classmethod
    def _missing_(cls, value: object) -> "ModelCapability | None":
        # 1.x spelled most capabilities "supports_<name>" ("supports_vision", "supports_multi_turn", ...)
        if isinstance(value, str):
            name = value[len("supports_"):] if value.startswith("supports_") else value
            member = cls.__members__.get(name.upper())  # by member name: "supports_multi_turn" -> MULTI_TURN
            if member is not None:
                return member
            if name != value:
                try:
                    return cls(name)
                except ValueError:
                    return None
        return None


class MessageRole(_StrEnum):
    """Role of a chat message."""

    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


class RequestPriority(IntEnum):
    """Admission priority of a request in a batching provider (``priority=``): higher is admitted first;
    equal priorities keep their arrival order; a waiting request gains one level per
    ``PRIORITY_AGING_S`` seconds of waiting (``abstractllm.params``), so a low one is never starved."""

    LOW = 0
    NORMAL = 1
    HIGH = 2
