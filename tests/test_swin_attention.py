"""Video Swin window attention through scaled_dot_product_attention equals torchvision's."""
import pytest
import torch
from torchvision.models.video.swin_transformer import (ShiftedWindowAttention3d,
                                                       SwinTransformer3d)

from vedatad.models.backbones import swin_attention
from vedatad.models.backbones.swin_attention import WindowAttention3d, shift_mask
from vedatad.models.backbones.video_swin import VideoSwin

torch.set_num_threads(1)


def close(a, b, rel=1e-5):
    a, b = a.detach(), b.detach()
    scale = b.abs().max().clamp_min(1e-6)
    return float((a - b).abs().max() / scale) <= rel


@pytest.mark.parametrize('size,shift', [
    ((8, 14, 14), (4, 3, 3)),   # whole windows, shifted
    ((5, 9, 10), (4, 3, 3)),    # padded on every axis
    ((3, 5, 7), (4, 3, 3)),     # smaller than the window: it shrinks, no shift there
    ((8, 14, 14), (0, 0, 0)),   # not shifted
    ((6, 9, 9), (0, 0, 0)),
])
@pytest.mark.parametrize('train', [True, False])
def test_outputs_and_gradients_equal_torchvision(size, shift, train):
    torch.manual_seed(0)
    ref = ShiftedWindowAttention3d(16, [8, 7, 7], list(shift), 2)
    with torch.no_grad():  # a bias large enough to matter
        ref.relative_position_bias_table.normal_(0, 1)
    new = WindowAttention3d(16, [8, 7, 7], list(shift), 2)
    new.load_state_dict(ref.state_dict())
    ref.train(train), new.train(train)
    x = torch.randn(2, *size, 16, requires_grad=True)
    out_ref, out_new = ref(x), new(x)
    assert out_new.shape == x.shape
    assert close(out_new, out_ref)
    wrt = lambda m: [x, m.relative_position_bias_table, m.qkv.weight, m.proj.weight]  # noqa
    g_ref = torch.autograd.grad(out_ref.square().sum(), wrt(ref))
    g_new = torch.autograd.grad(out_new.square().sum(), wrt(new))
    for a, b in zip(g_new, g_ref):
        assert close(a, b, 1e-4)


def test_shift_mask_separates_exactly_the_rolled_regions():
    size, window, shift = (4, 6, 6), (2, 3, 3), (1, 1, 2)
    mask = shift_mask(size, window, shift, torch.device('cpu'))
    assert mask.shape == (2 * 2 * 2, 18, 18)
    assert set(mask.unique().tolist()) == {0.0, -100.0}
    # the first window lies inside one region: nothing masked
    assert (mask[0] == 0).all()
    # the last window mixes regions on every axis: 2 x 2 x 2 groups of positions
    groups = {tuple(row.tolist()) for row in (mask[-1] == 0)}
    assert len(groups) == 8


def test_video_swin_equals_torchvision_network():
    """The whole trunk: VideoSwin with its attention vs torchvision's own modules."""
    torch.manual_seed(0)
    spec = dict(embed_dim=8, depths=(2, 2), num_heads=(1, 2), window_size=(2, 4, 4))
    ours = VideoSwin(arch=None, drop_path_rate=0.0, **spec).eval()
    theirs = SwinTransformer3d(patch_size=[2, 4, 4], embed_dim=8, depths=[2, 2],
                               num_heads=[1, 2], window_size=[2, 4, 4],
                               stochastic_depth_prob=0.0, num_classes=1).eval()
    assert any(isinstance(m, WindowAttention3d) for m in ours.modules())
    missing, unexpected = theirs.load_state_dict(ours.state_dict(), strict=False)
    assert not unexpected and set(missing) == {'head.weight', 'head.bias'}
    x = torch.randn(2, 3, 8, 36, 40)
    with torch.no_grad():
        feats = theirs.norm(theirs.features(theirs.patch_embed(x)))
        expected = feats.mean(dim=(2, 3)).transpose(1, 2)
        assert close(ours(x), expected)


@pytest.mark.parametrize('block_bytes', [1, 3 * 10 * 10 * 4, 2 ** 30])
def test_biased_attention_gradients_in_any_blocking(monkeypatch, block_bytes):
    """The CPU path with a learnable mask: fused forward, blockwise recomputed backward,
    equal to autograd through the plain computation, however the matrices are blocked."""
    monkeypatch.setattr(swin_attention, 'BACKWARD_BLOCK_BYTES', block_bytes)
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 5, 10, 4, requires_grad=True) for _ in range(3))
    mask = torch.randn(1, 5, 10, 10, requires_grad=True)
    out = swin_attention.attention(q, k, v, mask, 0.0)
    ref = ((q @ k.transpose(-1, -2)) * 0.5 + mask).softmax(-1) @ v
    assert close(out, ref)
    grad = torch.randn_like(ref)
    got = torch.autograd.grad(out, [q, k, v, mask], grad)
    want = torch.autograd.grad(ref, [q, k, v, mask], grad)
    for a, b in zip(got, want):
        assert close(a, b, 1e-5)
