"""The ActionFormer release's inference, re-implemented for benchmarks.

Everything runs on a vedatad ``ActionFormer``'s own modules and weights, but each step is
computed the way the official release computes it, so the two can be timed side by side on
identical inputs:

- local attention: overlapping chunks of 2w steps, scores skewed from chunk diagonals into a
  (T, 2w + 1) band, -inf outside the sequence, a -1e4 float key mask pushed through the same
  chunked product, softmax, zeroed padded queries, and the probabilities re-diagonalised
  against 3w-step value chunks (inputs as vedatad.models.attention.local_attention);
- LayerNorm over channels as explicit mean / variance reductions on (B, C, T);
- every masked conv multiplies by a float mask (strided masks by nearest interpolation);
- pre-NMS decoding per level (full sort of the thresholded scores), then soft-NMS class by
  class with a compiled sequential kernel (``release_soft_nms.c``, built here with the
  system C compiler, as the release builds its C++ extension), then seconds.
"""
import ctypes
import os
import shutil
import subprocess
import tempfile

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


# ------------------------------------------------------------------ network
def _masked_conv(module, x, mask):
    """MaskedConv1D as the release computes it: conv, then times a float mask."""
    out = module.conv(x)
    if module.stride > 1:
        float_mask = F.interpolate(mask.to(x.dtype), size=out.shape[-1], mode='nearest')
    else:
        float_mask = mask.to(x.dtype)
    return out * float_mask, float_mask.bool()


def _layer_norm(norm, x):
    """Channel LayerNorm of (B, C, T) by explicit reductions over C."""
    if norm.__class__.__name__ == 'Identity':
        return x
    mean = torch.mean(x, dim=1, keepdim=True)
    centred = x - mean
    var = torch.mean(centred ** 2, dim=1, keepdim=True)
    out = centred / torch.sqrt(var + norm.eps)
    out *= norm.weight
    out += norm.bias
    return out


def _local_mhca(attn, x, mask):
    """Local multi-head conv-attention; x: B, C, T -> B, C, T / stride."""
    if attn.window_overlap == 0:
        raise NotImplementedError('the benchmark re-implements local attention only')
    q, q_mask = _masked_conv(attn.query_conv, x, mask)
    k, kv_mask = _masked_conv(attn.key_conv, x, mask)
    v, _ = _masked_conv(attn.value_conv, x, mask)
    q = attn.query(_layer_norm(attn.query_norm, q))
    k = attn.key(_layer_norm(attn.key_norm, k))
    v = attn.value(_layer_norm(attn.value_norm, v))
    B, C, T = q.shape
    q, k, v = (t.view(B, attn.n_head, attn.head_dim, T).transpose(2, 3) for t in (q, k, v))
    out = release_local_attention(q * attn.scale, k, v, kv_mask[:, 0], attn.window_overlap,
                                  attn.rel_pe)                          # B, nh, T, hs
    out = out.transpose(2, 3).contiguous().view(B, C, T)
    return attn.proj(out) * q_mask.to(out.dtype), q_mask


def _transformer_block(block, x, mask):
    out, out_mask = _local_mhca(block.attn, _layer_norm(block.ln1, x), mask)
    valid = out_mask.to(out.dtype)
    out = block.pool_skip(x) * valid + block.drop_path_attn(out)
    out = out + block.drop_path_mlp(block.mlp(_layer_norm(block.ln2, out)) * valid)
    return out, out_mask


def _encoder(encoder, x, mask):
    if encoder.proj is not None or encoder.use_abs_pe:
        raise NotImplementedError('the benchmark re-implements single-input models without '
                                  'absolute position embedding (THUMOS14 I3D)')
    for conv, norm in zip(encoder.embd, encoder.embd_norm):
        x, mask = _masked_conv(conv, x, mask)
        x = torch.relu_(_layer_norm(norm, x))
    for block in encoder.stem:
        x, mask = _transformer_block(block, x, mask)
    feats, masks = [x], [mask]
    for block in encoder.branch:
        x, mask = _transformer_block(block, x, mask)
        feats.append(x)
        masks.append(mask)
    return feats, masks


