"""Temporal Consistency Module (TALLFormer).

During end-to-end training most chunks of a window come from the memory bank (features of
an older backbone) and a few are fresh. A short strided 1-D conv reduction followed by a few
pre-LN transformer layers over the *whole* window lets every position look at both kinds and
reconcile them before the detector. Positions are encoded by a learned relative bias per head
(one value per offset in [-(L-1), L-1]), so the module is independent of the window start.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..registry import MODELS


class RelativePositionBias(nn.Module):
    """Learned bias b[h, i - j] added to attention logits; clipped beyond max_len - 1."""

    def __init__(self, num_heads, max_len):
        super().__init__()
        self.max_len = max_len
        self.relative_position_bias_table = nn.Parameter(torch.zeros(2 * max_len - 1, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, length):
        pos = torch.arange(length, device=self.relative_position_bias_table.device)
        offset = (pos[:, None] - pos[None, :]).clamp(-(self.max_len - 1), self.max_len - 1)
        bias = self.relative_position_bias_table[offset + self.max_len - 1]  # L, L, H
        return bias.permute(2, 0, 1)  # H, L, L


class RelPosAttention(nn.Module):
    """Multi-head self-attention with a relative position bias and a key padding mask."""

    def __init__(self, dim, num_heads, max_len, attn_drop=0.0, proj_drop=0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'tcm: dim {dim} is not divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.rel_bias = RelativePositionBias(num_heads, max_len)
        self.attn_drop = attn_drop
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x, valid):
        # x: B, L, C   valid: B, L (bool)
        B, L, C = x.shape
        q, k, v = self.qkv(x).reshape(B, L, 3, self.num_heads, C // self.num_heads).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # B, H, L, D
        bias = self.rel_bias(L).unsqueeze(0).to(q.dtype)  # 1, H, L, L
        # padded keys get -inf; a query row that is all padding still sees itself (no NaN)
        key_mask = valid[:, None, None, :] | torch.eye(L, dtype=torch.bool, device=x.device)
        bias = bias.masked_fill(~key_mask, float('-inf'))
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias, dropout_p=self.attn_drop if self.training else 0.0)
        out = out.transpose(1, 2).reshape(B, L, C)
        return self.proj_drop(self.proj(out))


class DropPath(nn.Module):
    """Stochastic depth on the residual branch, per sample."""

    def __init__(self, p=0.0):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand(x.shape[0], *([1] * (x.dim() - 1)), device=x.device) >= self.p
        return x * keep.to(x.dtype) / (1.0 - self.p)


class TCMLayer(nn.Module):
    """Pre-LN transformer layer: x + attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim, num_heads, max_len, mlp_ratio=4.0, drop=0.0, drop_path=0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = RelPosAttention(dim, num_heads, max_len, proj_drop=drop)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(drop),
                                 nn.Linear(hidden, dim), nn.Dropout(drop))
        self.drop_path = DropPath(drop_path)

    def forward(self, x, valid):
        x = x + self.drop_path(self.attn(self.norm1(x), valid))
        return x + self.drop_path(self.mlp(self.norm2(x)))


@MODELS.register_module()
class TemporalConsistencyModule(nn.Module):
    """Strided conv reduction (in_channels -> out_channels, total stride 2**num_reductions)
    followed by ``depth`` relative-position transformer layers over the whole window.

    Args:
        in_channels: backbone feature size (1024 for Swin-B).
        out_channels: size after reduction (512 in TALLFormer).
        num_reductions: number of stride-2 conv layers (2 → stride 4 as the original).
        depth: transformer layers; 0 switches the transformer off (reduction only).
        num_heads, max_len: attention heads and the longest sequence (after reduction) the
            relative bias table covers; longer sequences reuse the edge offsets.
    """

    def __init__(self, in_channels=1024, out_channels=512, num_reductions=2, depth=3,
                 num_heads=16, max_len=64, mlp_ratio=4.0, drop=0.0, drop_path=0.1):
        super().__init__()
        convs, ch = [], in_channels
        for i in range(num_reductions):
            convs.append(nn.Conv1d(ch, out_channels, kernel_size=3, stride=2, padding=1))
            ch = out_channels
        if num_reductions == 0 and in_channels != out_channels:
            convs.append(nn.Conv1d(in_channels, out_channels, kernel_size=1))
        self.reduction = nn.ModuleList(convs)
        self.stride = 2 ** num_reductions
        rates = torch.linspace(0, drop_path, depth).tolist() if depth else []
        self.layers = nn.ModuleList(
            TCMLayer(out_channels, num_heads, max_len, mlp_ratio, drop, r) for r in rates)
        self.out_channels = out_channels

    def reduce_mask(self, mask):
        """Valid mask at the reduced rate: a step is valid if its centre input row is."""
        return mask[:, ::self.stride]

    def forward(self, x, mask):
        # x: B, C_in, T   mask: B, T (bool)  ->  B, C_out, ceil(T / stride), reduced mask
        x = x * mask[:, None, :].to(x.dtype)  # padding must not leak in through the convs
        for i, conv in enumerate(self.reduction):
            x = conv(x)
            if i + 1 < len(self.reduction):
                x = F.relu(x)
        mask = self.reduce_mask(mask)
        x = x * mask[:, None, :].to(x.dtype)
        if self.layers:
            h = x.transpose(1, 2)  # B, L, C
            for layer in self.layers:
                h = layer(h, mask)
            x = h.transpose(1, 2) * mask[:, None, :].to(x.dtype)
        return x, mask
