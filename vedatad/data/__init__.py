"""Data: annotations, feature datasets, video readers, transforms, video datasets.

Importing this package registers every dataset, transform and collate function.
"""
from . import (annotations, feature_datasets, synthetic_features, transforms,  # noqa: F401
               video_dataset, video_readers)
