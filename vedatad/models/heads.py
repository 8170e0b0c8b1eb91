"""Classification and regression heads, shared across all pyramid levels.

Both run (num_layers - 1) masked convs (+ optional LayerNorm, ReLU) and a final masked
conv on every level; inputs are tuples of (B, C, T_l) with (B, 1, T_l) masks.
"""
import torch.nn.functional as F
from torch import nn

from ..registry import MODELS
from .blocks import LayerNorm, MaskedConv1D, Scale, prior_bias

EMPTY_CLASS_PROB = 1e-6  # initial probability of classes without training data


class _ConvTower(nn.Module):
    """The shared conv layers before a head's output conv."""

    def _build_tower(self, input_dim, feat_dim, num_layers, kernel_size, with_ln):
        self.head = nn.ModuleList()
        self.norm = nn.ModuleList()
        for idx in range(num_layers - 1):
            self.head.append(MaskedConv1D(input_dim if idx == 0 else feat_dim, feat_dim,
                                          kernel_size, padding=kernel_size // 2,
                                          bias=not with_ln))
            self.norm.append(LayerNorm(feat_dim) if with_ln else nn.Identity())

    def _tower(self, x, mask):
        for conv, norm in zip(self.head, self.norm):
            x = F.relu(norm(conv(x, mask)[0]))
        return x


@MODELS.register_module()
class ClsHead(_ConvTower):
    """Per-point class logits, (B, num_classes, T_l) per level."""

    def __init__(self, input_dim, feat_dim, num_classes, prior_prob=0.01, num_layers=3,
                 kernel_size=3, with_ln=False, empty_cls=()):
        super().__init__()
        self._build_tower(input_dim, feat_dim, num_layers, kernel_size, with_ln)
        self.cls_head = MaskedConv1D(feat_dim, num_classes, kernel_size,
                                     padding=kernel_size // 2)
        # start every class at a low probability so the focal loss is stable early on
        if prior_prob > 0:
            nn.init.constant_(self.cls_head.conv.bias, prior_bias(prior_prob))
        # classes absent from the training set: keep them (almost) never firing
        for idx in empty_cls:
            nn.init.constant_(self.cls_head.conv.bias[idx], prior_bias(EMPTY_CLASS_PROB))

    def forward(self, feats, masks):
        return tuple(self.cls_head(self._tower(x, m), m)[0] for x, m in zip(feats, masks))


@MODELS.register_module()
class RegHead(_ConvTower):
    """Per-point distances to the action start / end in units of the level stride,
    (B, 2, T_l) per level, non-negative (ReLU after a learnable per-level Scale)."""

    def __init__(self, input_dim, feat_dim, fpn_levels, num_layers=3, kernel_size=3,
                 with_ln=False):
        super().__init__()
        self._build_tower(input_dim, feat_dim, num_layers, kernel_size, with_ln)
        self.scale = nn.ModuleList(Scale() for _ in range(fpn_levels))
        self.offset_head = MaskedConv1D(feat_dim, 2, kernel_size, padding=kernel_size // 2)

    def forward(self, feats, masks):
        if len(feats) != len(self.scale):
            raise ValueError(f'{len(feats)} pyramid levels, head built for {len(self.scale)}')
        return tuple(F.relu(scale(self.offset_head(self._tower(x, m), m)[0]))
                     for scale, x, m in zip(self.scale, feats, masks))
