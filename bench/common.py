"""What every bench script does first: the offline environment for models ``abstractllm.testing`` builds.

Bench scripts run as ``python bench/<name>.py``; each puts this folder first on ``sys.path`` and imports it as
``common``."""

from __future__ import annotations

import os


def offline_env(cache_dir: str | None = None) -> None:
    """Use ``cache_dir`` for built models (``$ABSTRACTLLM_DEMO_CACHE``) when given; never reach the Hugging
    Face hub; keep the tokenizers library single-threaded (it warns once a process forks otherwise). Call it
    before ``abstractllm.providers.mlx.backend.enable_fast_blas`` and before anything imports MLX."""
    if cache_dir:
        os.environ["ABSTRACTLLM_DEMO_CACHE"] = cache_dir
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
