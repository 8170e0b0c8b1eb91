# ActionFormer on EPIC-Kitchens-100 SlowFast features (reference configs/epic_slowfast_*.yaml).
_base_ = ['models/actionformer.py', 'datasets/epic_kitchens_slowfast.py',
          'schedules/adamw_warmup_cosine.py', 'default_runtime.py']
model = dict(
    regression_range=[(0, 4), (2, 8), (4, 16), (8, 32), (16, 64), (32, 10000)],
    fpn_type='identity', max_buffer_len_factor=4.0, n_mha_win_size=9,
    train_cfg=dict(init_loss_norm=250, clip_grad_l2norm=1.0, cls_prior_prob=0.01,
                   center_sample='radius', center_sample_radius=1.5),
    test_cfg=dict(pre_nms_topk=5000, max_seg_num=2000, min_score=0.001, nms_sigma=0.4,
                  multiclass_nms=True))
optimizer = dict(lr=1e-4, weight_decay=0.05)
scheduler = dict(warmup_epochs=5)  # included in train_cfg.epochs
train_dataloader = dict(batch_size=2)
train_cfg = dict(epochs=21, clip_grad_l2norm=1.0)
