# End-to-end TALLFormer on your own videos (README "Use your own data", example b): Swin-T
# on 15 fps frames, 128 pixels short side cropped to 112, 480-frame windows, the memory bank
# of videos_extract.py. Paths and shared settings: videos_settings.py (OWN_DATA). Number of
# classes, detector length and TCM length are taken from the data and the window.
_base_ = ['../_base_/models/tallformer.py', '../_base_/schedules/adamw_warmup_cosine.py',
          '../_base_/default_runtime.py', './videos_settings.py']
model = dict(
    membank=dict(template=_base_._bank),
    backbone=dict(arch='tiny', frozen_stages=1, with_cp=True, drop_path_rate=0.1,
                  pretrained=_base_._weights))
_common = dict(type='GenericVideoDataset', ann_file=_base_._ann_file, data_prefix=_base_._frames,
               chunk_size=32, window_size=480)
train_dataset = dict(_common, subset='training', mode='train',
                     pipeline_cfg=dict(short_side=128, crop_size=_base_._crop_size,
                                       min_coverage=0.75, keep_ratio=0.15,
                                       chunk_sampling='random'))
val_dataset = dict(_common, subset='validation', mode='test',
                   pipeline_cfg=dict(short_side=128, crop_size=_base_._crop_size,
                                     overlap=0.25))
eval = dict(gt_json=_base_._ann_file, subset='validation',
            tiou_thresholds=[0.3, 0.4, 0.5, 0.6, 0.7])
train_dataloader = dict(batch_size=4, num_workers=4, collate_fn='collate_video_windows')
val_dataloader = dict(batch_size=1, num_workers=2, collate_fn='collate_video_windows')
optimizer = dict(type='AdamW', lr=1e-4, weight_decay=0.05, lr_mult=dict(backbone=0.1))
scheduler = dict(warmup_epochs=5, epochs=95)
train_cfg = dict(epochs=100, ckpt_interval=10, clip_grad_l2norm=1.0, amp='bf16',
                 lr_scale_with_world_size=False, log_interval=10)
work_dir = 'workdir/own_videos'
