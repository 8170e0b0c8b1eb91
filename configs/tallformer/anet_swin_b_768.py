# TALLFormer on ActivityNet-1.3: every video re-encoded to at most 768 frames at 256x256
# (tools/data/anet/transform_videos.py), one 768-frame window per video (24 chunks), Swin-B
# with Kinetics-600 weights, class-agnostic ActionFormer head fused with external video-level
# class scores (as the feature-based ActivityNet setting).
_base_ = ['../_base_/models/tallformer.py', '../_base_/schedules/adamw_warmup_cosine.py',
          '../_base_/default_runtime.py']
_data_root = 'data/anet_1.3/'
_ann_file = _data_root + 'annotations/anet1.3.json'
model = dict(
    membank=dict(template=_data_root + 'membank/swin_b_768_crop224'),
    backbone=dict(arch='base', frozen_stages=2, with_cp=True, drop_path_rate=0.2,
                  pretrained='data/pretrained/swin_base_patch244_window877_kinetics600_22k.pth'),
    detector=dict(  # class-agnostic; 192 steps (the feature setting's length) > 96 per window
        num_classes=1, max_seq_len=192, backbone_arch=(2, 2, 5), n_mha_win_size=[7, 7, 7, 7, 7, -1],
        embd_dim=256, fpn_dim=256, head_dim=256, use_abs_pe=True,
        regression_range=[(0, 4), (4, 8), (8, 16), (16, 32), (32, 64), (64, 10000)],
        train_cfg=dict(init_loss_norm=200, label_smoothing=0.1, loss_weight=2.0),
        test_cfg=dict(voting_thresh=0.9, max_seg_num=100, multiclass_nms=False,
                      nms_sigma=0.75, duration_thresh=0.001,
                      ext_score_file=_data_root + 'annotations/cuhk_val_simp_share.json')))
_common = dict(type='VideoDataset', ann_file=_ann_file, chunk_size=32, window_size=768)
train_dataset = dict(_common, data_prefix=_data_root + 'videos_768_256x256', subset='training',
                     mode='train', pipeline_cfg=dict(short_side=256, crop_size=224,
                                                     min_coverage=0.75, keep_ratio=0.15,
                                                     chunk_sampling='random'))
val_dataset = dict(_common, data_prefix=_data_root + 'videos_768_256x256', subset='validation',
                   mode='test', lazy_windows=True,
                   pipeline_cfg=dict(short_side=256, crop_size=224, overlap=0.0))
eval = dict(gt_json=_ann_file, subset='validation',
            tiou_thresholds=[0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95])
train_dataloader = dict(batch_size=4, num_workers=6, collate_fn='collate_video_windows')
val_dataloader = dict(batch_size=1, num_workers=4, collate_fn='collate_video_windows')
optimizer = dict(type='AdamW', lr=1e-4, weight_decay=0.05, lr_mult=dict(backbone=0.1))
scheduler = dict(warmup_epochs=2)  # included in train_cfg.epochs
train_cfg = dict(epochs=15, ckpt_interval=1, clip_grad_l2norm=1.0, amp='bf16',
                 lr_scale_with_world_size=False, log_interval=50)
