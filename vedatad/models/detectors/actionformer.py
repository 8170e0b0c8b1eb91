"""ActionFormer (Zhang et al., ECCV 2022): single-stage temporal action detector on features.

features (B, C, T) -> encoder pyramid -> neck -> shared cls / reg heads on every point of
every level -> training: focal + center-DIoU losses; inference: decode, NMS, seconds.

The constructor takes the keys of the reference YAML's ``model`` section; submodule names
(backbone, neck, cls_head, reg_head) match the reference checkpoints.
"""
import math
from collections import defaultdict

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import MODELS
from ...utils.config_keys import merge_section
from ..encoders import ConvEncoder, ConvTransformerEncoder
from ..heads import ClsHead, RegHead
from ..losses import ctr_diou_loss_1d, sigmoid_focal_loss
from ..necks import FPN1D, IdentityNeck
from ..point_generator import PointGenerator
from ..point_targets import assign_point_targets
from ..postprocess import (apply_nms, decode_level, fuse_external_scores,
                           load_external_scores, steps_to_seconds)

# defaults of the reference release (libs/core/config.py)
DEFAULT_TRAIN_CFG = dict(
    center_sample='radius', center_sample_radius=1.5, loss_weight=1.0, cls_prior_prob=0.01,
    init_loss_norm=2000, clip_grad_l2norm=-1, head_empty_cls=[], dropout=0.0, droppath=0.1,
    label_smoothing=0.0)
DEFAULT_TEST_CFG = dict(
    pre_nms_thresh=0.001, pre_nms_topk=5000, iou_threshold=0.1, min_score=0.01,
    max_seg_num=1000, nms_method='soft', nms_sigma=0.5, duration_thresh=0.05,
    multiclass_nms=True, ext_score_file=None, voting_thresh=0.75)
LOSS_NORM_MOMENTUM = 0.9
EXT_SCORE_TOPK = 2        # classes taken from the external video classifier
EXT_SCORE_NUM_PRED = 200  # detections kept per video before that fusion


def _merge_cfg(defaults, cfg, name):
    return merge_section(f'model.{name}', defaults, cfg)


