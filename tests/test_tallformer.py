"""TALLFormer: assembly of fresh + stale chunks, write-back, device normalisation, frozen bank,
clear errors, exact extra state, windowed inference."""
import numpy as np
import pytest
import torch

from vedatad.data.bank_windows import BankChunkWriter, BankWindowReader
from vedatad.data.transforms import Normalize
from vedatad.data.video_dataset import collate_video_windows
from vedatad.engine.training_bank import check_bank_fits, open_working_bank
from vedatad.membank import BankError, MemoryBank
from vedatad.models import build_model
from vedatad.utils.config_keys import ConfigKeyError

C = 128  # channels of the 'demo' Video Swin
RPC = 16  # bank rows per 32-frame chunk
MEAN, STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)


def tiny_cfg(template, frozen=False, window=128, **extra):
    return dict(
        type='TALLFormer', chunk_size=32, membank=dict(template=str(template), frozen=frozen),
        backbone=dict(type='VideoSwin', arch='demo', drop_path_rate=0.0),
        tcm=dict(type='TemporalConsistencyModule', out_channels=32, num_reductions=2, depth=1,
                 num_heads=4, max_len=window // 8, drop_path=0.0),
        detector=dict(type='ActionFormer', num_classes=3, max_seq_len=window // 8,
                      backbone_arch=(2, 1, 1), n_mha_win_size=-1, n_head=4, embd_dim=32,
                      fpn_dim=32, head_dim=32, regression_range=[(0, 4), (4, 10000)],
                      train_cfg=dict(init_loss_norm=10, droppath=0.0),
                      test_cfg=dict(max_seg_num=20)), **extra)


def tiny_tallformer(template, frozen=False, window=128):
    return build_model(tiny_cfg(template, frozen, window))


def template_value(v, c):
    return 10.0 * v + c + 1  # never 0: an all-zero chunk reads as missing


@pytest.fixture()
def template(tmp_path):
    """A template bank with two videos whose chunk c of video v holds 10*v + c + 1."""
    bank = MemoryBank.create(tmp_path / 'template', feat_dim=C, backbone='VideoSwin-demo')
    for v, frames in enumerate((200, 96)):
        vid = f'vid{v}'
        bank.add_video(vid, frames)
        n = bank.num_chunks(vid)
        feats = np.repeat(template_value(v, np.arange(n, dtype=np.float32)), RPC)[:, None]
        bank.write_chunks(vid, list(range(n)), np.broadcast_to(feats, (n * RPC, C)), step=-1)
        bank.mark_complete(vid)
    return tmp_path / 'template'


def bank_batch(bank, fresh=((1,), (2,)), window=128, offsets=(64, 0), videos=('vid0', 'vid1'),
               seed=0):
    """A bank-backed training batch as the video dataset + collate give it: random uint8
    pixels for the fresh chunks, stale chunks read from ``bank``."""
    g = torch.Generator().manual_seed(seed)
    reader = BankWindowReader(bank)
    items = []
    n = window // 32
    for vid, off, picks in zip(videos, offsets, fresh):
        frames = bank.num_frames(vid)
        real = min(window, frames - off)
        feats, steps = reader.read(vid, frames, off // 32, n, picks)
        imgs = torch.randint(0, 256, (len(picks), 3, 32, 56, 56), generator=g,
                             dtype=torch.uint8)
        for k, c in enumerate(picks):  # frames past the video end are zeros
            imgs[k, :, max(0, min(32, real - 32 * c)):] = 0
        masks = torch.arange(window) < real
        items.append(dict(
            fresh_imgs=imgs, fresh_chunks=torch.tensor(picks, dtype=torch.long),
            bank_feats=torch.from_numpy(feats), bank_steps=torch.from_numpy(steps),
            pixel_mean=np.float32(MEAN), pixel_std=np.float32(STD), masks=masks,
            frame_offset=off, gt_segments=torch.tensor([[10.0, 60.0]]),
            gt_labels=torch.tensor([1]), video_id=vid, fps=15.0, duration=frames / 15,
            num_frames=frames, window_size=window))
    return collate_video_windows(items)


def working(tmp_path, template, frozen=False):
    cfg = dict(template=str(template), path=None, frozen=frozen)
    return open_working_bank(cfg, tmp_path / 'work', resume=False, rank=0)


def test_train_step_writes_fresh_chunks_only_and_keeps_template(tmp_path, template):
    model = tiny_tallformer(template)
    bank = working(tmp_path, template)
    model.attach_bank_writer(BankChunkWriter(bank))
    model.on_train_iter_start(7)
    losses = model(bank_batch(bank), mode='loss')
    assert torch.isfinite(losses['final_loss'])
    losses['final_loss'].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for p in model.backbone.parameters()), 'fresh chunks must train the backbone'

    work = MemoryBank.open(tmp_path / 'work' / 'membank')
    # window 0 starts at chunk 2 (frame 64): its fresh chunk 1 is video chunk 3;
    # window 1 starts at chunk 0: its fresh chunk 2 is video chunk 2
    for vid, written in (('vid0', 3), ('vid1', 2)):
        steps = work.read_steps(vid, 0, work.num_chunks(vid))
        assert np.flatnonzero(steps >= 0).tolist() == [written] and steps[written] == 7
        feats = work.read_window(vid, 0, len(steps))[:work.num_rows(vid)]
        v = int(vid[-1])
        for c in range(len(steps)):
            block = feats[c * RPC:(c + 1) * RPC]
            if c == written:
                assert not np.allclose(block, template_value(v, c))
            else:
                np.testing.assert_array_equal(block, template_value(v, c))
    tmpl = MemoryBank.open(template)
    assert np.all(tmpl.read_steps('vid0', 0, tmpl.num_chunks('vid0')) == -1)
    stats = model.epoch_stats()
    assert stats['bank/never_rewritten_fraction'] == 1.0  # everything read was from extraction


def test_assembly_places_fresh_and_stale_chunks_in_order(tmp_path, template):
    model = tiny_tallformer(template).eval()
    bank = working(tmp_path, template)
    model.attach_bank_writer(BankChunkWriter(bank))
    batch = bank_batch(bank, fresh=((0, 3), (1,)))
    feats = model.assemble_window_features(batch)
    assert feats.shape == (2, C, 128 // 2)
    x = model.normalize_pixels(batch['fresh_imgs'], batch)
    want_fresh = model.backbone(x)  # K, C, rpc (chunk by chunk: chunks are independent)
    k = 0
    for b, (vid, c0, picks) in enumerate((('vid0', 2, (0, 3)), ('vid1', 0, (1,)))):
        for c in range(4):
            got = feats[b, :, c * RPC:(c + 1) * RPC]
            if c in picks:  # recomputed: the backbone on that chunk
                torch.testing.assert_close(got, want_fresh[k], atol=1e-4, rtol=1e-4)
                k += 1
            elif c0 + c < bank.num_chunks(vid):  # from the bank, in window order
                rows = min(RPC, bank.num_rows(vid) - (c0 + c) * RPC)
                assert torch.all(got[:, :rows] == template_value(int(vid[-1]), c0 + c))
            else:  # past the end of the video: zeros
                assert torch.all(got == 0)
    assert batch['bank_feats'].dtype == torch.float16  # half the bytes of float32


def test_device_normalisation_equals_the_cpu_pipeline(tmp_path, template):
    bank = MemoryBank.open(template)
    batch = bank_batch(bank, fresh=((0,), (2,)))  # vid1's chunk 2 holds frames 64..95 of 96
    x = tiny_tallformer(template).normalize_pixels(batch['fresh_imgs'], batch)
    for k in range(2):
        frames = batch['fresh_imgs'][k].permute(1, 2, 3, 0).numpy()  # T, H, W, 3
        want = Normalize(MEAN, STD)(dict(imgs=frames))['imgs']
        torch.testing.assert_close(x[k], torch.from_numpy(want).permute(3, 0, 1, 2))
    # window chunk 1 at frame 160 of the 200-frame vid0 holds 8 real frames, then padding:
    # zeros after normalising, as the CPU pipeline pads normalised windows
    padded = bank_batch(bank, fresh=((1,), (0,)), offsets=(160, 0))
    valid = padded['masks'].view(-1, 32)[padded['fresh_index']]
    y = tiny_tallformer(template).normalize_pixels(padded['fresh_imgs'], padded, valid)
    assert valid[0].sum() == 8 and torch.all(y[0, :, 8:] == 0)
    assert (y[0, :, :8] != 0).any() and (y[1] != 0).any()


def test_frozen_bank_reads_the_template_and_never_writes(tmp_path, template):
    model = tiny_tallformer(template, frozen=True)
    bank = working(tmp_path, template, frozen=True)
    assert bank.mode == 'r' and bank.path == template
    model.on_train_iter_start(3)
    model(bank_batch(bank), mode='loss')['final_loss'].backward()
    assert np.all(bank.read_steps('vid0', 0, bank.num_chunks('vid0')) == -1)
    assert not (tmp_path / 'work' / 'membank').exists()


def test_missing_bank_and_missing_writer_are_clear_errors(tmp_path, template):
    with pytest.raises(BankError, match='nothing_here'):
        working(tmp_path, tmp_path / 'nothing_here')
    model = tiny_tallformer(template)
    with pytest.raises(RuntimeError, match='attach'):
        model(bank_batch(MemoryBank.open(template)), mode='loss')
    whole_window = dict(imgs=torch.zeros(1, 3, 128, 56, 56), masks=torch.ones(1, 128, dtype=bool))
    with pytest.raises(ValueError, match='keep_ratio'):
        model(whole_window, mode='loss')


def test_feature_size_of_another_backbone_is_named(tmp_path, template):
    other = MemoryBank.create(tmp_path / 'c64', feat_dim=64, backbone='other')
    for vid, frames in (('vid0', 200), ('vid1', 96)):
        other.add_video(vid, frames)
        n = other.num_chunks(vid)
        other.write_chunks(vid, list(range(n)), np.ones((n, RPC, 64), np.float32), step=-1)
        other.mark_complete(vid)
    model = tiny_tallformer(template)
    model.attach_bank_writer(BankChunkWriter(other))
    with pytest.raises(ValueError, match='64-d features but the backbone emits 128-d'):
        model(bank_batch(other), mode='loss')
    with pytest.raises(BankError, match='feature size: bank 64, backbone 128'):
        check_bank_fits(other, model, None)


def test_window_off_the_chunk_grid_is_refused(tmp_path, template):
    model = tiny_tallformer(template)
    bank = working(tmp_path, template)
    model.attach_bank_writer(BankChunkWriter(bank))
    batch = bank_batch(bank)
    batch['frame_offsets'] = torch.tensor([40, 0])
    with pytest.raises(ValueError, match="vid0.*chunk grid"):
        model(batch, mode='loss')


def test_extra_state_keeps_the_detector_loss_normaliser(template):
    model = tiny_tallformer(template)
    model.detector.loss_normalizer = 123.25
    model.on_train_iter_start(41)
    state = model.extra_state()
    fresh = tiny_tallformer(template)
    fresh.load_extra_state(state)
    assert fresh.detector.loss_normalizer == 123.25 and fresh.train_iter == 41
    fresh.load_extra_state(dict(bank_step=5))  # checkpoints of earlier versions
    assert fresh.train_iter == 5 and fresh.detector.loss_normalizer == 123.25


def test_constructor_and_membank_keys_are_strict(template):
    cfg = tiny_cfg(template)
    cfg['membank'] = dict(templat=str(template))
    with pytest.raises(ConfigKeyError, match=r"model\.membank\.templat.*model\.membank\.template"):
        build_model(cfg)
    with pytest.raises(ConfigKeyError, match=r"model\.keep_ratio.*train_dataset\.pipeline_cfg"):
        build_model(tiny_cfg(template, keep_ratio=0.2))
    with pytest.raises(ConfigKeyError, match=r"model\.chunk_sise.*model\.chunk_size"):
        build_model(tiny_cfg(template, chunk_sise=32))


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


def test_uint8_test_windows_are_normalised_on_the_device(template):
    model = tiny_tallformer(template).eval()
    g = torch.Generator().manual_seed(1)
    pixels = torch.randint(0, 256, (2, 3, 128, 56, 56), generator=g, dtype=torch.uint8)
    masks = torch.ones(2, 128, dtype=torch.bool)
    masks[1, 100:] = False
    pixels[1, :, 100:] = 0
    common = dict(masks=masks, frame_offsets=torch.tensor([0, 96]),
                  video_index=torch.tensor([0, 0]),
                  metas=[dict(video_id='vid0', fps=15.0, duration=196 / 15, num_frames=196,
                              window_size=128)])
    mean, std = torch.tensor(MEAN), torch.tensor(STD)
    floats = (pixels.float() - mean.view(1, 3, 1, 1, 1)) / std.view(1, 3, 1, 1, 1)
    floats = floats * masks[:, None, :, None, None]
    (a,) = model(dict(common, imgs=floats), mode='predict')
    (b,) = model(dict(common, imgs=pixels, pixel_mean=mean, pixel_std=std), mode='predict')
    torch.testing.assert_close(a['segments'], b['segments'])
    torch.testing.assert_close(a['scores'], b['scores'])


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
    bank = working(tmp_path, template)
    model.attach_bank_writer(BankChunkWriter(bank))
    model.on_train_iter_start(1)
    batch = bank_batch(bank)  # collated in the loader, outside autocast
    with torch.autocast('cpu', dtype=torch.bfloat16):
        losses = model(batch, mode='loss')
    assert torch.isfinite(losses['final_loss'])
    losses['final_loss'].backward()
    work = MemoryBank.open(tmp_path / 'work' / 'membank')
    assert work.read_chunks('vid0', [0]).dtype == np.float16
    assert (work.read_steps('vid0', 0, work.num_chunks('vid0')) == 1).sum() == 1
    model.eval()
    imgs = torch.randn(2, 3, 128, 56, 56)
    batch = dict(imgs=imgs, masks=torch.ones(2, 128, dtype=torch.bool),
                 frame_offsets=torch.tensor([0, 0]), video_index=torch.tensor([0, 1]),
                 metas=[dict(video_id=v, fps=15.0, duration=128 / 15, num_frames=128,
                             window_size=128) for v in ('vid0', 'vid1')])
    with torch.autocast('cpu', dtype=torch.bfloat16):
        results = model(batch, mode='predict')
    assert [r['video_id'] for r in results] == ['vid0', 'vid1']
    assert all(r['segments'].dtype == torch.float32 for r in results)
