# TALLFormer on THUMOS14: Swin-B (Kinetics-400, ImageNet-22k init), frames at 15 fps resized
# to 256x256 and cropped to 224, 480-frame windows, 15% of the chunks recomputed per step,
# stages 1-2 frozen (the original "12GB" setting), ActionFormer head instead of the anchor head.
#   1. tools/data/extract_frames.py data/thumos/videos/validation data/thumos/frames_15fps_256x256/validation --fps 15 --size 256x256  (same for test)
#   2. put the official swin_base_patch244_window877_kinetics400_22k.pth in data/pretrained/
#   3. tools/data/extract_features.py --config configs/extract/swin_b_thumos_15fps_256_crop224.py
#   4. tools/dist_trainval.sh configs/tallformer/thumos_swin_b_256_crop224.py 4
_base_ = ['../_base_/models/tallformer.py', '../_base_/schedules/adamw_warmup_cosine.py',
          '../_base_/default_runtime.py']
_data_root = 'data/thumos/'
_ann_file = _data_root + 'annotations/thumos14.json'
model = dict(
    membank=dict(template='data/thumos/membank/swin_b_15fps_256_crop224'),
    backbone=dict(arch='base', frozen_stages=2, with_cp=True, drop_path_rate=0.2,
                  pretrained='data/pretrained/swin_base_patch244_window877_kinetics400_22k.pth'),
    detector=dict(num_classes=20))  # tcm.max_len and detector.max_seq_len follow the window
_common = dict(type='VideoDataset', ann_file=_ann_file, chunk_size=32, window_size=480,
               backend='auto')
train_dataset = dict(_common, data_prefix=_data_root + 'frames_15fps_256x256/validation',
                     subset='validation', mode='train',
                     pipeline_cfg=dict(short_side=256, crop_size=224, min_coverage=0.75,
                                       keep_ratio=0.15, chunk_sampling='random'))
val_dataset = dict(_common, data_prefix=_data_root + 'frames_15fps_256x256/test', subset='test',
                   mode='test', lazy_windows=True,
                   pipeline_cfg=dict(short_side=256, crop_size=224, overlap=0.25))
eval = dict(gt_json=_ann_file, subset='test', tiou_thresholds=[0.3, 0.4, 0.5, 0.6, 0.7])
train_dataloader = dict(batch_size=4, num_workers=6, collate_fn='collate_video_windows')
val_dataloader = dict(batch_size=1, num_workers=4, collate_fn='collate_video_windows')
optimizer = dict(type='AdamW', lr=1e-4, weight_decay=0.05, lr_mult=dict(backbone=0.1))
scheduler = dict(warmup_epochs=50)  # included in train_cfg.epochs
train_cfg = dict(epochs=1000, ckpt_interval=100, clip_grad_l2norm=1.0, amp='bf16',
                 lr_scale_with_world_size=False, log_interval=10)
