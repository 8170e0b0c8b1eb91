"""Masked self-attention kernels: global and local sliding-window.

Local attention lets step i see only steps i - w//2 .. i + w//2. Masking follows the official
ActionFormer release so that its checkpoints give the same outputs:
  * keys at padded steps get an additive -1e4 (softmax weight exactly 0 in float32),
  * keys outside the sequence (window over the border) get no weight at all,
  * attention rows of padded queries are zeroed and the output is zeroed at padded steps.

Local attention is computed block-wise: queries are cut into blocks of b = 2 * (w // 2)
steps and each block attends to its b + 2 * (w // 2) surrounding keys, so time and memory
are linear in T (about 2x the band's work instead of T x T). The score scale is applied by
the fused kernel (``scale``) rather than to a scaled copy of q.
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


def global_attention(q, k, v, kv_mask, dropout_p=0.0, scale=1.0):
    """Full attention, scores q.k * scale.  q, k, v: B, nh, T, hs   kv_mask: B, T."""
    bias = _key_bias(kv_mask)[:, None, None, :].to(q.dtype)  # B, 1, 1, T
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p,
                                          scale=scale)


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


def local_layout(x, window_overlap, keys):
    """q, k or v (B, nh, T, hs) laid out as local attention reads it: (B, nh, (nb + 1) b, hs)
    per head, b = 2o, nb = ceil(T / b); the T steps start at o for keys and values, at 0 for
    queries; zeros elsewhere."""
    B, nh, T, hs = x.shape
    block = 2 * window_overlap
    length = (math.ceil(T / block) + 1) * block
    lead = window_overlap if keys else 0
    # zero only the padding (F.pad would zero-fill the whole buffer, then copy x over it)
    out = x.new_empty(B, nh, length, hs)
    out[:, :, :lead] = 0
    out[:, :, lead + T:] = 0
    out[:, :, lead:lead + T] = x
    return out


def local_attention(q, k, v, kv_mask, window_overlap, rel_pe=None, dropout_p=0.0, scale=1.0):
    """Sliding-window attention, scores q.k * scale + bias.

    q, k, v: B, nh, T, hs   kv_mask: B, T (bool)   rel_pe: 1, 1, nh, 2o + 1 or None
    returns B, nh, T, hs
    """
    o = window_overlap
    return local_attention_laid_out(local_layout(q, o, keys=False), local_layout(k, o, True),
                                    local_layout(v, o, True), kv_mask, o, rel_pe, dropout_p,
                                    scale)


def local_attention_laid_out(q, k, v, kv_mask, window_overlap, rel_pe=None, dropout_p=0.0,
                             scale=1.0, zero_padded_queries=True):
    """local_attention on inputs already in ``local_layout`` (callers that lay out each
    projection as soon as it exists keep one copy of it alive, not two).

    Query block j (b = 2o steps) sees the 2b keys jb - o .. jb + b + o - 1. Per head the keys
    are laid out as o + nb b + o = (nb + 1) b steps, so on the (B, nh (nb + 1) b, hs) buffer
    of all heads the key window of block j of head h starts at step (h (nb + 1) + j) b: the
    windows are one strided view (unfold) of that buffer, never copied, and every block of
    every head goes through one fused ``scaled_dot_product_attention`` call. Window j = nb of
    each head would straddle two heads; its queries are padding, so it is left out (the
    last one would also run past the buffer).

    ``zero_padded_queries=False`` leaves the rows of padded queries as computed, for callers
    that zero those steps themselves afterwards (saves one pass over the output).
    """
    B, nh, length, hs = q.shape
    T = kv_mask.shape[1]
    o = window_overlap
    block = 2 * o
    num_blocks = length // block - 1
    windows = nh * (num_blocks + 1) - 1
    q_blocks = q.reshape(B, -1, block, hs)[:, :windows]
    k_win, v_win = (t.reshape(B, nh * length, hs).unfold(1, 2 * block, block)
                    .transpose(-1, -2) for t in (k, v))                  # B, windows, 2b, hs

    # per-key bias of each head's windows: padded keys, keys beyond either end of the sequence
    key_bias = F.pad(_key_bias(kv_mask), (o, length - T - o + block), value=OUTSIDE_BIAS)
    key_bias = key_bias.unfold(1, 2 * block, block)                       # B, nb + 1, 2b
    bias = key_bias[:, None, :, None, :] + _band_bias(o, block, rel_pe, q.device)[None, :, None]
    bias = bias.expand(B, nh, num_blocks + 1, block, 2 * block).reshape(B, -1, block,
                                                                        2 * block)
    out = F.scaled_dot_product_attention(q_blocks, k_win, v_win,
                                         attn_mask=bias[:, :windows].to(q.dtype),
                                         dropout_p=dropout_p, scale=scale)  # B, windows, b, hs
    # blocks 0 .. nb - 1 of head h are windows h (nb + 1) + j: a strided view, no gather
    out = out.as_strided((B, nh, T, hs), (out.stride(0), length * hs, hs, 1))
    if not zero_padded_queries:
        return out
    # padded queries attend to nothing: their output is zero
    return out * kv_mask[:, None, :, None].to(out.dtype)
