"""Loading and preprocessing of media inputs (images, video frames) for vision models.

The heavy parts (Pillow, numpy, PyAV) are imported lazily by the submodules that need them; this package
itself imports nothing heavy.
"""

from .kinds import is_video_input

__all__ = ["is_video_input"]
