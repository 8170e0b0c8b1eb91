"""TALLFormer: bank read / write-back, feature assembly, frozen bank, windowed inference."""
import numpy as np
import pytest
import torch

from vedatad.membank import MemoryBank
from vedatad.models import build_model

C = 128  # channels of the 'demo' Video Swin
RPC = 16  # bank rows per 32-frame chunk


def tiny_tallformer(template, keep_ratio=0.25, frozen=False, window=128):
    cfg = dict(
        type='TALLFormer', chunk_size=32, keep_ratio=keep_ratio, chunk_sampling='random',
        membank=dict(template=str(template), frozen=frozen),
        backbone=dict(type='VideoSwin', arch='demo', drop_path_rate=0.0),
        tcm=dict(type='TemporalConsistencyModule', out_channels=32, num_reductions=2, depth=1,
                 num_heads=4, max_len=window // 8, drop_path=0.0),
        detector=dict(type='ActionFormer', num_classes=3, max_seq_len=window // 8,
                      backbone_arch=(2, 1, 1), n_mha_win_size=-1, n_head=4, embd_dim=32,
                      fpn_dim=32, head_dim=32, regression_range=[(0, 4), (4, 10000)],
                      train_cfg=dict(init_loss_norm=10, droppath=0.0),
                      test_cfg=dict(max_seg_num=20)))
    return build_model(cfg)


@pytest.fixture()
def template(tmp_path):
    """A template bank with two videos whose chunk c of video v holds the value 10*v + c."""
    bank = MemoryBank.create(tmp_path / 'template', feat_dim=C, backbone='VideoSwin-demo')
    for v, frames in enumerate((200, 96)):
        vid = f'vid{v}'
        bank.add_video(vid, frames)
        n = bank.num_chunks(vid)
        feats = np.repeat(10.0 * v + np.arange(n, dtype=np.float32), RPC)[:, None]
        bank.write_chunks(vid, list(range(n)), np.broadcast_to(feats, (n * RPC, C)), step=-1)
        bank.mark_complete(vid)
    return tmp_path / 'template'


def train_batch(window=128, offsets=(64, 0), videos=('vid0', 'vid1'), valid=(128, 96)):
    torch.manual_seed(0)
    B = len(videos)
    masks = torch.zeros(B, window, dtype=torch.bool)
    for b, v in enumerate(valid):
        masks[b, :v] = True
    return dict(
        imgs=torch.randn(B, 3, window, 56, 56) * masks[:, None, :, None, None],
        masks=masks, frame_offsets=torch.tensor(offsets), video_index=torch.arange(B),
        metas=[dict(video_id=v, fps=15.0, duration=200 / 15, num_frames=200,
                    window_size=window) for v in videos],
        gt_segments=[torch.tensor([[10.0, 60.0]]), torch.tensor([[0.0, 40.0]])],
        gt_labels=[torch.tensor([1]), torch.tensor([2])])


def test_train_step_writes_fresh_chunks_and_keeps_template(tmp_path, template):
    model = tiny_tallformer(template)
    model.setup_work_dir(tmp_path / 'work', resume=False, rank=0)
    model.on_train_iter_start(7)
    losses = model(train_batch(), mode='loss')
    assert torch.isfinite(losses['final_loss'])
    losses['final_loss'].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for p in model.backbone.parameters()), 'fresh chunks must train the backbone'

    work = MemoryBank.open(tmp_path / 'work' / 'membank')
    steps0 = work.read_steps('vid0', 0, work.num_chunks('vid0'))
    steps1 = work.read_steps('vid1', 0, work.num_chunks('vid1'))
    # window 0 starts at chunk 2 (frame 64) and spans 4 chunks: one is recomputed
    assert (steps0 == 7).sum() == 1 and np.all(np.flatnonzero(steps0 == 7) >= 2)
    # window 1 holds 96 real frames = 3 chunks; the recomputed one lies inside the video
    assert (steps1 == 7).sum() == 1
    # chunks that were not recomputed keep the template values
    for vid, steps in (('vid0', steps0), ('vid1', steps1)):
        feats = work.read_window(vid, 0, len(steps))[:work.num_rows(vid)]  # real rows only
        v = int(vid[-1])
        for c, s in enumerate(steps):
            block = feats[c * RPC:(c + 1) * RPC]
            if s == 7:
                assert not np.allclose(block, 10 * v + c)
            else:
                np.testing.assert_array_equal(block, 10 * v + c)
    tmpl = MemoryBank.open(template)
    assert np.all(tmpl.read_steps('vid0', 0, tmpl.num_chunks('vid0')) == -1)
    stats = model.epoch_stats()
    assert stats['bank/never_rewritten_fraction'] == 1.0  # everything read was from extraction


