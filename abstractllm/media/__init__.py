"""Loading and preprocessing of media inputs (images, video frames) for vision models.

Nothing heavy is imported here: Pillow, numpy and PyAV are imported by the functions that need them.

    from abstractllm.media import load_image
    img = load_image("photo.jpg", max_pixels=1_000_000)   # an RGB PIL.Image, EXIF-oriented, bounded
"""

import importlib
from typing import Any

#: attribute -> submodule that defines it (imported on first use: importing this package stays cheap)
_WHERE = {
    "ImagePlan": "images", "decode_image": "images", "load_image": "images", "plan_image": "images",
    "to_rgb": "images", "is_video_input": "kinds", "is_audio_input": "kinds", "MediaMemoryEstimate": "memory",
    "check_memory_requirements": "memory", "MediaSource": "sources", "read_source": "sources",
    "VideoPlan": "video", "decode_video": "video", "load_video": "video", "plan_video": "video",
    # AbstractLLM 1.x's media classes (thin wrappers: abstractllm.media.legacy)
    "MediaFactory": "legacy", "MediaInput": "legacy", "ImageInput": "legacy", "TextInput": "legacy",
    "TabularInput": "legacy",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "is_video_input",
    "is_audio_input",
    "read_source",
    "MediaSource",
    "load_image",
    "plan_image",
    "decode_image",
    "to_rgb",
    "ImagePlan",
    "check_memory_requirements",
    "MediaMemoryEstimate",
    "load_video",
    "plan_video",
    "decode_video",
    "VideoPlan",
]
