"""Video Swin's shifted-window attention through ``scaled_dot_product_attention``.

torchvision's ``ShiftedWindowAttention3d`` forms every window's full attention matrix with
explicit matmuls, adds the relative position bias and the shift mask, and takes a separate
softmax: several matrices of B * windows * heads * N * N floats per block (N = 392 for the
8x7x7 window), written and read again. Handing the same computation to
``torch.nn.functional.scaled_dot_product_attention`` lets PyTorch pick a fused kernel
(flash attention on the CPU when the bias needs no gradient, flash / memory-efficient
kernels on a GPU) and falls back to the plain computation otherwise.

Same parameters, buffers and state-dict keys as torchvision's module; same mathematics
(scale 1/sqrt(head dim), bias from the relative position table, -100 between positions
that the cyclic shift brought from different regions, windows that shrink to small
inputs); outputs differ only by float rounding.
"""
from functools import lru_cache

import torch
import torch.nn.functional as F
from torchvision.models.video.swin_transformer import ShiftedWindowAttention3d

SHIFT_MASK_VALUE = -100.0  # the value Swin adds between regions (not -inf)


def fit_window(size, window, shift):
    """A window no larger than the input along each axis; no shift where it covers it."""
    window, shift = list(window), list(shift)
    for i in range(3):
        if size[i] <= window[i]:
            window[i], shift[i] = size[i], 0
    return tuple(window), tuple(shift)


def partition_windows(x, window):
    """x: (B, T, H, W, C), each size a multiple of the window -> (B * nW, N, C)."""
    b, t, h, w, c = x.shape
    wt, wh, ww = window
    x = x.view(b, t // wt, wt, h // wh, wh, w // ww, ww, c)
    return x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, wt * wh * ww, c)


def merge_windows(windows, b, size, window):
    """Inverse of ``partition_windows``: (B * nW, N, C) -> (B, T, H, W, C)."""
    t, h, w = size
    wt, wh, ww = window
    x = windows.view(b, t // wt, h // wh, w // ww, wt, wh, ww, -1)
    return x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, t, h, w, -1)


@lru_cache(maxsize=32)
def shift_mask(size, window, shift, device):
    """(nW, N, N) additive mask of a cyclically shifted, padded (T, H, W) grid: 0 between
    positions of the same region, ``SHIFT_MASK_VALUE`` between the regions that the roll
    brought together. Cached: it depends on shapes only."""
    region = torch.zeros(size, dtype=torch.long)
    for axis in range(3):
        # along each axis: [0, S - window) | [S - window, S - shift) | [S - shift, S)
        ids = torch.zeros(size[axis], dtype=torch.long)
        ids[size[axis] - window[axis]:] = 1
        ids[size[axis] - shift[axis]:] = 2
        region = region * 3 + ids.view([-1 if a == axis else 1 for a in range(3)])
    region = partition_windows(region[None, ..., None], window)[..., 0]  # nW, N
    different = region[:, :, None] != region[:, None, :]
    mask = torch.zeros(different.shape).masked_fill_(different, SHIFT_MASK_VALUE)
    return mask.to(device)


class WindowAttention3d(ShiftedWindowAttention3d):
    """Drop-in replacement of torchvision's module (built with the same arguments)."""

    def forward(self, x):
        # x: B, T, H, W, C
        b, t, h, w, c = x.shape
        window, shift = fit_window((t, h, w), self.window_size, self.shift_size)
        heads, n = self.num_heads, window[0] * window[1] * window[2]
        bias = self.get_relative_position_bias(list(window))  # 1, heads, N, N

        pad = [(-s) % k for s, k in zip((t, h, w), window)]
        x = F.pad(x, (0, 0, 0, pad[2], 0, pad[1], 0, pad[0]))
        size = tuple(x.shape[1:4])
        if any(shift):
            x = torch.roll(x, shifts=[-s for s in shift], dims=(1, 2, 3))
        windows = partition_windows(x, window)  # B*nW, N, C
        qkv = F.linear(windows, self.qkv.weight, self.qkv.bias)
        q, k, v = qkv.view(-1, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)  # B*nW, h, N, d

        if any(shift):
            # windows and heads share the batch-of-matrices axis so that the (nW * heads)
            # masks broadcast over the batch: no B-fold copy of the mask
            masks = shift_mask(size, window, shift, x.device)  # nW, N, N
            num_windows = masks.shape[0]
            mask = (bias + masks[:, None]).reshape(1, num_windows * heads, n, n)
            q, k, v = (z.reshape(b, num_windows * heads, n, -1) for z in (q, k, v))
        else:
            mask = bias
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask.to(q.dtype),
            dropout_p=self.attention_dropout if self.training else 0.0)
        out = out.reshape(-1, heads, n, c // heads).transpose(1, 2).reshape(-1, n, c)
        out = F.linear(out, self.proj.weight, self.proj.bias)
        out = F.dropout(out, p=self.dropout, training=self.training)

        x = merge_windows(out, b, size, window)
        if any(shift):
            x = torch.roll(x, shifts=list(shift), dims=(1, 2, 3))
        return x[:, :t, :h, :w].contiguous()
