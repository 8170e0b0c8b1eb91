# ActionFormer on THUMOS14 I3D features (reference configs/thumos_i3d.yaml).
_base_ = ['models/actionformer.py', 'datasets/thumos14_i3d.py',
          'schedules/adamw_warmup_cosine.py', 'default_runtime.py']
model = dict(
    fpn_type='identity', max_buffer_len_factor=6.0, n_mha_win_size=19,
    train_cfg=dict(init_loss_norm=100, clip_grad_l2norm=1.0, cls_prior_prob=0.01,
                   center_sample='radius', center_sample_radius=1.5),
    test_cfg=dict(voting_thresh=0.7, pre_nms_topk=2000, max_seg_num=200, min_score=0.001,
                  multiclass_nms=True))
optimizer = dict(lr=1e-4, weight_decay=0.05)
scheduler = dict(warmup_epochs=5)  # included in train_cfg.epochs
train_dataloader = dict(batch_size=2)
train_cfg = dict(epochs=35, clip_grad_l2norm=1.0)
