"""Masked self-attention kernels: global and local sliding-window.

Local attention lets step i see only steps i - w//2 .. i + w//2. Masking follows the official
ActionFormer release so that its checkpoints give the same outputs:
  * keys at padded steps get an additive -1e4 (softmax weight exactly 0 in float32),
  * keys outside the sequence (window over the border) get no weight at all,
  * attention rows of padded queries are zeroed and the output is zeroed at padded steps.

Local attention is computed block-wise: queries are cut into blocks of b = 2 * (w // 2)
steps and each block attends to its b + 2 * (w // 2) surrounding keys, so time and memory
are linear in T (about 2x the band's work instead of T x T).
"""
import math

import torch
import torch.nn.functional as F

PAD_KEY_BIAS = -1e4      # padded (masked) key: what the reference adds
OUTSIDE_BIAS = -1e9      # key beyond the sequence border: weight exactly 0, never NaN


def _key_bias(kv_mask):
    """Additive bias per key, float32: 0 for valid steps, PAD_KEY_BIAS for padded ones."""
    # kv_mask: B, T (bool) -> B, T
    return torch.where(kv_mask, 0.0, PAD_KEY_BIAS).float()


def global_attention(q, k, v, kv_mask, dropout_p=0.0):
    """Full attention; q is pre-scaled.  q, k, v: B, nh, T, hs   kv_mask: B, T."""
    bias = _key_bias(kv_mask)[:, None, None, :].to(q.dtype)  # B, 1, 1, T
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p,
                                          scale=1.0)


def _band_bias(window_overlap, block, rel_pe, device):
    """Bias of one query block against its key window: (nh or 1, block, block + 2o).

    Query r of a block sits at key column r + o; columns r .. r + 2o are in its window.
    """
    o = window_overlap
    rows = torch.arange(block, device=device)[:, None]
    cols = torch.arange(block + 2 * o, device=device)[None, :]
    offset = cols - rows  # 0 .. 2o inside the window, = key - query + o
    inside = (offset >= 0) & (offset <= 2 * o)
    bias = torch.where(inside, 0.0, OUTSIDE_BIAS)[None]  # 1, b, b + 2o
    if rel_pe is not None:
        # rel_pe: 1, 1, nh, w  -> nh, b, b + 2o (gathered by relative offset)
        table = rel_pe.reshape(rel_pe.shape[-2], rel_pe.shape[-1]).float()
        rel = table[:, offset.clamp(0, 2 * o)]
        bias = bias + torch.where(inside, rel, torch.zeros_like(rel))
    return bias


def _windows(x, window_overlap, block, pad_value=0.0):
    """Overlapping key windows: B, nh, T', X -> B, nh, nb, X, block + 2o (T' = nb * block)."""
    o = window_overlap
    x = F.pad(x, (0, 0, o, o), value=pad_value)  # pad the time axis on both sides
    return x.unfold(2, block + 2 * o, block)


def local_attention(q, k, v, kv_mask, window_overlap, rel_pe=None, dropout_p=0.0):
    """Sliding-window attention; q is pre-scaled.

    q, k, v: B, nh, T, hs   kv_mask: B, T (bool)   rel_pe: 1, 1, nh, 2o + 1 or None
    returns B, nh, T, hs

    Each query block and its key window go through one fused
    ``scaled_dot_product_attention`` call (batched over blocks), so the score and
    probability tensors are never materialised as separate einsum / softmax / mask steps.
    """
    B, nh, T, hs = q.shape
    o = window_overlap
    block = 2 * o
    num_blocks = math.ceil(T / block)
    extra = num_blocks * block - T
    # B, nh, T', hs with T' a multiple of the block size
    q, k, v = (F.pad(t, (0, 0, 0, extra)) if extra else t for t in (q, k, v))
    n = B * nh * num_blocks
    q_blocks = q.reshape(n, block, hs)
    # key / value windows copied once into contiguous (n, b + 2o, hs) batches
    k_win = _windows(k, o, block).transpose(-1, -2).reshape(n, block + 2 * o, hs)
    v_win = _windows(v, o, block).transpose(-1, -2).reshape(n, block + 2 * o, hs)

    # per-key bias: padded keys and keys beyond either end of the sequence
    key_bias = F.pad(_key_bias(kv_mask), (0, extra), value=OUTSIDE_BIAS)
    key_bias = F.pad(key_bias, (o, o), value=OUTSIDE_BIAS)
    key_bias = key_bias.unfold(1, block + 2 * o, block)  # B, nb, b + 2o
    bias = key_bias[:, None, :, None, :] + _band_bias(o, block, rel_pe, q.device)[None, :, None]
    bias = bias.expand(B, nh, num_blocks, block, block + 2 * o).reshape(n, block, -1)
    out = F.scaled_dot_product_attention(q_blocks, k_win, v_win, attn_mask=bias.to(q.dtype),
                                         dropout_p=dropout_p, scale=1.0)  # n, b, hs
    out = out.view(B, nh, num_blocks, block, hs)
    # padded queries attend to nothing: their output is zero
    q_valid = F.pad(kv_mask, (0, extra), value=False).reshape(B, 1, num_blocks, block, 1)
    out = out * q_valid.to(out.dtype)
    return out.reshape(B, nh, num_blocks * block, hs)[:, :, :T]
