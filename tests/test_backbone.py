"""VideoSwin: shapes, presets, frozen stages, checkpointing, chunked forward."""
import pytest
import torch

from vedatad.models import build_backbone
from vedatad.models.backbones.video_swin import ARCH_PRESETS, VideoSwin

torch.set_num_threads(1)

TINY = dict(type='VideoSwin', arch='demo', drop_path_rate=0.0)


def _clip(b=1, t=16, size=32, seed=0):
    return torch.randn(b, 3, t, size, size, generator=torch.Generator().manual_seed(seed))


def test_output_shape_and_channels():
    model = build_backbone(TINY).eval()
    assert model.out_channels == 16 * 8
    with torch.no_grad():
        out = model(_clip(b=2, t=16))
    assert out.shape == (2, 128, 8)  # (B, C, T/2)
    # odd frame counts are padded by the patch embedding: ceil(T/2) steps
    with torch.no_grad():
        assert model(_clip(t=7)).shape == (1, 128, 4)


def test_explicit_dims_override_preset_and_bad_arch():
    model = VideoSwin(arch=None, embed_dim=8, depths=(1, 1), num_heads=(1, 2),
                      window_size=(2, 4, 4))
    assert model.out_channels == 16
    assert model.depths == (1, 1)
    with pytest.raises(KeyError, match='unknown arch'):
        VideoSwin(arch='huge')
    with pytest.raises(ValueError, match='same length'):
        VideoSwin(arch=None, embed_dim=8, depths=(1, 1), num_heads=(1,))


def test_presets_match_published_sizes():
    assert ARCH_PRESETS['tiny'] == dict(embed_dim=96, depths=(2, 2, 6, 2),
                                        num_heads=(3, 6, 12, 24))
    assert ARCH_PRESETS['base']['embed_dim'] * 8 == 1024
    # Swin-T parameter count without head: 27.85M (published 28M with the head)
    model = VideoSwin(arch='tiny')
    n = sum(p.numel() for p in model.parameters())
    assert 27.5e6 < n < 28.3e6
    assert model.out_channels == 768


def test_frozen_stages_no_grad_and_eval_mode():
    model = build_backbone(dict(TINY, frozen_stages=2, drop_path_rate=0.2))
    model.train()
    frozen = [model.patch_embed, model.features[0], model.features[1], model.features[2],
              model.features[3]]
    trainable = [model.features[4], model.features[5], model.features[6], model.norm]
    for module in frozen:
        assert not module.training
        assert all(not p.requires_grad for p in module.parameters())
    for module in trainable:
        assert module.training
        assert all(p.requires_grad for p in module.parameters())
    out = model(_clip())
    out.sum().backward()
    assert model.features[0][0].attn.qkv.weight.grad is None
    assert model.features[4][0].attn.qkv.weight.grad is not None


def test_frozen_stage_out_of_range():
    with pytest.raises(ValueError, match='frozen_stages'):
        build_backbone(dict(TINY, frozen_stages=5))


def test_checkpointing_gives_same_output_and_grads():
    torch.manual_seed(0)
    plain = build_backbone(dict(TINY, frozen_stages=1)).train()
    cp = build_backbone(dict(TINY, frozen_stages=1, with_cp=True)).train()
    cp.load_state_dict(plain.state_dict())
    x = _clip()
    out_plain, out_cp = plain(x), cp(x)
    torch.testing.assert_close(out_plain, out_cp)
    out_plain.square().sum().backward()
    out_cp.square().sum().backward()
    g1 = plain.features[2][0].mlp[0].weight.grad
    g2 = cp.features[2][0].mlp[0].weight.grad
    torch.testing.assert_close(g1, g2)


def test_checkpointing_is_used_for_trainable_blocks(monkeypatch):
    import vedatad.models.backbones.video_swin as vs
    calls = []
    real = vs.checkpoint

    def counting(fn, *args, **kwargs):
        calls.append(fn)
        return real(fn, *args, **kwargs)

    monkeypatch.setattr(vs, 'checkpoint', counting)
    model = build_backbone(dict(TINY, frozen_stages=2, with_cp=True)).train()
    model(_clip())
    # stages 2 and 3 trainable, 2 blocks each
    assert len(calls) == 4
    calls.clear()
    with torch.no_grad():
        model(_clip())
    assert not calls  # nothing to save without gradients


def test_forward_chunks_equals_independent_chunks():
    model = build_backbone(TINY).eval()
    x = _clip(b=2, t=40, seed=1)  # two full 16-frame chunks + an 8-frame tail
    with torch.no_grad():
        out = model.forward_chunks(x, chunk_size=16)
        parts = [model(x[:, :, s:s + 16]) for s in (0, 16, 32)]
        limited = model.forward_chunks(x, chunk_size=16, max_batch=1)
    assert out.shape == (2, 128, 20)
    torch.testing.assert_close(out, torch.cat(parts, dim=-1), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(limited, out, rtol=1e-4, atol=1e-5)
    # chunks are independent: changing chunk 0 leaves chunk 1's features alone
    y = x.clone()
    y[:, :, :16] = 0
    with torch.no_grad():
        out_y = model.forward_chunks(y, chunk_size=16)
    torch.testing.assert_close(out_y[..., 8:16], out[..., 8:16], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(out_y[..., :8], out[..., :8])
    with pytest.raises(ValueError, match='multiple'):
        model.forward_chunks(x, chunk_size=15)
