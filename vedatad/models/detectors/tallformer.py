"""TALLFormer: end-to-end training of Video Swin + ActionFormer with a long-term memory bank.

Training step for a window of W frames (n = W / 32 chunks). The data pipeline has already
done the per-chunk work (``vedatad/data``, bank-backed windows): it chose the window's
fresh chunks (``keep_ratio``, at least one), decoded only their frames (uint8) and read
the other chunks' features from the memory bank (float16) in the DataLoader workers. The
model then

1. normalises the fresh pixels on its device and runs them through the backbone, with
   gradients,
2. assembles the (B, C, W / 2) sequence in window order (fresh chunks + stale bank
   features),
3. writes the fresh chunks (detached) back into the bank through the writer the engine
   attached (``attach_bank_writer``; whole chunks, atomic),
4. Temporal Consistency Module → ActionFormer encoder, heads and losses.

The model does no disk I/O of its own: the engine opens the working bank
(``vedatad.engine.membank``), hands it to the training dataset (reads) and wraps it in the
writer given to the model (write-back stays here because only the forward pass has the
fresh features). At test time every chunk goes through the backbone and the bank is not
touched.

Units: the backbone emits one row per ``frames_per_row`` (2) frames; the TCM reduces by
``tcm.stride``; so one detector step covers ``feat_stride = frames_per_row * tcm.stride``
frames and step ``j`` is centred at ``feat_stride * j + frames_per_row / 2`` in continuous frame
coordinates (frame ``i`` spans ``[i, i + 1)``, as in the video dataset).
"""
import os
from pathlib import Path

import torch
import torch.nn as nn

from ...registry import MODELS
from ...utils.config_keys import ConfigKeyError, merge_section, unknown_key_messages

MEMBANK_DEFAULTS = dict(template=None, path=None, frozen=False)
CONSTRUCTOR_KEYS = ('type', 'backbone', 'tcm', 'detector', 'chunk_size', 'membank',
                    'frames_per_row')
# keys of earlier versions, now set elsewhere: the data pipeline chooses the fresh chunks
MOVED_KEYS = {'keep_ratio': 'train_dataset.pipeline_cfg.keep_ratio',
              'chunk_sampling': 'train_dataset.pipeline_cfg.chunk_sampling'}


def check_constructor_keys(unknown):
    """Unknown TALLFormer arguments -> ConfigKeyError naming each (moved keys say where)."""
    if not unknown:
        return
    lines = [f"config key 'model.{k}' moved to '{MOVED_KEYS[k]}' (the data pipeline chooses "
             'the fresh chunks and decodes only those)' for k in sorted(unknown) if k in MOVED_KEYS]
    lines += unknown_key_messages('model', [k for k in unknown if k not in MOVED_KEYS],
                                  CONSTRUCTOR_KEYS)
    raise ConfigKeyError('TALLFormer: ' + '\n'.join(lines) +
                         f'\n(allowed keys of model: {", ".join(CONSTRUCTOR_KEYS)})')


