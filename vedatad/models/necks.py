"""Necks: turn the encoder's pyramid into the features the heads see.

Both take and return tuples of (B, C, T_l) features with (B, 1, T_l) masks, keeping the
levels start_level .. end_level - 1.
"""
import torch.nn.functional as F
from torch import nn

from ..registry import MODELS
from .blocks import LayerNorm, MaskedConv1D


def _level_range(num_levels, start_level, end_level):
    end_level = num_levels if end_level == -1 else end_level
    if not 0 <= start_level < end_level <= num_levels:
        raise ValueError(f'bad pyramid levels start={start_level} end={end_level} '
                         f'for {num_levels} encoder levels')
    return range(start_level, end_level)


@MODELS.register_module()
class IdentityNeck(nn.Module):
    """Only a LayerNorm per level (the default ActionFormer neck)."""

    def __init__(self, in_channels, out_channel, scale_factor=2.0, start_level=0,
                 end_level=-1, with_ln=True):
        super().__init__()
        self.levels = _level_range(len(in_channels), start_level, end_level)
        for level in self.levels:
            if in_channels[level] != out_channel:
                raise ValueError(f'identity neck needs in_channels == out_channel, got '
                                 f'{in_channels[level]} != {out_channel} at level {level}')
        self.fpn_norms = nn.ModuleList(
            LayerNorm(out_channel) if with_ln else nn.Identity() for _ in self.levels)

    def forward(self, feats, masks):
        out_feats = tuple(norm(feats[lvl]) for norm, lvl in zip(self.fpn_norms, self.levels))
        return out_feats, tuple(masks[lvl] for lvl in self.levels)


@MODELS.register_module()
class FPN1D(nn.Module):
    """Feature pyramid: 1x1 laterals, top-down nearest upsampling, depthwise 3-tap conv."""

    def __init__(self, in_channels, out_channel, scale_factor=2.0, start_level=0,
                 end_level=-1, with_ln=True):
        super().__init__()
        self.levels = _level_range(len(in_channels), start_level, end_level)
        self.scale_factor = scale_factor
        self.lateral_convs = nn.ModuleList()
        self.fpn_convs = nn.ModuleList()
        self.fpn_norms = nn.ModuleList()
        for level in self.levels:
            # no bias before a LayerNorm
            self.lateral_convs.append(
                MaskedConv1D(in_channels[level], out_channel, 1, bias=not with_ln))
            self.fpn_convs.append(MaskedConv1D(out_channel, out_channel, 3, padding=1,
                                               groups=out_channel, bias=not with_ln))
            self.fpn_norms.append(LayerNorm(out_channel) if with_ln else nn.Identity())

    def forward(self, feats, masks):
        masks = [masks[lvl] for lvl in self.levels]
        laterals = [conv(feats[lvl], mask)[0]
                    for conv, lvl, mask in zip(self.lateral_convs, self.levels, masks)]
        # top-down: add each coarser level, upsampled, into the next finer one
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], scale_factor=self.scale_factor, mode='nearest')
        out_feats, out_masks = [], []
        for conv, norm, x, mask in zip(self.fpn_convs, self.fpn_norms, laterals, masks):
            x, mask = conv(x, mask)
            out_feats.append(norm(x))
            out_masks.append(mask)
        return tuple(out_feats), tuple(out_masks)
