"""Blocks of the ActionFormer encoder: masking, local attention, layer norm, encoders."""
import math

import pytest
import torch
import torch.nn.functional as F

from vedatad.models import blocks
from vedatad.models.attention import global_attention, local_attention
from vedatad.models.blocks import (AffineDropPath, LayerNorm, MaskedConv1D, MaskedMHCA,
                                   TransformerBlock, drop_path, sinusoid_encoding)
from vedatad.models.encoders import ConvEncoder, ConvTransformerEncoder


def naive_band_attention(q, k, v, kv_mask, half_window, rel_pe=None):
    """Reference: full T x T scores with a band mask, written as plainly as possible."""
    B, nh, T, hs = q.shape
    scores = q @ k.transpose(-1, -2)  # B, nh, T, T
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    if rel_pe is not None:
        offset = (j - i + half_window).clamp(0, 2 * half_window)
        scores = scores + rel_pe[0, 0][:, offset]  # nh, T, T
    scores = scores + torch.where(kv_mask, 0.0, -1e4)[:, None, None, :]
    if half_window is not None:
        scores = scores.masked_fill((j - i).abs() > half_window, float('-inf'))
    attn = scores.softmax(-1) * kv_mask[:, None, :, None]
    return attn @ v


def random_qkv(B=2, nh=3, T=37, hs=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, nh, T, hs, generator=g) for _ in range(3)]


def prefix_mask(lengths, T):
    return torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]


@pytest.mark.parametrize('T,half', [(37, 4), (36, 9), (5, 9), (64, 3), (1, 2)])
@pytest.mark.parametrize('with_rel_pe', [False, True])
def test_local_attention_matches_naive_band(T, half, with_rel_pe):
    q, k, v = random_qkv(T=T)
    mask = prefix_mask([T, max(1, T - 7)], T)
    rel_pe = torch.randn(1, 1, 3, 2 * half + 1) if with_rel_pe else None
    out = local_attention(q, k, v, mask, half, rel_pe)
    ref = naive_band_attention(q, k, v, mask, half, rel_pe)
    assert out.shape == (2, 3, T, 8)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_local_attention_window_really_is_local():
    q, k, v = random_qkv(T=40)
    mask = torch.ones(2, 40, dtype=torch.bool)
    base = local_attention(q, k, v, mask, 3)
    v2 = v.clone()
    v2[:, :, 30] += 100.0  # only steps 27..33 may notice
    changed = (local_attention(q, k, v2, mask, 3) - base).abs().amax(dim=(0, 1, 3)) > 1e-6
    assert changed.nonzero().flatten().tolist() == list(range(27, 34))