def _tower(head, x, mask):
    for conv, norm in zip(head.head, head.norm):
        x, _ = _masked_conv(conv, x, mask)
        x = torch.relu(_layer_norm(norm, x))
    return x


def release_points(model, max_len):
    """The release's point buffer, made once at build time: (t, reg_min, reg_max, stride)
    for every step of every level up to max_len input steps."""
    points = []
    for stride, (lo, hi) in zip(model.point_generator.fpn_strides,
                                model.point_generator.regression_range):
        t = torch.arange(0, max_len, stride)[:, None].float()
        extra = torch.tensor([lo, hi, float(stride)]).repeat(t.shape[0], 1)
        points.append(torch.cat((t, extra), dim=1))
    return points


def release_network(model, feats, masks, point_buffer):
    """feats: B, C, T   masks: B, 1, T (padded as the release pads) ->
    per level cls logits (B, T_l, K), offsets (B, T_l, 2), masks (B, T_l), points."""
    enc_feats, enc_masks = _encoder(model.backbone, feats, masks)
    fpn_masks = [enc_masks[lvl] for lvl in model.neck.levels]
    fpn_feats = [_layer_norm(norm, enc_feats[lvl])
                 for norm, lvl in zip(model.neck.fpn_norms, model.neck.levels)]
    points = [buf[:f.shape[-1]] for buf, f in zip(point_buffer, fpn_feats)]
    cls_logits, offsets = [], []
    for level, (x, m) in enumerate(zip(fpn_feats, fpn_masks)):
        logits, _ = _masked_conv(model.cls_head.cls_head, _tower(model.cls_head, x, m), m)
        offs, _ = _masked_conv(model.reg_head.offset_head, _tower(model.reg_head, x, m), m)
        cls_logits.append(logits.permute(0, 2, 1))
        offsets.append(F.relu(model.reg_head.scale[level](offs)).permute(0, 2, 1))
    return cls_logits, offsets, [m.squeeze(1) for m in fpn_masks], points


def release_pad(model, feats):
    """One video's (C, T) features padded as the release pads at inference: to max_seq_len,
    or to the next multiple of max_div_factor -> (1, C, T'), (1, 1, T')."""
    length = feats.shape[-1]
    if length <= model.max_seq_len:
        padded = model.max_seq_len
    else:
        div = model.max_div_factor
        padded = (length + div - 1) // div * div
    batch = F.pad(feats, [0, padded - length], value=0.0).unsqueeze(0)
    masks = torch.arange(padded)[None, :] < torch.as_tensor([length])[:, None]
    return batch, masks.unsqueeze(1)


# -------------------------------------------------------- post-processing
def release_decode(model, cls_logits, offsets, masks, points):
    """Pre-NMS candidates of one video (all inputs of that video, per level)."""
    cfg = model.test_cfg
    segs_all, scores_all, labels_all = [], [], []
    for cls_i, offsets_i, pts_i, mask_i in zip(cls_logits, offsets, points, masks):
        prob = (cls_i.sigmoid() * mask_i.unsqueeze(-1)).flatten()
        keep = prob > cfg['pre_nms_thresh']
        prob = prob[keep]
        flat_idx = keep.nonzero(as_tuple=True)[0]
        num_topk = min(cfg['pre_nms_topk'], flat_idx.size(0))
        prob, order = prob.sort(descending=True)
        prob = prob[:num_topk].clone()
        flat_idx = flat_idx[order[:num_topk]].clone()
        pt_idx = torch.div(flat_idx, model.num_classes, rounding_mode='floor')
        labels = torch.fmod(flat_idx, model.num_classes)
        offs, pts = offsets_i[pt_idx], pts_i[pt_idx]
        left = pts[:, 0] - offs[:, 0] * pts[:, 3]
        right = pts[:, 0] + offs[:, 1] * pts[:, 3]
        segs = torch.stack((left, right), -1)
        long_enough = (right - left) > cfg['duration_thresh']
        segs_all.append(segs[long_enough])
        scores_all.append(prob[long_enough])
        labels_all.append(labels[long_enough])
    return torch.cat(segs_all), torch.cat(scores_all), torch.cat(labels_all)