@MODELS.register_module()
class TALLFormer(nn.Module):
    """Args:
        backbone: Video Swin config (``dict(type='VideoSwin', ...)``).
        tcm: Temporal Consistency Module config; ``in_channels`` defaults to the backbone's.
        detector: ActionFormer config; ``input_dim`` defaults to the TCM's output size.
        chunk_size: frames per chunk (32: one memory-bank zarr chunk).
        membank: ``dict(template=PATH, path=None, frozen=False)``, read by the engine:
            ``path`` defaults to ``WORK_DIR/membank``, copied from ``template`` at the first
            start; ``frozen=True`` reads the bank and never writes it.
        frames_per_row: frames per backbone output row (Video Swin's temporal patch).

    The fresh-chunk choice (``keep_ratio``, ``chunk_sampling``) is a data-pipeline setting:
    ``train_dataset.pipeline_cfg``.
    """

    def __init__(self, backbone, tcm, detector, chunk_size=32, membank=None, frames_per_row=2,
                 **unknown):
        check_constructor_keys(unknown)
        super().__init__()
        self.membank_cfg = merge_section('model.membank', MEMBANK_DEFAULTS, membank)
        self.backbone = MODELS.build(backbone)
        step = getattr(self.backbone, 'frames_per_step', frames_per_row)
        if step != frames_per_row:
            raise ValueError(f'model.frames_per_row={frames_per_row} but the backbone emits one '
                             f'row per {step} frames')
        if chunk_size % frames_per_row:
            raise ValueError(f'model.chunk_size {chunk_size} is not a multiple of '
                             f'frames_per_row {frames_per_row}')
        tcm = dict(tcm)
        tcm.setdefault('in_channels', self.backbone.out_channels)
        self.tcm = MODELS.build(tcm)
        detector = dict(detector)
        detector.setdefault('input_dim', self.tcm.out_channels)
        self.detector = MODELS.build(detector)
        self.chunk_size = chunk_size
        self.frames_per_row = frames_per_row
        self.rows_per_chunk = chunk_size // frames_per_row
        self.bank_writer = None
        self.train_iter = 0
        self._stale = dict(ages=0.0, written=0, never=0)

    # ---------------------------------------------------------------- units
    @property
    def feat_stride(self):
        """Frames per detector step."""
        return self.frames_per_row * self.tcm.stride

    @property
    def feat_offset(self):
        """Centre of step 0 in continuous frame coordinates (frame i spans [i, i + 1))."""
        return self.frames_per_row / 2

    def frames_to_steps(self, frames):
        return (frames - self.feat_offset) / self.feat_stride

    # ---------------------------------------------------------------- engine hooks
    @property
    def feat_dim(self):
        """Feature size the backbone emits and the bank must store."""
        return self.backbone.out_channels

    def attach_bank_writer(self, writer):
        """``writer.write(video_ids, first_chunks, fresh_chunks, feats, step)`` stores the
        recomputed chunks (``vedatad.data.bank_windows.BankChunkWriter``); None detaches."""
        self.bank_writer = writer

    def run_state_paths(self, work_dir):
        """What a training run rewrites besides checkpoints: the working bank (not the
        template, and nothing when a frozen bank is read in place). A fresh run refuses to
        reuse it, or moves it aside with --overwrite so it is copied again from the template."""
        cfg = self.membank_cfg
        if cfg['frozen'] and cfg['path'] is None:
            return []
        path = Path(cfg['path'] or os.path.join(work_dir, 'membank'))
        if cfg['template'] and path.resolve() == Path(cfg['template']).resolve():
            return []  # the bank is the template itself, on purpose
        return [path]

    def on_train_iter_start(self, global_iter):
        self.train_iter = int(global_iter)

    def extra_state(self):
        # the detector's own state (loss normaliser) and the index of the last training
        # iteration that wrote the bank (staleness reference)
        return dict(detector=self.detector.extra_state(), bank_step=self.train_iter)

    def load_extra_state(self, state):
        self.train_iter = int(state.get('bank_step', self.train_iter))
        if state.get('detector') is not None:
            self.detector.load_extra_state(state['detector'])

    def record_staleness(self, steps, used):
        """Age (in steps) of the bank chunks this step used instead of recomputing them;
        chunks never rewritten since extraction are counted apart. steps, used: (B, n)."""
        steps = steps[used]
        written = steps[steps >= 0]
        self._stale['ages'] += float((self.train_iter - written).sum())
        self._stale['written'] += int(written.numel())
        self._stale['never'] += int(steps.numel() - written.numel())

    def epoch_stats(self):
        """Per-epoch scalars for the trainer's log: staleness of the bank chunks read."""
        st, self._stale = self._stale, dict(ages=0.0, written=0, never=0)
        total = st['written'] + st['never']
        if total == 0:
            return {}
        out = {'bank/never_rewritten_fraction': st['never'] / total}
        if st['written']:
            out['bank/mean_age_steps'] = st['ages'] / st['written']
        return out

    # ---------------------------------------------------------------- forward
    def forward(self, batch, mode='loss'):
        if mode == 'loss':
            return self.forward_loss(batch)
        if mode == 'predict':
            return self.forward_predict(batch)
        raise ValueError(f'unknown mode {mode!r}: expected "loss" or "predict"')

    @staticmethod
    def normalize_pixels(imgs, batch, frame_valid=None):
        """uint8 pixels -> (x - mean) / std in float32 on their device, zero on padded
        frames (as the CPU pipeline pads normalised windows); float input is taken as
        already normalised. imgs: (N, 3, T, H, W); frame_valid: (N, T) bool or None."""
        if imgs.dtype != torch.uint8:
            return imgs
        if 'pixel_mean' not in batch:
            raise ValueError('uint8 pixels need pixel_mean / pixel_std in the batch '
                             '(Normalize(on_device=True) in the data pipeline)')
        shape = (1, 3, 1, 1, 1)
        mean = batch['pixel_mean'].to(imgs.device, torch.float32).view(shape)
        std = batch['pixel_std'].to(imgs.device, torch.float32).view(shape)
        x = imgs.float().sub_(mean).div_(std)
        if frame_valid is not None:
            x.mul_(frame_valid[:, None, :, None, None].to(x.dtype))
        return x

    def _check_grid(self, batch, num_frames):
        if num_frames % self.chunk_size:
            raise ValueError(f'window of {num_frames} frames is not a multiple of '
                             f'{self.chunk_size}')
        for meta, o in zip(batch['metas'], batch['frame_offsets'].tolist()):
            if o % self.chunk_size:  # else bank reads/writes would hit the wrong chunks
                raise ValueError(f"video {meta['video_id']!r}: window starts at frame {o}, not "
                                 f'on the {self.chunk_size}-frame chunk grid of the memory bank')

    def assemble_window_features(self, batch):
        """Fresh chunks through the backbone + stale chunks from the batch → (B, C, W/2).

        batch: a bank-backed training batch (``collate_video_windows``): fresh_imgs
        (K, 3, cs, H, W), fresh_index (K,), bank_feats (B, n, rpc, C), masks (B, W), ...
        """
        if 'fresh_imgs' not in batch:
            raise ValueError('TALLFormer trains on bank-backed windows (fresh_imgs, bank_feats '
                             'from the data pipeline): set train_dataset.pipeline_cfg.keep_ratio')
        device = next(self.parameters()).device
        masks = batch['masks']
        B, W = masks.shape
        self._check_grid(batch, W)
        n, cs, rpc = W // self.chunk_size, self.chunk_size, self.rows_per_chunk
        bank = batch['bank_feats']  # B, n, rpc, C (float16)
        C = self.backbone.out_channels
        if bank.shape[-1] != C:
            raise ValueError(f'the memory bank holds {bank.shape[-1]}-d features but the '
                             f'backbone emits {C}-d ones: the bank was extracted with another '
                             'backbone; use the bank of this backbone (configs/extract/)')
        if tuple(bank.shape[:3]) != (B, n, rpc):
            raise ValueError(f'bank_feats of shape {tuple(bank.shape)} do not fit {B} windows '
                             f'of {n} chunks x {rpc} rows')
        fresh_index = batch['fresh_index'].to(device)
        chunk_valid = masks.view(B * n, cs).to(device)  # B*n, cs: real frames per chunk
        x = self.normalize_pixels(batch['fresh_imgs'].to(device, non_blocking=True), batch,
                                  chunk_valid[fresh_index])
        fresh = self.backbone(x)  # K, C, rpc
        # the stale window in the compute dtype (one copy, never the batch's own tensor),
        # then the fresh chunks put in place: grads reach `fresh`, no second window copy
        feats = torch.empty((B * n, rpc, C), dtype=fresh.dtype, device=device)
        feats.copy_(bank.view(B * n, rpc, C), non_blocking=True)
        feats.index_copy_(0, fresh_index, fresh.transpose(1, 2))
        used = masks.view(B, n, cs).any(-1)  # chunks holding real frames
        used.view(-1)[batch['fresh_index']] = False
        self.record_staleness(batch['bank_steps'], used)
        self.write_back(batch, fresh.detach())
        return feats.view(B, n * rpc, C).transpose(1, 2)  # B, C, W/2 (a view)

    def write_back(self, batch, fresh):
        """Store the recomputed chunks in the bank (fresh: (K, C, rpc), detached)."""
        if self.membank_cfg['frozen']:
            return
        if self.bank_writer is None:
            raise RuntimeError('TALLFormer training writes its fresh chunks back into the '
                               'working memory bank, but no bank writer is attached: '
                               'tools/trainval.py attaches one (vedatad.engine.membank); set '
                               'model.membank.frozen=True to train without writing')
        video_ids = [m['video_id'] for m in batch['metas']]
        first_chunks = [o // self.chunk_size for o in batch['frame_offsets'].tolist()]
        self.bank_writer.write(video_ids, first_chunks, batch['fresh_chunks'],
                               fresh.transpose(1, 2), step=self.train_iter)

    def forward_loss(self, batch):
        feats = self.assemble_window_features(batch)
        row_mask = batch['masks'].to(feats.device)[:, ::self.frames_per_row]
        feats, step_mask = self.tcm(feats, row_mask)
        gt_segments = [self.frames_to_steps(s.to(feats.device).float())
                       for s in batch['gt_segments']]
        gt_labels = [l.to(feats.device) for l in batch['gt_labels']]
        return self.detector.forward_feats_loss(feats, step_mask, gt_segments, gt_labels)

    # ---------------------------------------------------------------- inference
    def extract_window_features(self, imgs, masks, batch=None):
        """All chunks through the backbone (no bank), then the TCM → (B, C', L), (B, L).

        imgs: (B, 3, W, H, Wd) normalised float, or uint8 with ``batch`` holding
        pixel_mean / pixel_std (normalised here, on the device)."""
        B, _, W, H, Wd = imgs.shape
        n = W // self.chunk_size
        imgs = self.normalize_pixels(imgs, batch or {}, masks)
        chunks = imgs.view(B, 3, n, self.chunk_size, H, Wd).transpose(1, 2)
        feats = self.backbone(chunks.reshape(B * n, 3, self.chunk_size, H, Wd))  # B*n, C, rpc
        C = feats.shape[1]
        feats = feats.view(B, n, C, self.rows_per_chunk).permute(0, 2, 1, 3).reshape(B, C, -1)
        return self.tcm(feats, masks[:, ::self.frames_per_row])

    @torch.no_grad()
    def forward_predict(self, batch, windows_per_pass=4):
        """Detections in seconds per video.

        Every sliding window of a video runs through backbone, TCM and heads; the candidates
        of all windows are shifted to video time and merged *before* one NMS per video, so
        an action seen by two overlapping windows is suppressed like any other duplicate.
        Windows are loaded ``windows_per_pass`` at a time when the dataset hands out lazy
        ``windows`` (long videos), else sliced from the decoded ``imgs``.
        """
        device = next(self.parameters()).device
        masks, offsets, owner = batch['masks'], batch['frame_offsets'], batch['video_index']
        results = []
        for b, meta in enumerate(batch['metas']):
            rows = torch.nonzero(owner == b).flatten().tolist()  # this video's windows, in order
            parts = []
            for i in range(0, len(rows), windows_per_pass):
                sel = rows[i:i + windows_per_pass]
                if 'windows' in batch:
                    imgs = torch.as_tensor(batch['windows'][b].load(
                        list(range(i, i + len(sel)))))
                else:
                    imgs = batch['imgs'][sel]
                feats, step_mask = self.extract_window_features(
                    imgs.to(device, non_blocking=True), masks[sel].to(device), batch)
                cands = self.detector.candidates_from_feats(feats, step_mask)
                for (segs, scores, labels), r in zip(cands, sel):
                    shift = float(offsets[r]) / self.feat_stride  # window start in steps
                    parts.append((segs + shift, scores, labels))
            segs, scores, labels = (torch.cat(x) for x in zip(*parts))
            meta = dict(meta, feat_stride=self.feat_stride, feat_num_frames=self.frames_per_row)
            results.append(self.detector.finalize_candidates(meta, segs, scores, labels))
        return results

