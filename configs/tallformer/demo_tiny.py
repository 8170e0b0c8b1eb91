# End-to-end TALLFormer on the synthetic demo videos (96 x 10 s, 64x64), sized for a 2-core CPU
# (tools/demo.sh):
# the tiny Video Swin trains from scratch on 56x56 crops, 160-frame windows (5 chunks of 32),
# one chunk per window recomputed with gradients, the rest read from the memory bank filled
# by tools/data/extract_features.py --config configs/extract/demo_tiny.py.
_base_ = ['../_base_/models/tallformer.py', '../_base_/schedules/adamw_warmup_cosine.py',
          '../_base_/default_runtime.py']
_data_root = 'data/synthetic/'
_ann_file = _data_root + 'annotations.json'
model = dict(
    membank=dict(template=_data_root + 'membank_demo_tiny'),
    backbone=dict(arch='demo', frozen_stages=-1, with_cp=False, drop_path_rate=0.0,
                  pretrained=None),
    tcm=dict(out_channels=64, num_reductions=2, depth=1, num_heads=4, drop_path=0.0),
    detector=dict(
        num_classes=3, backbone_arch=(2, 1, 2),
        regression_range=[(0, 4), (4, 8), (8, 10000)],
        n_head=4, embd_dim=64, fpn_dim=64, head_dim=64, head_num_layers=2,
        train_cfg=dict(init_loss_norm=20, droppath=0.0),
        test_cfg=dict(voting_thresh=0.7, max_seg_num=50, min_score=0.001)))
_common = dict(type='VideoDataset', ann_file=_ann_file, data_prefix=_data_root + 'videos',
               chunk_size=32, window_size=160, fps=None)
_pipeline_common = dict(short_side=64, crop_size=56)
# one of the five chunks of each window is decoded and recomputed (keep_ratio 0.2), the
# other four are read from the memory bank in the loader worker
train_dataset = dict(_common, subset='training', mode='train',
                     pipeline_cfg=dict(_pipeline_common, min_coverage=0.75, photometric=False,
                                       keep_ratio=0.2, chunk_sampling='random'))
val_dataset = dict(_common, subset='validation', mode='test',
                   pipeline_cfg=dict(_pipeline_common, overlap=0.25))
eval = dict(gt_json=_ann_file, subset='validation', tiou_thresholds=[0.3, 0.4, 0.5, 0.6, 0.7])
train_dataloader = dict(batch_size=4, num_workers=1, collate_fn='collate_video_windows')
val_dataloader = dict(batch_size=1, num_workers=0, collate_fn='collate_video_windows')
# the backbone learns slowly: most of each window comes from the bank, which must stay close
# to what the current backbone computes
optimizer = dict(type='AdamW', lr=1e-3, weight_decay=0.05, lr_mult=dict(backbone=0.03))
scheduler = dict(warmup_epochs=3)  # included in train_cfg.epochs
train_cfg = dict(epochs=36, ckpt_interval=12, clip_grad_l2norm=1.0, ema=dict(decay=0.99),
                 lr_scale_with_world_size=False, log_interval=10)
device = 'cpu'
cpu_threads = 1
work_dir = 'workdir/demo'
