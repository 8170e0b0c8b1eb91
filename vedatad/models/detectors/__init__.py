from . import actionformer, tallformer  # noqa: F401
