"""Media of a vision request, for the vision adapter: every image and video of the conversation read,
planned from its header, checked (sizes, the model's processor bounds, memory: decoded pixels plus the
model's own vision work) and only then decoded. Runs on the provider's worker thread."""

from __future__ import annotations

from typing import Any, Protocol

from ...enums import ModelCapability
from ...exceptions import ImageProcessingError, InvalidParameterError, UnsupportedFeatureError
from ...params import PARAMS
from ...types import GenerationRequest
from .source import ModelSpec

__all__ = ["load_media", "vision_bytes", "resize_factor", "processor_max_pixels", "VisionModel"]


class VisionModel(Protocol):
    """What this module reads of a vision adapter (``vision.VisionAdapter`` is one): defined here, where it is
    used, so that this module does not import ``vision`` (which imports this one)."""

    spec: ModelSpec
    config: dict[str, Any]
    on_gpu: bool
    processor: Any
    caps: set[ModelCapability]


def _default(name: str) -> Any:
    spec = PARAMS[name]
    return spec.validate(name, spec.default)


def processor_max_pixels(adapter: VisionModel, video: bool = False) -> int | None:
    """The model processor's own bound on an image's (or a video frame's) pixels, if it has one."""
    proc = getattr(adapter.processor, "video_processor" if video else "image_processor", None)
    value = getattr(proc, "max_pixels", None)
    return int(value) if isinstance(value, (int, float)) and value > 0 else None


