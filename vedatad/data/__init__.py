"""Data: annotations, feature datasets, video readers, transforms, video datasets, the
generic datasets for your own data.

Importing this package registers every dataset, transform and collate function.
"""
from . import (annotations, feature_datasets, generic_datasets,  # noqa: F401
               synthetic_features, transforms, video_dataset, video_readers)
