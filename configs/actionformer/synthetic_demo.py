# A small ActionFormer on the synthetic features (tools/data/make_synthetic_features.py):
# trains on a CPU in a few minutes; tools/demo_features.sh runs it end to end.
_base_ = ['../_base_/models/actionformer.py', '../_base_/schedules/adamw_warmup_cosine.py',
          '../_base_/default_runtime.py']
_data_root = 'data/synthetic_features'
_synthetic = dict(
    type='Thumos14FeatureDataset',
    json_file=_data_root + '/annotations.json',
    feat_folder=_data_root + '/features',
    file_ext='.npy',
    feat_stride=4,
    num_frames=16,
    trunc_thresh=0.5,
    crop_ratio=[0.9, 1.0],
    max_seq_len=256,
    input_dim=32,
    num_classes=4)
train_dataset = dict(_synthetic, split=['training'], is_training=True)
val_dataset = dict(_synthetic, split=['validation'], is_training=False)
eval = dict(gt_json=_data_root + '/annotations.json', subset='validation',
            tiou_thresholds=[0.3, 0.4, 0.5, 0.6, 0.7])
model = dict(
    backbone_arch=(2, 2, 4), n_head=4, n_mha_win_size=9,
    embd_dim=64, fpn_dim=64, head_dim=64,
    regression_range=[(0, 4), (4, 8), (8, 16), (16, 32), (32, 10000)],
    train_cfg=dict(init_loss_norm=50, clip_grad_l2norm=1.0, droppath=0.1),
    test_cfg=dict(voting_thresh=0.7, pre_nms_topk=2000, max_seg_num=100, min_score=0.001))
optimizer = dict(lr=1e-3, weight_decay=0.05)
scheduler = dict(warmup_epochs=2)  # included in train_cfg.epochs
train_dataloader = dict(batch_size=4, num_workers=0)
val_dataloader = dict(batch_size=4, num_workers=0)
# ~170 iterations: a faster EMA than the reference's 0.999 (which averages ~1000 steps)
train_cfg = dict(epochs=14, ckpt_interval=7, clip_grad_l2norm=1.0, log_interval=0,
                 ema=dict(decay=0.99))
device = 'cpu'
cpu_threads = 1
