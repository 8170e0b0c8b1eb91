from . import video_swin  # noqa: F401
