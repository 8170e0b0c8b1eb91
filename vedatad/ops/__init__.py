"""Operators: 1-D NMS, soft-NMS and score voting, no compiled code."""
from .nms import batched_nms, nms_1d, pairwise_iou, score_voting, soft_nms_1d

__all__ = ['batched_nms', 'nms_1d', 'soft_nms_1d', 'score_voting', 'pairwise_iou']
