"""Models: blocks, backbones, encoder/neck, heads, losses, TCM, detectors.

Importing this package registers every model class in ``vedatad.registry.MODELS``.
"""
from ..registry import MODELS
from . import (backbones, blocks, detectors, encoders, heads, losses,  # noqa: F401
               necks, point_generator, tcm)


def build_model(cfg):
    """Build any registered model (detector, backbone, neck, head) from a config dict."""
    return MODELS.build(cfg)


def build_backbone(cfg):
    """Build a video backbone, e.g. ``dict(type='VideoSwin', arch='tiny')``."""
    return MODELS.build(cfg)


__all__ = ['build_model', 'build_backbone', 'MODELS']