def vision_bytes(adapter: VisionModel, width: int, height: int, frames: int = 1) -> int:
    """Model-specific bytes of one image's (or video's) vision work: processor tensors, vision tower
    activations and attention, and the vision tokens in the KV cache."""
    vc = adapter.spec.config.get("vision_config") or {}
    tc = adapter.spec.config.get("text_config") or adapter.spec.config
    patch = int(vc.get("patch_size") or 14)
    merge = int(vc.get("spatial_merge_size") or 2)
    temporal = int(vc.get("temporal_patch_size") or 1)
    tokens = 0
    try:
        from mlx_vlm.utils import estimate_num_image_tokens

        tokens = estimate_num_image_tokens(adapter.processor, height, width)
    except Exception:
        tokens = max(1, (width * height) // (patch * merge) ** 2)
    groups = max(1, -(-frames // max(temporal, 1)))  # temporal patch groups (1 for an image)
    group_patches = tokens * merge * merge
    tokens *= groups
    patches = group_patches * groups
    embed = int(vc.get("embed_dim") or vc.get("hidden_size") or 1024)
    heads = int(vc.get("num_heads") or vc.get("num_attention_heads") or 16)
    layers = int(tc.get("num_hidden_layers") or 24)
    kv_heads = int(tc.get("num_key_value_heads") or tc.get("num_attention_heads") or 8)
    head_dim = int(
        tc.get("head_dim") or (int(tc.get("hidden_size") or 1024) // int(tc.get("num_attention_heads") or 8))
    )
    pixel_tensor = patches * 3 * max(temporal, 1) * patch * patch * 4
    # Vision attention runs per image / frame group; on CPUs, MLX's attention materializes the
    # scores (heads x n x n floats), on GPUs its fused kernel does not.
    scores = 0 if adapter.on_gpu else groups * heads * group_patches * group_patches * 4
    tower = patches * embed * 4 * 8 + scores
    kv = tokens * layers * 2 * kv_heads * head_dim * 4
    return pixel_tensor + tower + kv


def resize_factor(adapter: VisionModel) -> int:
    """The side, in pixels, that frames are resized in multiples of: the vision patch size times the
    spatial merge size, from the model's video (or image) processor, else from ``vision_config``."""
    vc = adapter.spec.config.get("vision_config") or {}
    for name in ("video_processor", "image_processor"):
        proc = getattr(adapter.processor, name, None)
        patch, merge = getattr(proc, "patch_size", None), getattr(proc, "merge_size", None)
        if isinstance(patch, int) and patch > 0:
            return patch * (merge if isinstance(merge, int) and merge > 0 else 1)
    patch = vc.get("patch_size") or vc.get("spatial_patch_size")
    merge = vc.get("spatial_merge_size") or 1
    return int(patch) * int(merge) if isinstance(patch, int) and isinstance(merge, int) else 1


def _plan_media(request: GenerationRequest, adapter: VisionModel) -> tuple[list[Any], list[Any], list[int], list[int]]:
    """Every image and video of the conversation read and planned from its header (nothing decoded yet), and
    how many of each every message holds."""
    from ...media.images import plan_image
    from ...media.sources import read_source
    from ...media.video import plan_video

    p = request.params
    max_pixels = int(p.get("max_image_pixels") or _default("max_image_pixels"))
    proc_max = processor_max_pixels(adapter)
    image_pixels = min(max_pixels, proc_max) if proc_max else max_pixels
    video_max = processor_max_pixels(adapter, video=True)
    frame_pixels = min(max_pixels, video_max) if video_max else max_pixels
    max_bytes = int(p.get("max_image_bytes") or _default("max_image_bytes"))
    timeout = float(p.get("image_fetch_timeout") or _default("image_fetch_timeout"))
    image_plans, video_plans, per_msg_images, per_msg_videos = [], [], [], []
    for i, msg in enumerate(request.messages):
        if (msg.images or msg.videos) and msg.role != "user":
            raise InvalidParameterError(
                f"messages[{i}] ({msg.role}) holds media; only user messages can carry images or video.",
                param="messages",
            )
        for item in msg.images:
            image_plans.append(
                plan_image(read_source(item, max_bytes=max_bytes, timeout=timeout), max_pixels=image_pixels)
            )
        for item in msg.videos:
            source = read_source(item, max_bytes=max_bytes * 10, timeout=timeout, accept=("video/",))
            video_plans.append(
                plan_video(
                    source,
                    fps=float(p.get("video_fps") or _default("video_fps")),
                    max_frames=int(p.get("video_max_frames") or _default("video_max_frames")),
                    max_pixels=frame_pixels,
                )
            )
        per_msg_images.append(len(msg.images))
        per_msg_videos.append(len(msg.videos))
    return image_plans, video_plans, per_msg_images, per_msg_videos


def _check_plans(adapter: VisionModel, image_plans: list[Any], video_plans: list[Any]) -> None:
    """The plans against the model (one image for single-image families, a video frame's smallest side) and the
    memory (decoded pixels plus the model's own vision work)."""
    import mlx.core as mx

    from ...media.memory import check_memory_requirements

    if len(image_plans) > 1 and ModelCapability.MULTI_IMAGE not in adapter.caps:
        raise UnsupportedFeatureError(
            f"{adapter.spec.model_type} models take one image per request in mlx-vlm; got {len(image_plans)}."
        )
    factor = resize_factor(adapter)
    for vp in video_plans:
        if min(vp.output_size) < factor:
            raise ImageProcessingError(
                f"{vp.label}: frames of {vp.output_size[0]}x{vp.output_size[1]} are too small; video frames "
                f"need at least {factor} pixels on each side."
            )
    vision = sum(vision_bytes(adapter, *pl.output_size) for pl in image_plans)
    vision += sum(vision_bytes(adapter, *vp.output_size, frames=len(vp.times)) for vp in video_plans)
    check_memory_requirements(
        image_plans,
        extra_decode_bytes=max([vp.decode_bytes for vp in video_plans] + [0]),
        extra_output_bytes=sum(vp.output_bytes for vp in video_plans),
        vision_bytes=vision,
        memory_limit=adapter.config.get("memory_limit"),
        in_use=int(mx.get_active_memory()),
    )


def load_media(request: GenerationRequest, adapter: VisionModel) -> tuple[list[Any], list[Any], list[int], list[int]]:
    """Read, check (sizes, memory) and decode every image and video of the conversation, in order."""
    from ...media.images import decode_image
    from ...media.video import decode_video

    image_plans, video_plans, per_msg_images, per_msg_videos = _plan_media(request, adapter)
    _check_plans(adapter, image_plans, video_plans)
    images = [decode_image(pl) for pl in image_plans]
    videos = [decode_video(vp) for vp in video_plans]
    return images, videos, per_msg_images, per_msg_videos