def test_global_attention_matches_naive_full():
    q, k, v = random_qkv(T=21)
    mask = prefix_mask([21, 13], 21)
    out = global_attention(q, k, v, mask)
    ref = naive_band_attention(q, k, v, mask, None)
    torch.testing.assert_close(out[0], ref[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[1, :, :13], ref[1, :, :13], atol=1e-5, rtol=1e-5)


def test_local_attention_gradients_are_finite():
    q, k, v = (t.requires_grad_() for t in random_qkv(T=23))
    mask = prefix_mask([23, 5], 23)
    local_attention(q, k, v, mask, 9).sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


@pytest.mark.parametrize('window', [9, -1])
@pytest.mark.parametrize('stride', [1, 2])
def test_padding_does_not_change_valid_outputs(window, stride):
    torch.manual_seed(0)
    block = TransformerBlock(32, 4, stride=stride, mha_win_size=window, path_pdrop=0.1,
                             use_rel_pe=True).eval()
    for p in block.parameters():  # make every path matter
        p.data.normal_(0, 0.3)
    x = torch.randn(1, 32, 24)
    # compare two padded lengths: as in the reference, the 3-tap depthwise conv of a
    # stride-1 block sees the LayerNorm bias of the first padded step, so a video's
    # output depends on whether it is padded at all, but not on how much
    short, _ = block(F.pad(x, (0, 8)), prefix_mask([24], 32)[:, None])
    long_out, long_mask = block(F.pad(x, (0, 40)), prefix_mask([24], 64)[:, None])
    n = 24 // stride
    short = short[..., :n]
    torch.testing.assert_close(long_out[..., :n], short, atol=1e-5, rtol=1e-5)
    assert (long_out[..., n:] == 0).all()
    assert long_mask.sum().item() == n


def test_masked_conv_strides_mask_and_zeroes_padding():
    conv = MaskedConv1D(4, 6, 3, stride=2, padding=1)
    nn_bias = conv.conv.bias
    assert (nn_bias == 0).all()
    mask = prefix_mask([7], 10)[:, None]
    out, out_mask = conv(torch.randn(1, 4, 10), mask)
    assert out.shape == (1, 6, 5)
    assert out_mask[0, 0].tolist() == [True, True, True, True, False]
    assert (out[..., 4] == 0).all()
    with pytest.raises(ValueError, match='divisible'):
        conv(torch.randn(1, 4, 9), prefix_mask([9], 9)[:, None])
    with pytest.raises(ValueError, match='odd kernel'):
        MaskedConv1D(4, 4, 4, padding=2)


def test_layer_norm_normalises_channels():
    ln = LayerNorm(16)
    ln.weight.data.uniform_(0.5, 2)
    ln.bias.data.normal_()
    x = torch.randn(3, 16, 11) * 5 + 2
    ref = F.layer_norm(x.transpose(1, 2), (16,), ln.weight.flatten(), ln.bias.flatten(), 1e-5)
    torch.testing.assert_close(ln(x), ref.transpose(1, 2), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('window', [9, -1])
@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('chunk', [4096, 7])
def test_inference_path_equals_training_path(window, stride, chunk, monkeypatch):
    # without autograd, LayerNorm and GELU work in place and a long feed-forward runs in
    # stretches of `chunk` steps; with it they must not: both paths give the same outputs,
    # and the training path still backpropagates
    monkeypatch.setattr(blocks, 'FEED_FORWARD_CHUNK', chunk)
    torch.manual_seed(1)
    block = TransformerBlock(32, 4, stride=stride, mha_win_size=window, use_rel_pe=True).eval()
    for p in block.parameters():
        p.data.normal_(0, 0.3)
    x = torch.randn(2, 32, 36)
    mask = prefix_mask([36, 27], 36)[:, None]
    with torch.inference_mode():
        fast, _ = block(x, mask)
    x_grad = x.clone().requires_grad_()
    slow, _ = block(x_grad, mask)
    torch.testing.assert_close(fast, slow.detach(), atol=1e-5, rtol=1e-5)
    slow.square().sum().backward()
    assert torch.isfinite(x_grad.grad).all() and x_grad.grad.abs().sum() > 0


def test_sinusoid_encoding_formula():
    table = sinusoid_encoding(50, 8)
    assert table.shape == (1, 8, 50)
    pos, ch = 7, 5  # odd channel -> cos with frequency of channel 4
    assert table[0, ch, pos].item() == pytest.approx(math.cos(pos / 10000 ** (4 / 8)), abs=1e-6)
    assert table[0, 2, pos].item() == pytest.approx(math.sin(pos / 10000 ** (2 / 8)), abs=1e-6)


def test_drop_path_keeps_expectation_and_drops_whole_samples():
    torch.manual_seed(0)
    x = torch.ones(4000, 3, 2)
    out = drop_path(x, 0.25, training=True)
    per_sample = out.flatten(1)
    assert ((per_sample == 0).all(1) | (per_sample == 1 / 0.75).all(1)).all()
    assert out.mean().item() == pytest.approx(1.0, abs=0.05)
    assert torch.equal(drop_path(x, 0.25, training=False), x)
    layer = AffineDropPath(3, drop_prob=0.5).eval()
    torch.testing.assert_close(layer(torch.ones(2, 3, 4)), torch.full((2, 3, 4), 1e-4))


def test_mhca_rejects_bad_heads():
    with pytest.raises(ValueError, match='n_head'):
        MaskedMHCA(30, 4)


@pytest.mark.parametrize('encoder_cls', ['transformer', 'conv'])
def test_encoder_pyramid_shapes_and_multi_feature_projection(encoder_cls):
    torch.manual_seed(0)
    if encoder_cls == 'transformer':
        enc = ConvTransformerEncoder([6, 10], [8, 16], 4, 3, max_len=32, arch=(2, 1, 3),
                                     mha_win_size=[5] * 4, with_ln=True, use_abs_pe=True)
        assert [k for k in enc.state_dict() if k.startswith('proj.')] == [
            'proj.0.conv.weight', 'proj.0.conv.bias', 'proj.1.conv.weight', 'proj.1.conv.bias']
    else:
        enc = ConvEncoder([6, 10], [8, 16], 3, arch=(2, 1, 3))
    enc.eval()
    x = torch.randn(2, 16, 32)
    mask = prefix_mask([32, 20], 32)[:, None]
    feats, masks = enc(x, mask)
    assert [f.shape for f in feats] == [(2, 24, 32), (2, 24, 16), (2, 24, 8), (2, 24, 4)]
    assert [m[1, 0].sum().item() for m in masks] == [20, 10, 5, 3]
    # features beyond a video's end stay zero at every level
    assert all((f[1][:, ~m[1, 0]] == 0).all() for f, m in zip(feats, masks))
    # one feature type only reaches the output through its own projection
    x2 = x.clone()
    x2[:, 6:] += 1.0
    assert not torch.allclose(enc(x2, mask)[0][0], feats[0])
    enc.proj[1].conv.weight.data.zero_()
    enc.proj[1].conv.bias.data.zero_()
    torch.testing.assert_close(enc(x2, mask)[0][0], enc(x, mask)[0][0])
