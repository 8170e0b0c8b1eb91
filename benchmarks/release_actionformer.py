"""The ActionFormer release's sliding-window attention algorithm, re-implemented for
benchmarks: overlapping chunks of 2w steps, scores skewed from chunk diagonals into a
(T, 2w + 1) band, -inf outside the sequence, a -1e4 float key mask pushed through the same
chunked product, softmax, zeroed padded queries, and the probabilities re-diagonalised
against 3w-step value chunks. Inputs follow vedatad.models.attention.local_attention.
"""
import torch
import torch.nn.functional as F


def _overlapping_chunks(x, w):
    # x: BH, T, hs -> BH, T / w - 1, 2w, hs (chunks of 2w overlapping by w, a strided view)
    bh, T, hs = x.shape
    x = x.reshape(bh, T // (2 * w), 2 * w, hs)
    size, stride = list(x.shape), list(x.stride())
    size[1], stride[1] = size[1] * 2 - 1, stride[1] // 2
    return x.as_strided(size, stride)


def _mask_outside(band, w):
    # band: B, T, nh, 2w + 1; keys before step 0 / after step T - 1 get -inf (in place)
    head = band.new_ones(w, w + 1).tril().flip(0).bool()[None, :, None, :]
    band[:, :w, :, :w + 1].masked_fill_(head, float('-inf'))
    band[:, -w:, :, -(w + 1):].masked_fill_(head.flip(1, 3), float('-inf'))


def _banded_scores(q, k, num_heads, w):
    """q, k: BH, T, hs -> B, T, nh, 2w + 1 scores of each step with its 2w + 1 neighbours."""
    bh, T, _ = q.shape
    chunks = T // w - 1
    diag = torch.einsum('bcxd,bcyd->bcxy', _overlapping_chunks(q, w),
                        _overlapping_chunks(k, w))            # BH, C, 2w, 2w
    diag = F.pad(diag, (0, 0, 0, 1))                           # one extra row per chunk
    diag = diag.view(bh, chunks, 2 * w, 2 * w + 1)             # diagonals become columns
    band = diag.new_empty(bh, chunks + 1, w, 2 * w + 1)
    band[:, :-1, :, w:] = diag[:, :, :w, :w + 1]
    band[:, -1, :, w:] = diag[:, -1, w:, :w + 1]
    band[:, 1:, :, :w] = diag[:, :, -(w + 1):-1, w + 1:]
    band[:, 0, 1:w, 1:w] = diag[:, 0, :w - 1, 1 - w:]
    band = band.view(bh // num_heads, num_heads, T, 2 * w + 1).transpose(2, 1)
    _mask_outside(band, w)
    return band


def _banded_values(probs, v, num_heads, w):
    """probs: B, T, nh, 2w + 1   v: BH, T, hs -> B, nh, T, hs."""
    bh, T, hs = v.shape
    chunks = T // w - 1
    probs = probs.transpose(1, 2).reshape(bh, T // w, w, 2 * w + 1)
    padded = F.pad(v, (0, 0, w, w), value=-1)
    s = padded.stride()
    v_chunks = padded.as_strided((bh, chunks + 1, 3 * w, hs), (s[0], w * s[1], s[1], s[2]))
    # shift row r of each chunk r steps right: columns -> diagonals over 3w values
    probs = F.pad(probs, (0, w + 1)).view(bh, chunks + 1, -1)[:, :, :-w]
    probs = probs.view(bh, chunks + 1, w, 3 * w + 1)[:, :, :, :-1]
    out = torch.einsum('bcwd,bcdh->bcwh', probs, v_chunks)
    return out.reshape(bh // num_heads, num_heads, T, hs)


def release_local_attention(q, k, v, kv_mask, w, rel_pe=None):
    """q (pre-scaled), k, v: B, nh, T, hs with T % 2w == 0   kv_mask: B, T (bool)."""
    B, nh, T, hs = q.shape
    q, k, v = (t.reshape(B * nh, T, hs).contiguous() for t in (q, k, v))
    att = _banded_scores(q, k, nh, w)
    if rel_pe is not None:
        att += rel_pe
    invalid = ~kv_mask[:, :, None]                             # B, T, 1
    float_mask = invalid.to(q.dtype).masked_fill(invalid, -1e4)
    att += _banded_scores(float_mask.new_ones(float_mask.shape), float_mask, 1, w)
    att = att.softmax(dim=-1)
    att = att.masked_fill(invalid[:, :, :, None], 0.0)
    return _banded_values(att, v, nh, w)
