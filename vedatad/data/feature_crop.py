"""Random training crops of a feature sequence, keeping the actions that survive the cut.

Same rule as the ActionFormer release: a crop of at most ``max_seq_len`` steps (or, with
``crop_ratio``, a random fraction of a short video) is drawn until at least one action keeps
``trunc_thresh`` of its length inside the crop (enlarged by half a clip on each side, since
feature ``i`` sees frames around its centre). Kept actions are clipped to the crop and shifted
to its start. Random draws use Python's ``random`` so a seeded run repeats its crops.
"""
import random

import torch

MAX_CROP_TRIALS = 200


def crop_length(feat_len, max_seq_len, crop_ratio):
    """Length of the crop to draw, or None when the whole sequence is kept."""
    if feat_len > max_seq_len:
        return max_seq_len
    if crop_ratio is None:
        return None
    low = max(round(crop_ratio[0] * feat_len), 1)
    high = min(round(crop_ratio[1] * feat_len), feat_len)
    length = random.randint(low, high)
    return None if length == feat_len else length


def _overlap(segments, start, end, offset):
    """Parts of ``segments`` (N, 2) inside [start - offset, end + offset] and their kept ratio."""
    left = torch.clamp(segments[:, 0], min=start - offset)
    right = torch.clamp(segments[:, 1], max=end + offset)
    inter = (right - left).clamp(min=0)
    ratio = inter / (segments[:, 1] - segments[:, 0]).abs()
    return left, right, ratio


def crop_item(item, max_seq_len, trunc_thresh, offset, crop_ratio=None,
              max_trials=MAX_CROP_TRIALS):
    """Crop a dataset item's ``feats`` (C, T) and its ``segments`` (N, 2, feature steps).

    Returns the item itself when nothing is cut, else a new dict.
    """
    feats, segments = item['feats'], item['segments']
    length = crop_length(feats.shape[1], max_seq_len, crop_ratio)
    if length is None:
        return item
    for _ in range(max_trials):
        start = random.randint(0, feats.shape[1] - length)
        left, right, ratio = _overlap(segments, float(start), float(start + length), offset)
        keep = ratio >= trunc_thresh
        if keep.any():
            break
    cropped = dict(item)
    cropped['feats'] = feats[:, start:start + length].clone()
    cropped['segments'] = torch.stack((left[keep], right[keep]), dim=1) - start
    cropped['labels'] = item['labels'][keep].clone()
    return cropped