def _seq_len_multiple(fpn_strides, win_sizes):
    """(needs per level, their least common multiple): every input length must be a multiple
    of each level's stride x local window, i.e. of the lcm."""
    # zip as the reference does (strides from fpn_start_level, windows from level 0)
    needs = [stride * (win // 2) * 2 if win > 1 else stride
             for stride, win in zip(fpn_strides, win_sizes)]
    return needs, math.lcm(*needs)


def _max_div_factor(max_seq_len, fpn_strides, win_sizes):
    """Every input length must be a multiple of this (stride x local window per level)."""
    needs, multiple = _seq_len_multiple(fpn_strides, win_sizes)
    if max_seq_len % multiple != 0:
        below = max_seq_len // multiple * multiple
        valid = ([below] if below else []) + [below + multiple]
        raise ValueError(
            f'max_seq_len {max_seq_len} must be divisible by {multiple} (pyramid strides '
            f'{list(fpn_strides)} x local windows n_mha_win_size={list(win_sizes)} need '
            f'{needs}); nearest valid values: {" or ".join(map(str, valid))}')
    return max(needs)


@MODELS.register_module()
class ActionFormer(nn.Module):

    def __init__(self, backbone_type='convTransformer', fpn_type='identity',
                 backbone_arch=(2, 2, 5), scale_factor=2, input_dim=2304, max_seq_len=2304,
                 max_buffer_len_factor=6.0, n_head=4, n_mha_win_size=-1, embd_kernel_size=3,
                 embd_dim=512, embd_with_ln=True, fpn_dim=512, fpn_with_ln=True,
                 fpn_start_level=0, head_dim=512,
                 regression_range=((0, 4), (4, 8), (8, 16), (16, 32), (32, 64), (64, 10000)),
                 head_num_layers=3, head_kernel_size=3, head_with_ln=True, use_abs_pe=False,
                 use_rel_pe=False, num_classes=97, input_noise=0.0, train_cfg=None,
                 test_cfg=None):
        super().__init__()
        # max_buffer_len_factor is accepted for YAML compatibility: points are not buffered
        self.train_cfg = _merge_cfg(DEFAULT_TRAIN_CFG, train_cfg, 'train_cfg')
        self.test_cfg = _merge_cfg(DEFAULT_TEST_CFG, test_cfg, 'test_cfg')
        self.num_classes = num_classes
        self.max_seq_len = max_seq_len
        self.input_noise = input_noise
        num_levels = backbone_arch[-1] + 1
        self.fpn_strides = [scale_factor ** i for i in range(fpn_start_level, num_levels)]
        if len(regression_range) != len(self.fpn_strides):
            raise ValueError(f'regression_range has {len(regression_range)} levels, the pyramid '
                             f'has {len(self.fpn_strides)} (backbone_arch={backbone_arch}, '
                             f'fpn_start_level={fpn_start_level})')
        if isinstance(n_mha_win_size, int):
            n_mha_win_size = [n_mha_win_size] * (1 + backbone_arch[-1])
        if len(n_mha_win_size) != 1 + backbone_arch[-1]:
            raise ValueError(f'n_mha_win_size needs {1 + backbone_arch[-1]} entries, '
                             f'got {n_mha_win_size}')
        self.max_div_factor = _max_div_factor(max_seq_len, self.fpn_strides, n_mha_win_size)

        self.backbone = self._build_encoder(
            backbone_type, input_dim, embd_dim, n_head, embd_kernel_size, max_seq_len,
            backbone_arch, list(n_mha_win_size), scale_factor, embd_with_ln, use_abs_pe,
            use_rel_pe)
        embd_total = self.backbone.out_channels
        neck_cls = {'identity': IdentityNeck, 'fpn': FPN1D}.get(fpn_type)
        if neck_cls is None:
            raise ValueError(f"fpn_type must be 'identity' or 'fpn', got {fpn_type!r}")
        self.neck = neck_cls([embd_total] * (backbone_arch[-1] + 1), fpn_dim, scale_factor,
                             start_level=fpn_start_level, with_ln=fpn_with_ln)
        self.point_generator = PointGenerator(self.fpn_strides, regression_range)
        self.cls_head = ClsHead(fpn_dim, head_dim, num_classes,
                                prior_prob=self.train_cfg['cls_prior_prob'],
                                num_layers=head_num_layers, kernel_size=head_kernel_size,
                                with_ln=head_with_ln,
                                empty_cls=self.train_cfg['head_empty_cls'])
        self.reg_head = RegHead(fpn_dim, head_dim, len(self.fpn_strides),
                                num_layers=head_num_layers, kernel_size=head_kernel_size,
                                with_ln=head_with_ln)
        # EMA of the number of positive points: a stable loss normaliser for small batches
        self.loss_normalizer = float(self.train_cfg['init_loss_norm'])
        self._ext_scores = None

    def _build_encoder(self, backbone_type, input_dim, embd_dim, n_head, kernel, max_len, arch,
                       win_sizes, scale_factor, with_ln, use_abs_pe, use_rel_pe):
        if backbone_type == 'convTransformer':
            return ConvTransformerEncoder(
                input_dim, embd_dim, n_head, kernel, max_len, arch=arch,
                mha_win_size=win_sizes, scale_factor=scale_factor, with_ln=with_ln,
                proj_pdrop=self.train_cfg['dropout'], path_pdrop=self.train_cfg['droppath'],
                use_abs_pe=use_abs_pe, use_rel_pe=use_rel_pe)
        if backbone_type == 'conv':
            return ConvEncoder(input_dim, embd_dim, kernel, arch=arch,
                               scale_factor=scale_factor, with_ln=with_ln)
        raise ValueError(f"backbone_type must be 'convTransformer' or 'conv', "
                         f"got {backbone_type!r}")

    @property
    def device(self):
        return next(self.parameters()).device

    # ------------------------------------------------------------------ inputs
    def padded_length(self, length):
        """Model input length for a sequence of `length` steps (reference rule): short
        sequences are padded to max_seq_len, longer ones to a multiple of max_div_factor."""
        if length <= self.max_seq_len:
            return self.max_seq_len
        return math.ceil(length / self.max_div_factor) * self.max_div_factor

    def _pad(self, feats, masks):
        # feats: B, C, T   masks: B, T -> B, C, T'  and  B, 1, T'
        extra = self.padded_length(feats.shape[-1]) - feats.shape[-1]
        feats = F.pad(feats, (0, extra))  # a new tensor: zeroed in place, no second copy
        masks = F.pad(masks.bool(), (0, extra), value=False)
        return feats.mul_(masks[:, None].to(feats.dtype)), masks[:, None]

    def _stack(self, batch):
        # list of per-video (C, T_i) -> B, C, T_max and B, T_max masks
        lengths = [item['feats'].shape[-1] for item in batch]
        feats = torch.zeros(len(batch), batch[0]['feats'].shape[0], max(lengths),
                            device=self.device)
        for row, item in zip(feats, batch):
            row[:, :item['feats'].shape[-1]] = item['feats'].to(self.device)
        masks = torch.arange(max(lengths), device=self.device)[None] < \
            torch.as_tensor(lengths, device=self.device)[:, None]
        return feats, masks

    # ----------------------------------------------------------------- network
    def _forward_net(self, feats, masks):
        """feats: B, C, T'  masks: B, 1, T' (T' already padded).

        Returns per level: cls logits (B, T_l, K), offsets (B, T_l, 2), masks (B, T_l),
        points (T_l, 4).
        """
        enc_feats, enc_masks = self.backbone(feats, masks)
        fpn_feats, fpn_masks = self.neck(enc_feats, enc_masks)
        points = self.point_generator([f.shape[-1] for f in fpn_feats], device=feats.device)
        cls_logits = [x.permute(0, 2, 1) for x in self.cls_head(fpn_feats, fpn_masks)]
        offsets = [x.permute(0, 2, 1) for x in self.reg_head(fpn_feats, fpn_masks)]
        return cls_logits, offsets, [m[:, 0] for m in fpn_masks], points

    # ---------------------------------------------------------------- training
    def forward_feats_loss(self, feats, masks, gt_segments, gt_labels):
        """Losses on batched features.

        feats: (B, C, T); masks: (B, T) bool; gt_segments: list of (N_i, 2) in feature
        steps; gt_labels: list of (N_i,) long. Returns cls_loss, reg_loss, final_loss.
        """
        feats, masks = self._pad(feats.to(self.device), masks.to(self.device))
        if self.training and self.input_noise > 0:
            feats = feats + self.input_noise * torch.randn_like(feats) * masks.to(feats.dtype)
        cls_logits, offsets, fpn_masks, points = self._forward_net(feats, masks)
        all_points = torch.cat(points, dim=0)  # P, 4
        cfg = self.train_cfg
        targets = [assign_point_targets(all_points, segs.to(self.device).float(),
                                        labels.to(self.device), self.num_classes,
                                        cfg['center_sample'], cfg['center_sample_radius'])
                   for segs, labels in zip(gt_segments, gt_labels)]
        gt_cls = torch.stack([t[0] for t in targets])  # B, P, K
        gt_offsets = torch.stack([t[1] for t in targets])  # B, P, 2
        return self._losses(torch.cat(cls_logits, 1), torch.cat(offsets, 1),
                            torch.cat(fpn_masks, 1), gt_cls, gt_offsets)

    def _losses(self, cls_logits, offsets, valid, gt_cls, gt_offsets):
        # cls_logits: B, P, K   offsets: B, P, 2   valid: B, P   gt_*: B, P, K / 2
        cfg = self.train_cfg
        positive = (gt_cls.sum(-1) > 0) & valid
        num_pos = int(positive.sum().item())
        if self.training:
            self.loss_normalizer = LOSS_NORM_MOMENTUM * self.loss_normalizer + \
                (1 - LOSS_NORM_MOMENTUM) * max(num_pos, 1)

        smoothing = cfg['label_smoothing']
        target = gt_cls[valid] * (1 - smoothing) + smoothing / (self.num_classes + 1)
        cls_loss = sigmoid_focal_loss(cls_logits[valid], target, reduction='sum')
        cls_loss = cls_loss / self.loss_normalizer

        pred_offsets = offsets[positive]
        if num_pos == 0:
            reg_loss = 0 * pred_offsets.sum()
        else:
            reg_loss = ctr_diou_loss_1d(pred_offsets, gt_offsets[positive], reduction='sum')
            reg_loss = reg_loss / self.loss_normalizer

        if cfg['loss_weight'] > 0:
            loss_weight = cfg['loss_weight']
        else:  # balance the two losses automatically
            loss_weight = cls_loss.detach() / max(reg_loss.item(), 0.01)
        return {'cls_loss': cls_loss, 'reg_loss': reg_loss,
                'final_loss': cls_loss + reg_loss * loss_weight}

    # --------------------------------------------------------------- inference
    @torch.no_grad()
    def forward_feats_predict(self, feats, masks, metas):
        """Detections in seconds for batched features.

        feats: (B, C, T); masks: (B, T) bool; metas: per-video dicts with video_id, fps,
        duration, feat_stride, feat_num_frames. Returns a list of dicts (CPU tensors)
        {'video_id', 'segments' (N, 2) seconds, 'scores' (N,), 'labels' (N,)}.
        """
        feats, masks = self._pad(feats.to(self.device), masks.to(self.device))
        cls_logits, offsets, fpn_masks, points = self._forward_net(feats, masks)
        return [self._predict_video(meta, [x[i] for x in cls_logits], [x[i] for x in offsets],
                                    [m[i] for m in fpn_masks], points)
                for i, meta in enumerate(metas)]

    def _predict_video(self, meta, cls_logits, offsets, masks, points):
        segs, scores, labels = self._decode_video(cls_logits, offsets, masks, points)
        return self.finalize_candidates(meta, segs, scores, labels)

    def _decode_video(self, cls_logits, offsets, masks, points):
        """Pre-NMS candidates of one video, all levels: segments (n, 2) in steps, scores,
        labels (CPU)."""
        cfg = self.test_cfg
        level_results = [decode_level(c.float(), o.float(), p, m, cfg['pre_nms_thresh'],
                                      cfg['pre_nms_topk'], cfg['duration_thresh'])
                         for c, o, p, m in zip(cls_logits, offsets, points, masks)]
        return tuple(torch.cat(x).cpu() for x in zip(*level_results))

    @torch.no_grad()
    def candidates_from_feats(self, feats, masks):
        """Pre-NMS candidates per sequence of a batch, in feature steps of that sequence:
        list of (segments (n, 2), scores (n,), labels (n,)). Callers that cut a video into
        windows shift them to video steps, merge the windows and call finalize_candidates."""
        feats, masks = self._pad(feats.to(self.device), masks.to(self.device))
        cls_logits, offsets, fpn_masks, points = self._forward_net(feats, masks)
        return [self._decode_video([x[i] for x in cls_logits], [x[i] for x in offsets],
                                   [m[i] for m in fpn_masks], points)
                for i in range(feats.shape[0])]

    def finalize_candidates(self, meta, segs, scores, labels):
        """NMS on one video's candidates (steps), conversion to seconds, optional fusion with
        external video-level scores. meta: video_id, fps, duration, feat_stride,
        feat_num_frames."""
        cfg = self.test_cfg
        segs, scores, labels = apply_nms(segs, scores, labels, cfg)
        segs = steps_to_seconds(segs, meta['feat_stride'], meta['feat_num_frames'],
                                meta['fps'], meta['duration'])
        # a segment wholly past the video's end clamps to zero length: not a detection
        keep = segs[:, 1] > segs[:, 0]
        segs, scores, labels = segs[keep], scores[keep], labels[keep]
        result = {'video_id': meta['video_id'], 'segments': segs, 'scores': scores,
                  'labels': labels.long()}
        if cfg['ext_score_file']:
            result = fuse_external_scores(result, self._external_scores(), EXT_SCORE_TOPK,
                                          EXT_SCORE_NUM_PRED, cfg['ext_score_file'])
        return result

    def _external_scores(self):
        if self._ext_scores is None:
            self._ext_scores = load_external_scores(self.test_cfg['ext_score_file'])
        return self._ext_scores

    # ------------------------------------------------------------ entry point
    def forward(self, batch, mode='loss'):
        """batch: list of per-video dicts (feats (C, T), segments, labels, fps, ...).

        mode='loss' -> dict of losses incl. 'final_loss'; mode='predict' -> list of
        per-video detections in seconds (see forward_feats_predict).
        """
        if mode == 'loss':
            missing = [item['video_id'] for item in batch
                       if item.get('segments') is None or item.get('labels') is None]
            if missing:
                raise ValueError(f'videos without ground truth in a training batch: {missing}')
            feats, masks = self._stack(batch)
            return self.forward_feats_loss(feats, masks, [item['segments'] for item in batch],
                                           [item['labels'] for item in batch])
        if mode == 'predict':
            return self._predict_batch(batch)
        raise ValueError(f"mode must be 'loss' or 'predict', got {mode!r}")

    def _predict_batch(self, batch):
        # videos padded to different lengths are run separately, so that every video
        # sees exactly the input it would see alone (the position embedding of long
        # videos is stretched to the padded length)
        groups = defaultdict(list)
        for idx, item in enumerate(batch):
            groups[self.padded_length(item['feats'].shape[-1])].append(idx)
        results = [None] * len(batch)
        for indices in groups.values():
            items = [batch[i] for i in indices]
            feats, masks = self._stack(items)
            for i, res in zip(indices, self.forward_feats_predict(feats, masks, items)):
                results[i] = res
        return results

    # ----------------------------------------------------- trainer integration
    def extra_state(self):
        return {'loss_normalizer': self.loss_normalizer}

    def load_extra_state(self, state):
        self.loss_normalizer = float(state.get('loss_normalizer', self.loss_normalizer))
