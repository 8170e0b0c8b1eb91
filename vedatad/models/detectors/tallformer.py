"""TALLFormer: end-to-end training of Video Swin + ActionFormer with a long-term memory bank.

Training step for a window of W frames (W / 32 chunks):

1. pick ``floor(n_chunks * keep_ratio)`` chunks per video (at least one),
2. run only those through the backbone, with gradients,
3. read every other chunk's features from the on-disk memory bank,
4. assemble the (B, C, W / 2) sequence in window order,
5. write the fresh chunks (detached, float16) back into the bank in place,
6. Temporal Consistency Module → ActionFormer encoder, heads and losses.

At test time every chunk goes through the backbone and the bank is not touched.

Units: the backbone emits one row per ``frames_per_row`` (2) frames; the TCM reduces by
``tcm.stride``; so one detector step covers ``feat_stride = frames_per_row * tcm.stride``
frames and step ``j`` is centred at ``feat_stride * j + frames_per_row / 2`` in continuous frame
coordinates (frame ``i`` spans ``[i, i + 1)``, as in the video dataset).
"""
import os
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn

from ...membank import MemoryBank
from ...registry import MODELS
from ..chunk_sampling import select_fresh_chunks


@MODELS.register_module()
class TALLFormer(nn.Module):
    """Args:
        backbone: Video Swin config (``dict(type='VideoSwin', ...)``).
        tcm: Temporal Consistency Module config; ``in_channels`` defaults to the backbone's.
        detector: ActionFormer config; ``input_dim`` defaults to the TCM's output size.
        chunk_size: frames per chunk (32: one memory-bank zarr chunk).
        keep_ratio: fraction of a window's chunks recomputed with gradients per step.
        chunk_sampling: ``random`` | ``uniform`` | ``uniform_jitter``.
        membank: ``dict(template=PATH, path=None, frozen=False)``; ``path`` defaults to
            ``WORK_DIR/membank``, copied from ``template`` at the first start.
        frames_per_row: frames per backbone output row (Video Swin's temporal patch).
    """

    def __init__(self, backbone, tcm, detector, chunk_size=32, keep_ratio=0.15,
                 chunk_sampling='random', membank=None, frames_per_row=2):
        super().__init__()
        self.backbone = MODELS.build(backbone)
        tcm = dict(tcm)
        tcm.setdefault('in_channels', self.backbone.out_channels)
        self.tcm = MODELS.build(tcm)
        detector = dict(detector)
        detector.setdefault('input_dim', self.tcm.out_channels)
        self.detector = MODELS.build(detector)
        self.chunk_size = chunk_size
        self.keep_ratio = keep_ratio
        self.chunk_sampling = chunk_sampling
        self.frames_per_row = frames_per_row
        self.rows_per_chunk = chunk_size // frames_per_row
        self.membank_cfg = {**dict(template=None, path=None, frozen=False), **(membank or {})}
        self.bank = None
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
    def setup_work_dir(self, work_dir, resume=False, rank=0):
        """Open the per-experiment working bank, copying the template on the first start."""
        cfg = self.membank_cfg
        path = Path(cfg['path'] or os.path.join(work_dir, 'membank'))
        if cfg['frozen'] and cfg['path'] is None and cfg['template']:
            path = Path(cfg['template'])  # reads only: no private copy needed
        elif rank == 0 and not (path / 'zarr.json').exists():
            if not cfg['template']:
                raise FileNotFoundError(
                    f'model.membank.template is not set and no working bank exists at {path}')
            if resume:
                raise FileNotFoundError(f'resuming, but the working bank {path} is missing')
            MemoryBank.copy(cfg['template'], path)
        if dist.is_available() and dist.is_initialized():
            dist.barrier()  # other ranks open the bank only once rank 0 has copied it
        self.bank = MemoryBank.open(path, mode='r+', frozen=cfg['frozen'])

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
        # index of the last training iteration that wrote the bank (staleness reference)
        return dict(bank_step=self.train_iter)

    def load_extra_state(self, state):
        self.train_iter = int(state.get('bank_step', self.train_iter))

    def record_staleness(self, video_ids, first_chunks, picks, n):
        """Age (in steps) of the bank chunks this step used instead of recomputing them;
        chunks never rewritten since extraction are counted apart."""
        for vid, c0, p in zip(video_ids, first_chunks, picks):
            steps = self.bank.read_steps(vid, c0, n)
            used = np.ones(n, bool)
            used[p] = False
            used[self.bank.num_chunks(vid) - c0:] = False  # padding past the video end
            steps = steps[used]
            written = steps[steps >= 0]
            self._stale['ages'] += float((self.train_iter - written).sum())
            self._stale['written'] += int(written.size)
            self._stale['never'] += int(steps.size - written.size)

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

    def assemble_window_features(self, imgs, masks, offsets, video_ids):
        """Fresh chunks through the backbone + stale chunks from the bank → (B, C, W/2)."""
        if self.bank is None:
            raise RuntimeError('TALLFormer trains with a memory bank: call setup_work_dir first '
                               '(tools/trainval.py does) and set model.membank.template')
        B, _, W, H, Wd = imgs.shape  # B, 3, W, H, W
        if W % self.chunk_size:
            raise ValueError(f'window of {W} frames is not a multiple of {self.chunk_size}')
        n = W // self.chunk_size
        for vid, o in zip(video_ids, offsets):
            if int(o) % self.chunk_size:  # else bank reads/writes would hit the wrong chunks
                raise ValueError(f'video {vid!r}: window starts at frame {int(o)}, not on the '
                                 f'{self.chunk_size}-frame chunk grid of the memory bank')
        first_chunks = [int(o) // self.chunk_size for o in offsets]
        valid_chunks = [int(np.ceil(float(m.sum()) / self.chunk_size)) for m in masks]
        # drawn from numpy's global state, which the trainer seeds per epoch and rank
        rng = np.random.default_rng(np.random.randint(0, 2**31))
        picks = [select_fresh_chunks(n, self.keep_ratio, self.chunk_sampling, rng, v)
                 for v in valid_chunks]

        # stale features for the whole window, from disk
        stale = np.stack([self.bank.read_window(vid, c0, n) for vid, c0 in
                          zip(video_ids, first_chunks)])  # B, n * rpc, C
        self.record_staleness(video_ids, first_chunks, picks, n)
        stale = torch.from_numpy(stale).to(imgs.device)
        C = stale.shape[-1]
        stale = stale.view(B * n, self.rows_per_chunk, C).transpose(1, 2)  # B*n, C, rpc

        # fresh features with gradients; pick the chunks before any copy of the window
        chunks = imgs.view(B, 3, n, self.chunk_size, H, Wd).transpose(1, 2)  # B, n, 3, cs, H, W
        b_idx = torch.as_tensor(np.concatenate([np.full(len(p), b) for b, p in enumerate(picks)]),
                                device=imgs.device)
        c_idx = torch.as_tensor(np.concatenate(picks), device=imgs.device)
        flat_idx = b_idx * n + c_idx
        fresh = self.backbone(chunks[b_idx, c_idx])  # K, 3, cs, H, W -> K, C, rpc
        fresh = fresh.to(stale.dtype)  # K, C, rpc

        feats = stale.index_copy(0, flat_idx, fresh)  # out of place: grads reach `fresh`
        feats = feats.view(B, n, C, self.rows_per_chunk).permute(0, 2, 1, 3)
        feats = feats.reshape(B, C, n * self.rows_per_chunk)

        self.write_back(fresh.detach(), picks, first_chunks, video_ids)
        return feats

    def write_back(self, fresh, picks, first_chunks, video_ids):
        """Store the recomputed chunks in the bank (whole chunks only, inside the video)."""
        if self.membank_cfg['frozen']:
            return
        rows = fresh.transpose(1, 2).float().cpu().numpy()  # K, rpc, C
        start = 0
        for vid, c0, p in zip(video_ids, first_chunks, picks):
            ids = c0 + p
            part = rows[start:start + len(p)]
            start += len(p)
            inside = ids < self.bank.num_chunks(vid)  # padding past the video end is not stored
            if inside.any():
                self.bank.write_chunks(vid, ids[inside].tolist(), part[inside],
                                       step=self.train_iter)

    def forward_loss(self, batch):
        device = next(self.parameters()).device
        imgs = batch['imgs'].to(device, non_blocking=True)  # B, 3, W, H, W
        masks = batch['masks'].to(device)  # B, W
        video_ids = [m['video_id'] for m in batch['metas']]
        feats = self.assemble_window_features(imgs, masks, batch['frame_offsets'], video_ids)
        row_mask = masks[:, ::self.frames_per_row]
        feats, step_mask = self.tcm(feats, row_mask)
        gt_segments = [self.frames_to_steps(s.to(feats.device).float())
                       for s in batch['gt_segments']]
        gt_labels = [l.to(feats.device) for l in batch['gt_labels']]
        return self.detector.forward_feats_loss(feats, step_mask, gt_segments, gt_labels)

    # ---------------------------------------------------------------- inference
    def extract_window_features(self, imgs, masks):
        """All chunks through the backbone (no bank), then the TCM → (B, C', L), (B, L)."""
        B, _, W, H, Wd = imgs.shape
        n = W // self.chunk_size
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
                    imgs.to(device, non_blocking=True), masks[sel].to(device))
                cands = self.detector.candidates_from_feats(feats, step_mask)
                for (segs, scores, labels), r in zip(cands, sel):
                    shift = float(offsets[r]) / self.feat_stride  # window start in steps
                    parts.append((segs + shift, scores, labels))
            segs, scores, labels = (torch.cat(x) for x in zip(*parts))
            meta = dict(meta, feat_stride=self.feat_stride, feat_num_frames=self.frames_per_row)
            results.append(self.detector.finalize_candidates(meta, segs, scores, labels))
        return results
