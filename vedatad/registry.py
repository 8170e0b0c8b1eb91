"""Registries: every buildable object (model, dataset, transform, ...) is named here.

Configs refer to classes by name (``dict(type='ActionFormer', ...)``); the builders below
turn such dicts into objects. Importing the owning sub-package registers its classes.
"""
from mmengine.registry import Registry

MODELS = Registry('model', locations=['vedatad.models'])
DATASETS = Registry('dataset', locations=['vedatad.data'])
TRANSFORMS = Registry('transform', locations=['vedatad.data'])
COLLATE_FUNCTIONS = Registry('collate_function', locations=['vedatad.data'])


def build_model(cfg):
    """Build a model (detector, backbone, head, ...) from a config dict."""
    return MODELS.build(cfg)


def build_dataset(cfg):
    """Build a dataset from a config dict."""
    return DATASETS.build(cfg)


def build_transform(cfg):
    """Build one transform from a config dict."""
    return TRANSFORMS.build(cfg)
