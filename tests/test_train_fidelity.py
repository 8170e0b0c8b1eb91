"""Training follows the ActionFormer release step for step.

With the same initial weights (an official-layout checkpoint through ``load_from``), the same
data and nothing random (no crop, dropout 0, drop path 0, the whole training set in one
batch), the trainer's per-iteration losses and learning rates (``scalars.jsonl``) and its final
weights and EMA weights equal those of an independent loop written here after the release's
``train.py`` / ``libs/utils/train_utils.py`` / ``libs/modeling/meta_archs.py``: targets by
centre sampling within regression ranges with the shortest-action rule and its 1e-3 length
ties, sigmoid focal + centre-DIoU losses normalised by an EMA of the positive count, label
smoothing, AdamW with the release's decay / no-decay groups, linear warm-up + cosine in the
release's chained per-iteration form, gradient clipping, model EMA.

Only the network's layers (backbone, neck, heads) are shared with the code under test; their
equality with the release is what the inference interop tests check.
"""
import json
import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from torch import nn

import vedatad.data  # noqa: F401
import vedatad.models  # noqa: F401
from vedatad.engine import Trainer
from vedatad.engine.checkpoint import load_checkpoint
from vedatad.engine.scalars import read_scalars
from vedatad.registry import MODELS

FEAT_STRIDE, NUM_FRAMES, FPS, DIM, NUM_CLASSES = 4, 16, 30.0, 24, 3
MAX_SEQ_LEN = 64
STRIDES = (1, 2, 4)
REG_RANGES = ((0, 4), (4, 8), (8, 10000))
ITERS, WARMUP, LR, WD, CLIP, EMA_DECAY = 7, 2, 5e-3, 0.05, 1.0, 0.9
INIT_LOSS_NORM, SMOOTHING, RADIUS = 20.0, 0.1, 1.5

# steps (in feature steps) of each training video's actions: ties of equal length on one
# point (two classes), an exact duplicate, nested actions, one starting before the first
# feature, one long enough for the top level
ACTIONS = {
    'v0': (60, [(4.0, 12.0, 0), (6.0, 14.0, 1), (30.0, 38.0, 2), (30.0, 38.0, 2)]),
    'v1': (48, [(-1.5, 5.0, 1), (10.0, 40.0, 0), (20.0, 26.0, 2)]),
    'v2': (64, [(2.0, 3.5, 2), (8.0, 56.0, 1), (9.0, 17.0, 1), (9.0005, 17.0, 0)]),
}


def _seconds(step):
    return (step * FEAT_STRIDE + 0.5 * NUM_FRAMES) / FPS


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp('fidelity')
    rng = np.random.default_rng(3)
    database = {}
    os.makedirs(root / 'features')
    for vid, (length, actions) in ACTIONS.items():
        np.save(root / 'features' / f'{vid}.npy',
                rng.normal(size=(length, DIM)).astype(np.float32))
        database[vid] = {'subset': 'training', 'fps': FPS,
                         'duration': _seconds(length), 'annotations': [
                             {'segment': [_seconds(s), _seconds(e)], 'label': f'c{c}',
                              'label_id': c} for s, e, c in actions]}
    database['val0'] = {'subset': 'validation', 'fps': FPS, 'duration': _seconds(40),
                        'annotations': [{'segment': [_seconds(3), _seconds(9)], 'label': 'c0',
                                         'label_id': 0}]}
    np.save(root / 'features' / 'val0.npy', rng.normal(size=(40, DIM)).astype(np.float32))
    json_file = root / 'annotations.json'
    json_file.write_text(json.dumps({'database': database}))
    return str(json_file), str(root / 'features')