class ReleaseSoftNMS:
    """The compiled sequential soft-NMS kernel (release_soft_nms.c), built once per process
    with the system C compiler into a temporary folder and called through ctypes."""

    SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'release_soft_nms.c')

    def __init__(self):
        compiler = os.environ.get('CC') or shutil.which('cc') or shutil.which('gcc')
        if compiler is None:
            raise RuntimeError('no C compiler (cc/gcc) found: the release-side soft-NMS '
                               'kernel is compiled code, as in the release')
        self._tmp = tempfile.TemporaryDirectory(prefix='release_soft_nms_')
        lib_path = os.path.join(self._tmp.name, 'release_soft_nms.so')
        subprocess.run([compiler, '-O3', '-shared', '-fPIC', '-o', lib_path, self.SOURCE,
                        '-lm'], check=True)
        lib = ctypes.CDLL(lib_path)
        f32, i64 = ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_int64)
        lib.release_soft_nms.argtypes = [f32, f32, f32, f32, i64, ctypes.c_int64,
                                         ctypes.c_float, ctypes.c_float]
        lib.release_soft_nms.restype = ctypes.c_int64
        self._fn = lib.release_soft_nms

    def __call__(self, segs, scores, sigma, min_score):
        """segs (n, 2), scores (n,) float32 CPU -> dets (k, 3) [x1, x2, score], indices (k,)."""
        x1 = segs[:, 0].contiguous().clone()
        x2 = segs[:, 1].contiguous().clone()
        score = scores.contiguous().clone()
        length = x2 - x1 + 1e-6
        index = torch.arange(segs.shape[0], dtype=torch.int64)
        f32, i64 = ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_int64)
        kept = self._fn(*(ctypes.cast(t.data_ptr(), f32) for t in (x1, x2, score, length)),
                        ctypes.cast(index.data_ptr(), i64), segs.shape[0], float(sigma),
                        float(min_score))
        dets = torch.stack((x1[:kept], x2[:kept], score[:kept]), dim=1)
        return dets, index[:kept]


def release_batched_nms(kernel, segs, scores, labels, cfg):
    """Class-wise Gaussian soft-NMS as the release runs it: one kernel call per class,
    each capped at max_seg_num, then the best max_seg_num overall."""
    if not (cfg['nms_method'] == 'soft' and cfg['multiclass_nms']):
        raise NotImplementedError('the benchmark re-implements class-wise soft-NMS only')
    if segs.shape[0] == 0:
        return segs.new_zeros((0, 2)), scores.new_zeros((0,)), labels.new_zeros((0,))
    max_num = cfg['max_seg_num']
    out_segs, out_scores, out_labels = [], [], []
    for class_id in torch.unique(labels):
        rows = torch.where(labels == class_id)[0]
        dets, index = kernel(segs[rows], scores[rows], cfg['nms_sigma'], cfg['min_score'])
        n = min(len(index), max_num) if max_num > 0 else len(index)
        out_segs.append(dets[:n, :2].clone())
        out_scores.append(dets[:n, 2].clone())
        out_labels.append(labels[rows][index][:n].clone())
    segs, scores, labels = torch.cat(out_segs), torch.cat(out_scores), torch.cat(out_labels)
    _, order = scores.sort(descending=True)
    n = min(max_num, segs.shape[0])
    return segs[order[:n]], scores[order[:n]], labels[order[:n]]


def release_postprocess(model, kernel, outputs, meta):
    """Decode, NMS and seconds for one video of a batch of one, as the release does."""
    cls_logits, offsets, masks, points = outputs
    segs, scores, labels = release_decode(model, [x[0] for x in cls_logits],
                                          [x[0] for x in offsets], [m[0] for m in masks],
                                          points)
    segs, scores, labels = release_batched_nms(kernel, segs.cpu(), scores.cpu(), labels.cpu(),
                                               model.test_cfg)
    if segs.shape[0] > 0:
        segs = (segs * meta['feat_stride'] + 0.5 * meta['feat_num_frames']) / meta['fps']
        segs[segs <= 0.0] *= 0.0
        segs[segs >= meta['duration']] = segs[segs >= meta['duration']] * 0.0 + meta['duration']
    return {'video_id': meta['video_id'], 'segments': segs, 'scores': scores, 'labels': labels}
