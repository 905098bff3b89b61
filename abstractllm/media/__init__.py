"""Loading and preprocessing of media inputs (images, video frames) for vision models.

Nothing heavy is imported here: Pillow, numpy and PyAV are imported by the functions that need them.

    from abstractllm.media import load_image
    img = load_image("photo.jpg", max_pixels=1_000_000)   # an RGB PIL.Image, EXIF-oriented, bounded
"""

from .images import ImagePlan, decode_image, load_image, plan_image, to_rgb
from .kinds import is_video_input
from .memory import MediaMemoryEstimate, check_memory_requirements
from .sources import MediaSource, read_source
from .video import VideoPlan, decode_video, load_video, plan_video

__all__ = [
    "is_video_input",
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