def _config(json_file, folder, init_ckpt):
    data = dict(type='Thumos14FeatureDataset', json_file=json_file, feat_folder=folder,
                feat_stride=FEAT_STRIDE, num_frames=NUM_FRAMES, trunc_thresh=0.5,
                crop_ratio=None, max_seq_len=MAX_SEQ_LEN, input_dim=DIM,
                num_classes=NUM_CLASSES)
    return Config(dict(
        model=dict(type='ActionFormer', input_dim=DIM, num_classes=NUM_CLASSES,
                   max_seq_len=MAX_SEQ_LEN, backbone_arch=(2, 1, 2), n_head=2,
                   n_mha_win_size=5, embd_dim=16, fpn_dim=16, head_dim=16,
                   regression_range=[list(r) for r in REG_RANGES],
                   train_cfg=dict(init_loss_norm=INIT_LOSS_NORM, clip_grad_l2norm=CLIP,
                                  droppath=0.0, dropout=0.0, label_smoothing=SMOOTHING,
                                  center_sample='radius', center_sample_radius=RADIUS)),
        train_dataset=dict(data, split=['training'], is_training=True),
        val_dataset=dict(data, split=['validation'], is_training=False),
        train_dataloader=dict(batch_size=len(ACTIONS), num_workers=0),
        optimizer=dict(type='AdamW', lr=LR, weight_decay=WD),
        scheduler=dict(type='cosine', warmup=True, warmup_epochs=WARMUP),
        train_cfg=dict(epochs=ITERS, ckpt_interval=ITERS, clip_grad_l2norm=CLIP,
                       ema=dict(decay=EMA_DECAY), log_interval=0),
        load_from=init_ckpt, device='cpu'))


# ------------------------------------------------------------------ the reference loop

def reference_batch(json_file, folder):
    """Padded features (B, C, T), masks (B, 1, T) and per-video targets in feature steps,
    read directly from the files (the release's thumos14.py conversion)."""
    database = json.load(open(json_file))['database']
    feats, masks, segs, labels = [], [], [], []
    for vid, entry in database.items():
        if entry['subset'] != 'training':
            continue
        x = torch.from_numpy(np.load(os.path.join(folder, vid + '.npy')).T.copy())  # C, T
        padded = torch.zeros(DIM, MAX_SEQ_LEN)
        padded[:, :x.shape[1]] = x
        feats.append(padded)
        masks.append(torch.arange(MAX_SEQ_LEN) < x.shape[1])
        seg = np.asarray([a['segment'] for a in entry['annotations']], dtype=np.float32)
        segs.append(torch.from_numpy(seg * entry['fps'] / FEAT_STRIDE
                                     - 0.5 * NUM_FRAMES / FEAT_STRIDE))
        labels.append(torch.tensor([a['label_id'] for a in entry['annotations']]))
    return torch.stack(feats), torch.stack(masks)[:, None], segs, labels


