"""Video Swin's shifted-window attention through ``scaled_dot_product_attention``.

torchvision's ``ShiftedWindowAttention3d`` forms every window's full attention matrix with
explicit matmuls, adds the relative position bias and the shift mask, and takes a separate
softmax: several matrices of B * windows * heads * N * N floats per block (N = 392 for the
8x7x7 window), written and read again. Handing the same computation to
``torch.nn.functional.scaled_dot_product_attention`` lets PyTorch pick a fused kernel
(flash attention on the CPU when the bias needs no gradient, flash / memory-efficient
kernels on a GPU) and falls back to the plain computation otherwise.

On the CPU, training a stage whose relative position bias learns would otherwise fall back
to the plain computation (the fused CPU kernel gives no gradient for the bias), which keeps
every window's probabilities for the backward pass. There ``BiasedAttention`` runs the
fused forward and recomputes the probabilities in the backward pass a few windows at a time
(as flash attention does), giving the gradient of the bias as well: less time, and memory
of a few windows instead of the whole batch's matrices.

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
BACKWARD_BLOCK_BYTES = 8 * 2 ** 20  # N x N matrices recomputed at once in the backward pass
DENORMAL_EXPONENT = -87.0  # exp(-87) = 1.6e-38, just above float32's smallest normal


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


class BiasedAttention(torch.autograd.Function):
    """softmax(q k^T * scale + mask) v with gradients for q, k, v and the mask, on the CPU.

    q, k, v: (B, M, N, d) float32; mask: (1, M, N, N), the same for every batch item.
    Forward: the fused flash kernel, keeping only the log-sum-exp of each row. Backward:
    per block of matrices, P = exp(q k^T * scale + mask - lse), then the usual gradients;
    the mask's is the sum over the batch of dL/dscores.
    """

    @staticmethod
    def forward(ctx, q, k, v, mask, scale):
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            q, k, v, 0.0, False, attn_mask=mask, scale=scale)
        ctx.save_for_backward(q, k, v, mask, out, lse)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, mask, out, lse = ctx.saved_tensors
        scale = ctx.scale
        grad_out = grad_out.contiguous()
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        dmask = torch.zeros_like(mask) if ctx.needs_input_grad[3] else None
        # the sum over each row of dL/dout * out (the softmax's backward term)
        row_dot = (grad_out * out).sum(-1, keepdim=True)  # B, M, N, 1
        batch, matrices, n = q.shape[:3]
        per_block = max(1, BACKWARD_BLOCK_BYTES // (n * n * 4))
        rows = min(matrices, per_block)  # matrices of one batch item per block
        items = max(1, per_block // rows)  # batch items per block
        for b in range(0, batch, items):
            for m in range(0, matrices, rows):
                sl = (slice(b, b + items), slice(m, m + rows))
                probs = torch.matmul(q[sl], k[sl].transpose(-1, -2)).mul_(scale)
                probs.add_(mask[:, m:m + rows]).sub_(lse[sl].unsqueeze(-1))
                # exp(< -87) is below float32's normal range; producing such denormal
                # numbers costs x86 CPUs about 15x, and their value (< 2e-38) is nothing
                probs.clamp_(min=DENORMAL_EXPONENT).exp_()
                dv[sl] = torch.matmul(probs.transpose(-1, -2), grad_out[sl])
                dscores = torch.matmul(grad_out[sl], v[sl].transpose(-1, -2))
                dscores.sub_(row_dot[sl]).mul_(probs)  # dL/dscores, items, rows, N, N
                if dmask is not None:  # the mask is shared by the batch items
                    dmask[:, m:m + rows] += dscores.sum(0, keepdim=True)
                dq[sl] = torch.matmul(dscores, k[sl]).mul_(scale)
                dk[sl] = torch.matmul(dscores.transpose(-1, -2), q[sl]).mul_(scale)
        return dq, dk, dv, dmask, None


def attention(q, k, v, mask, dropout_p):
    """Scaled dot-product attention with an additive mask (1, M, N, N) over (B, M, N, d)."""
    if (q.device.type == 'cpu' and mask.requires_grad and torch.is_grad_enabled()
            and dropout_p == 0.0 and q.dtype == torch.float32):
        return BiasedAttention.apply(q.contiguous(), k.contiguous(), v.contiguous(),
                                     mask.contiguous(), q.shape[-1] ** -0.5)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(q.dtype),
                                          dropout_p=dropout_p)


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
        out = attention(q, k, v, mask, self.attention_dropout if self.training else 0.0)
        out = out.reshape(-1, heads, n, c // heads).transpose(1, 2).reshape(-1, n, c)
        out = F.linear(out, self.proj.weight, self.proj.bias)
        out = F.dropout(out, p=self.dropout, training=self.training)

        x = merge_windows(out, b, size, window)
        if any(shift):
            x = torch.roll(x, shifts=list(shift), dims=(1, 2, 3))
        return x[:, :t, :h, :w].contiguous()