def test_assembly_places_fresh_and_stale_chunks_in_order(tmp_path, template):
    model = tiny_tallformer(template, keep_ratio=0.25).eval()
    model.setup_work_dir(tmp_path / 'work', resume=False, rank=0)
    batch = train_batch()
    np.random.seed(3)
    feats = model.assemble_window_features(batch['imgs'], batch['masks'],
                                           batch['frame_offsets'], ['vid0', 'vid1'])
    assert feats.shape == (2, C, 128 // 2)
    work = MemoryBank.open(tmp_path / 'work' / 'membank')
    for b, (vid, c0) in enumerate((('vid0', 2), ('vid1', 0))):
        steps = work.read_steps(vid, c0, 4)
        chunks = batch['imgs'][b].view(3, 4, 32, 56, 56).transpose(0, 1)
        for k in range(4):
            got = feats[b, :, k * RPC:(k + 1) * RPC]
            if steps[k] >= 0:  # recomputed: equals the backbone on that chunk alone
                want = model.backbone(chunks[k][None])[0]
                torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
            elif c0 + k < work.num_chunks(vid):  # from the bank, in window order
                rows = min(RPC, work.num_rows(vid) - (c0 + k) * RPC)
                assert torch.all(got[:, :rows] == 10 * int(vid[-1]) + c0 + k)
            else:  # past the end of the video: zeros
                assert torch.all(got == 0)


def test_frozen_bank_is_never_written(tmp_path, template):
    model = tiny_tallformer(template, frozen=True)
    model.setup_work_dir(tmp_path / 'work', resume=False, rank=0)
    model.on_train_iter_start(3)
    model(train_batch(), mode='loss')['final_loss'].backward()
    bank = MemoryBank.open(template)
    assert np.all(bank.read_steps('vid0', 0, bank.num_chunks('vid0')) == -1)
    assert not (tmp_path / 'work' / 'membank').exists()


def test_missing_bank_is_a_clear_error(tmp_path):
    model = tiny_tallformer(tmp_path / 'nothing_here')
    with pytest.raises(Exception, match='nothing_here'):
        model.setup_work_dir(tmp_path / 'work', resume=False, rank=0)
    with pytest.raises(RuntimeError, match='setup_work_dir'):
        model(train_batch(), mode='loss')


def test_windowed_inference_merges_windows_in_video_time(template):
    torch.manual_seed(0)
    model = tiny_tallformer(template).eval()
    window, frames = 128, 200
    offsets = torch.tensor([0, 96])  # two overlapping windows cover frames 0..223
    masks = torch.zeros(2, window, dtype=torch.bool)
    masks[0] = True
    masks[1, :frames - 96] = True
    batch = dict(imgs=torch.randn(2, 3, window, 56, 56), masks=masks, frame_offsets=offsets,
                 video_index=torch.tensor([0, 0]),
                 metas=[dict(video_id='vid0', fps=15.0, duration=frames / 15,
                             num_frames=frames, window_size=window)])
    (res,) = model(batch, mode='predict')
    assert res['video_id'] == 'vid0' and len(res['scores']) > 0
    segs = res['segments']
    assert torch.all(segs >= 0) and torch.all(segs <= frames / 15 + 1e-6)
    assert torch.all(res['scores'][:-1] >= res['scores'][1:])
    # candidates of the second window are shifted by its offset (96 frames = 12 steps)
    feats, mask = model.extract_window_features(batch['imgs'], batch['masks'])
    cands = model.detector.candidates_from_feats(feats, mask)
    assert cands[1][0].numel() > 0
    second = (cands[1][0] + 96 / model.feat_stride) * model.feat_stride + 1
    assert second.max() / 15 > window / 15  # reaches past the first window's end


def test_window_off_the_chunk_grid_is_refused(tmp_path, template):
    model = tiny_tallformer(template)
    model.setup_work_dir(tmp_path / 'work', resume=False, rank=0)
    with pytest.raises(ValueError, match="vid0.*chunk grid"):
        model(train_batch(offsets=(40, 0)), mode='loss')


class _LazyWindows:
    """Stands in for the video dataset's lazily decoded windows (``load(indices)``)."""

    def __init__(self, imgs):
        self.imgs, self.loaded = imgs, []

    def __len__(self):
        return len(self.imgs)

    def load(self, indices):
        self.loaded.append(list(indices))
        return self.imgs[indices]


def test_lazy_windows_give_the_same_detections(template):
    torch.manual_seed(0)
    model = tiny_tallformer(template).eval()
    imgs = torch.randn(3, 3, 128, 56, 56)
    masks = torch.ones(3, 128, dtype=torch.bool)
    common = dict(masks=masks, frame_offsets=torch.tensor([0, 96, 192]),
                  video_index=torch.tensor([0, 0, 0]),
                  metas=[dict(video_id='vid0', fps=15.0, duration=320 / 15, num_frames=320,
                              window_size=128)])
    (eager,) = model.forward_predict(dict(common, imgs=imgs), windows_per_pass=2)
    lazy = _LazyWindows(imgs)
    (res,) = model.forward_predict(dict(common, windows=[lazy]), windows_per_pass=2)
    assert lazy.loaded == [[0, 1], [2]]  # decoded a pass at a time, never all at once
    torch.testing.assert_close(res['segments'], eager['segments'])
    torch.testing.assert_close(res['scores'], eager['scores'])


def test_bf16_autocast_train_and_predict(tmp_path, template):
    """Mixed precision: the backbone runs in bf16, the bank still stores float16 rows."""
    model = tiny_tallformer(template)
    model.setup_work_dir(tmp_path / 'work', resume=False, rank=0)
    model.on_train_iter_start(1)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        losses = model(train_batch(), mode='loss')
    assert torch.isfinite(losses['final_loss'])
    losses['final_loss'].backward()
    work = MemoryBank.open(tmp_path / 'work' / 'membank')
    assert work.read_window('vid0', 0, 1).dtype == np.float32
    assert (work.read_steps('vid0', 0, work.num_chunks('vid0')) == 1).sum() == 1
    batch = train_batch()
    model.eval()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        results = model(batch, mode='predict')
    assert [r['video_id'] for r in results] == ['vid0', 'vid1']
    assert all(r['segments'].dtype == torch.float32 for r in results)
