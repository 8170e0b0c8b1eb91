"""Temporal encoders of ActionFormer: (B, C_in, T) features -> a feature pyramid.

arch = (#embedding convs, #stem blocks, #branch blocks). The stem keeps T; each branch
block halves it (scale_factor), so the output has 1 + arch[2] levels with strides
1, 2, 4, ... relative to the input.
"""
import torch
import torch.nn.functional as F
from torch import nn

from ..registry import MODELS
from .blocks import ConvBlock, LayerNorm, MaskedConv1D, TransformerBlock, sinusoid_encoding


def _zero_biases(module):
    # the reference starts every linear / conv bias of the encoder at zero
    if isinstance(module, (nn.Linear, nn.Conv1d)) and module.bias is not None:
        nn.init.zeros_(module.bias)


class _EmbeddingMixin:
    """Per-feature-type projections + embedding convs, shared by both encoders."""

    def _build_embedding(self, input_dim, embd_dim, embd_kernel_size, num_convs, with_ln):
        self.input_dim = input_dim
        if isinstance(input_dim, (list, tuple)):
            # several feature types (e.g. Ego4D SlowFast + Omnivore + EgoVLP) concatenated
            # on channels: project each to its own width, then work on the sum
            if not isinstance(embd_dim, (list, tuple)) or len(embd_dim) != len(input_dim):
                raise ValueError(f'input_dim {input_dim} is a list, so embd_dim must be a '
                                 f'list of the same length, got {embd_dim}')
            self.proj = nn.ModuleList(
                MaskedConv1D(c_in, c_out, 1) for c_in, c_out in zip(input_dim, embd_dim))
            in_dim = embd_dim = sum(embd_dim)
        else:
            self.proj = None
            in_dim = input_dim
        self.embd = nn.ModuleList()
        self.embd_norm = nn.ModuleList()
        for idx in range(num_convs):
            self.embd.append(MaskedConv1D(in_dim if idx == 0 else embd_dim, embd_dim,
                                          embd_kernel_size, padding=embd_kernel_size // 2,
                                          bias=not with_ln))
            self.embd_norm.append(LayerNorm(embd_dim) if with_ln else nn.Identity())
        self.out_channels = embd_dim
        return embd_dim

    def _embed(self, x, mask):
        # x: B, sum(input_dim) or input_dim, T -> B, embd_dim, T
        if self.proj is not None:
            parts = x.split(list(self.input_dim), dim=1)
            x = torch.cat([proj(part, mask)[0] for proj, part in zip(self.proj, parts)], dim=1)
        for conv, norm in zip(self.embd, self.embd_norm):
            x, mask = conv(x, mask)
            x = F.relu(norm(x))
        return x, mask

    def _pyramid(self, x, mask):
        """stem blocks at full rate, then one pyramid level per branch block."""
        for block in self.stem:
            x, mask = block(x, mask)
        feats, masks = [x], [mask]
        for block in self.branch:
            x, mask = block(x, mask)
            feats.append(x)
            masks.append(mask)
        return tuple(feats), tuple(masks)


@MODELS.register_module()
class ConvTransformerEncoder(_EmbeddingMixin, nn.Module):
    """Conv embedding -> transformer stem -> downsampling transformer branch."""

    def __init__(self, input_dim, embd_dim, n_head, embd_kernel_size, max_len,
                 arch=(2, 2, 5), mha_win_size=(-1,) * 6, scale_factor=2, with_ln=False,
                 attn_pdrop=0.0, proj_pdrop=0.0, path_pdrop=0.0, use_abs_pe=False,
                 use_rel_pe=False):
        super().__init__()
        if len(arch) != 3 or len(mha_win_size) != 1 + arch[2]:
            raise ValueError(f'arch {arch} needs 1 + arch[2] window sizes, got {mha_win_size}')
        dim = self._build_embedding(input_dim, embd_dim, embd_kernel_size, arch[0], with_ln)
        self.max_len = max_len
        self.use_abs_pe = use_abs_pe
        if use_abs_pe:
            # not a checkpoint entry: recomputed from max_len
            self.register_buffer('pos_embd', sinusoid_encoding(max_len, dim) / dim ** 0.5,
                                 persistent=False)
        block_args = dict(attn_pdrop=attn_pdrop, proj_pdrop=proj_pdrop, path_pdrop=path_pdrop,
                          use_rel_pe=use_rel_pe)
        self.stem = nn.ModuleList(
            TransformerBlock(dim, n_head, stride=1, mha_win_size=mha_win_size[0], **block_args)
            for _ in range(arch[1]))
        self.branch = nn.ModuleList(
            TransformerBlock(dim, n_head, stride=scale_factor, mha_win_size=mha_win_size[1 + i],
                             **block_args)
            for i in range(arch[2]))
        self.apply(_zero_biases)

    def _position_embedding(self, T):
        # training sequences are at most max_len; longer test sequences get the table
        # stretched to their (padded) length, as in the reference
        if T > self.max_len:
            if self.training:
                raise ValueError(f'training sequence of {T} steps exceeds max_seq_len '
                                 f'{self.max_len} (absolute position embedding)')
            return F.interpolate(self.pos_embd, T, mode='linear', align_corners=False)
        return self.pos_embd[:, :, :T]

    def forward(self, x, mask):
        # x: B, C_in, T   mask: B, 1, T  ->  tuples of (B, C, T / 2^l) and masks
        x, mask = self._embed(x, mask)
        if self.use_abs_pe:
            x = x + self._position_embedding(x.shape[-1]).to(x.dtype) * mask.to(x.dtype)
        return self._pyramid(x, mask)


@MODELS.register_module()
class ConvEncoder(_EmbeddingMixin, nn.Module):
    """All-convolution variant: conv embedding -> conv stem -> strided conv branch."""

    def __init__(self, input_dim, embd_dim, embd_kernel_size, arch=(2, 2, 5), scale_factor=2,
                 with_ln=False):
        super().__init__()
        if len(arch) != 3:
            raise ValueError(f'arch must have 3 entries, got {arch}')
        dim = self._build_embedding(input_dim, embd_dim, embd_kernel_size, arch[0], with_ln)
        self.stem = nn.ModuleList(ConvBlock(dim, 3, 1) for _ in range(arch[1]))
        self.branch = nn.ModuleList(ConvBlock(dim, 3, scale_factor) for _ in range(arch[2]))
        self.apply(_zero_biases)

    def forward(self, x, mask):
        # x: B, C_in, T   mask: B, 1, T  ->  tuples of (B, C, T / 2^l) and masks
        x, mask = self._embed(x, mask)
        return self._pyramid(x, mask)
