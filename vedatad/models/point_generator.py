"""Anchor points of the pyramid: one point per step of every level.

A point is a row (t, reg_min, reg_max, stride): its time t in input feature steps
(t = i * stride at level step i), the regression range it is responsible for (action
extents in input steps), and its level's stride.
"""
import torch
from torch import nn

from ..registry import MODELS


@MODELS.register_module()
class PointGenerator(nn.Module):
    """Points are computed on demand, so any sequence length works (nothing is buffered)."""

    def __init__(self, fpn_strides, regression_range):
        super().__init__()
        if len(fpn_strides) != len(regression_range):
            raise ValueError(f'{len(fpn_strides)} pyramid strides but '
                             f'{len(regression_range)} regression ranges')
        self.fpn_strides = list(fpn_strides)
        self.regression_range = [tuple(float(v) for v in r) for r in regression_range]

    def forward(self, level_lengths, device=None):
        # level_lengths: T_l per level -> list of (T_l, 4) float tensors
        points = []
        for length, stride, (lo, hi) in zip(level_lengths, self.fpn_strides,
                                            self.regression_range):
            t = torch.arange(0, length * stride, stride, device=device, dtype=torch.float)
            extra = torch.tensor([lo, hi, float(stride)], device=device).expand(length, 3)
            points.append(torch.cat([t[:, None], extra], dim=1))
        return points