def reference_points():
    rows = []
    for stride, (lo, hi) in zip(STRIDES, REG_RANGES):
        for i in range(MAX_SEQ_LEN // stride):
            rows.append([i * stride, lo, hi, stride])
    return torch.tensor(rows, dtype=torch.float32)  # P, 4


def reference_targets(points, segs, labels):
    """Per point: multi-hot class target and (left, right) distances / stride."""
    cls_t = torch.zeros(len(points), NUM_CLASSES)
    reg_t = torch.zeros(len(points), 2)
    for p, (t, lo, hi, stride) in enumerate(points.tolist()):
        best, best_len = None, math.inf
        fits = []
        for n, (s, e) in enumerate(segs.tolist()):
            centre = 0.5 * (s + e)
            left = t - max(centre - RADIUS * stride, s)
            right = min(centre + RADIUS * stride, e) - t
            far = max(t - s, e - t)
            if min(left, right) > 0 and lo <= far <= hi:
                fits.append(n)
                length = e - s
                if length < best_len:
                    best, best_len = n, length
        if best is None:
            continue
        for n in fits:
            s, e = segs[n].tolist()
            if e - s <= best_len + 1e-3:
                cls_t[p, int(labels[n])] = 1.0
        s, e = segs[best].tolist()
        reg_t[p] = torch.tensor([t - s, e - t]) / stride
    return cls_t, reg_t


def focal(logits, targets, alpha=0.25, gamma=2.0):
    p = torch.sigmoid(logits)
    ce = -(targets * F.logsigmoid(logits) + (1 - targets) * F.logsigmoid(-logits))
    p_t = p * targets + (1 - p) * (1 - targets)
    return ((alpha * targets + (1 - alpha) * (1 - targets)) * ce * (1 - p_t) ** gamma).sum()


def diou(pred, target):
    lp, rp, lg, rg = pred[:, 0], pred[:, 1], target[:, 0], target[:, 1]
    inter = torch.min(lp, lg) + torch.min(rp, rg)
    union = lp + rp + lg + rg - inter
    enclosing = torch.max(lp, lg) + torch.max(rp, rg)
    rho = 0.5 * (rp - lp - rg + lg)
    return (1 - inter / union + (rho / enclosing) ** 2).sum()


def reference_groups(model):
    """The release's make_optimizer split, written out."""
    decay, no_decay = set(), set()
    for mn, m in model.named_modules():
        kind = type(m).__name__
        for pn, _ in m.named_parameters(recurse=False):
            name = f'{mn}.{pn}' if mn else pn
            if pn.endswith('bias'):
                no_decay.add(name)
            elif pn.endswith('weight') and (isinstance(m, (nn.Linear, nn.Conv1d))
                                            or kind == 'MaskedConv1D'):
                decay.add(name)
            elif pn.endswith('weight') and kind in ('LayerNorm', 'GroupNorm'):
                no_decay.add(name)
            elif pn.endswith('scale') and kind in ('Scale', 'AffineDropPath'):
                no_decay.add(name)
            elif pn.endswith('rel_pe'):
                no_decay.add(name)
    params = dict(model.named_parameters())
    assert decay | no_decay == set(params) and not decay & no_decay
    return [{'params': [params[n] for n in sorted(decay)], 'weight_decay': WD},
            {'params': [params[n] for n in sorted(no_decay)], 'weight_decay': 0.0}]


def chained_warmup_cosine(num_steps, warmup, total, base, eta_min=1e-8):
    """The release's LinearWarmupCosineAnnealingLR in its recursive (chained) form."""
    lrs = [0.0]
    for t in range(1, num_steps):
        prev = lrs[-1]
        if t < warmup:
            lrs.append(prev + base / (warmup - 1))
        elif t == warmup:
            lrs.append(base)
        else:
            span = total - warmup
            lrs.append((1 + math.cos(math.pi * (t - warmup) / span))
                       / (1 + math.cos(math.pi * (t - warmup - 1) / span))
                       * (prev - eta_min) + eta_min)
    return lrs


def reference_training(cfg, initial_state, json_file, folder):
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.load_state_dict(initial_state)
    model.train()
    ema = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW(reference_groups(model), lr=LR)
    lrs = chained_warmup_cosine(ITERS, WARMUP, ITERS, LR)
    feats, masks, segs, labels = reference_batch(json_file, folder)
    points = reference_points()
    targets = [reference_targets(points, s, lab) for s, lab in zip(segs, labels)]
    gt_cls = torch.stack([t[0] for t in targets])
    gt_reg = torch.stack([t[1] for t in targets])
    normaliser, records = INIT_LOSS_NORM, []
    for it in range(ITERS):
        for group in optimizer.param_groups:
            group['lr'] = lrs[it]
        optimizer.zero_grad(set_to_none=True)
        enc, enc_masks = model.backbone(feats, masks)
        fpn, fpn_masks = model.neck(enc, enc_masks)
        logits = torch.cat([x.permute(0, 2, 1) for x in model.cls_head(fpn, fpn_masks)], 1)
        offsets = torch.cat([x.permute(0, 2, 1) for x in model.reg_head(fpn, fpn_masks)], 1)
        valid = torch.cat([m[:, 0] for m in fpn_masks], 1)
        positive = (gt_cls.sum(-1) > 0) & valid
        num_pos = int(positive.sum())
        normaliser = 0.9 * normaliser + 0.1 * max(num_pos, 1)
        target = gt_cls[valid] * (1 - SMOOTHING) + SMOOTHING / (NUM_CLASSES + 1)
        cls_loss = focal(logits[valid], target) / normaliser
        reg_loss = diou(offsets[positive], gt_reg[positive]) / normaliser
        loss = cls_loss + reg_loss
        loss.backward()
        if it == 0:
            grads = {n: float(p.grad.abs().max()) for n, p in model.named_parameters()}
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        optimizer.step()
        with torch.no_grad():
            for k, v in model.state_dict().items():
                ema[k] = EMA_DECAY * ema[k] + (1 - EMA_DECAY) * v
        records.append({'lr': lrs[it], 'cls_loss': float(cls_loss.detach()),
                        'reg_loss': float(reg_loss.detach()), 'final_loss': float(loss.detach()),
                        'num_pos': num_pos})
    return model.state_dict(), ema, records, normaliser, grads


# ------------------------------------------------------------------ the test

def test_training_matches_the_release_step_for_step(dataset, tmp_path):
    torch.set_num_threads(1)
    json_file, folder = dataset
    torch.manual_seed(123)
    cfg = _config(json_file, folder, None)
    initial = MODELS.build(cfg.model).state_dict()
    # an official-layout initial checkpoint: DataParallel keys, raw = EMA weights
    init_ckpt = str(tmp_path / 'init.pth.tar')
    official = {'module.' + k: v for k, v in initial.items()}
    torch.save({'epoch': 0, 'state_dict': official, 'state_dict_ema': official,
                'optimizer': {}, 'scheduler': {}}, init_ckpt)

    work = str(tmp_path / 'work')
    Trainer(_config(json_file, folder, init_ckpt), work).run()
    ckpt = load_checkpoint(os.path.join(work, f'epoch_{ITERS:03d}.pth.tar'))
    scalars = read_scalars(work)

    ref_state, ref_ema, ref_records, ref_norm, grads = reference_training(
        cfg, initial, json_file, folder)
    assert min(r['num_pos'] for r in ref_records) > 0
    assert [(r['epoch'], r['iter'], r['global_iter']) for r in scalars] == \
        [(i + 1, 0, i) for i in range(ITERS)]
    for ours, ref in zip(scalars, ref_records):
        assert len(ours['lr']) == 2  # decay / no-decay groups
        assert ours['lr'] == pytest.approx([ref['lr']] * 2, rel=1e-9, abs=1e-15)
        for key in ('cls_loss', 'reg_loss', 'final_loss'):
            assert ours[key] == pytest.approx(ref[key], rel=2e-5), (ours['global_iter'], key)
    assert ckpt['meta']['extra_state']['loss_normalizer'] == pytest.approx(ref_norm)

    # The key biases of attention have a gradient that is zero in exact arithmetic (adding
    # q.b to every score of a query leaves its softmax unchanged); AdamW turns their
    # rounding-noise gradients into steps of the size of the learning rate, in the release
    # as here, so they are random walks: only their size is compared.
    null = {n for n, g in grads.items() if g < 1e-7 * max(grads.values())}
    assert null and all(n.endswith(('attn.key.bias', 'attn.key_norm.bias')) for n in null)

    def close(a, b, what):
        assert a.keys() == b.keys()
        bad = {k: float((a[k] - b[k]).abs().max()) for k in a if k not in null
               and not torch.allclose(a[k], b[k], rtol=1e-4, atol=2e-6)}
        assert not bad, (what, bad)
        for k in null:
            assert float(a[k].abs().max()) <= ITERS * LR and float(b[k].abs().max()) <= ITERS * LR
    close(ckpt['state_dict'], ref_state, 'weights')
    close(ckpt['state_dict_ema'], ref_ema, 'EMA')
    # not vacuous: training moved the weights well beyond the tolerance
    moved = max(float((ckpt['state_dict'][k] - initial[k]).abs().max()) for k in initial)
    assert moved > 1e-2
