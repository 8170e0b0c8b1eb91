# ActionFormer on Ego4D moment queries (reference configs/ego4d_*.yaml): 8 pyramid levels.
_base_ = ['models/actionformer.py', 'datasets/ego4d_mq.py',
          'schedules/adamw_warmup_cosine.py', 'default_runtime.py']
model = dict(
    regression_range=[(0, 4), (2, 8), (4, 16), (8, 32), (16, 64), (32, 128), (64, 256),
                      (128, 10000)],
    fpn_type='identity', backbone_arch=(2, 2, 7), max_buffer_len_factor=4.0,
    n_mha_win_size=9, use_abs_pe=True,
    train_cfg=dict(init_loss_norm=100, clip_grad_l2norm=1.0, cls_prior_prob=0.01,
                   center_sample='radius', center_sample_radius=1.5, dropout=0.1,
                   droppath=0.1),
    test_cfg=dict(pre_nms_topk=5000, max_seg_num=2000, min_score=0.001, nms_sigma=0.9,
                  multiclass_nms=True, voting_thresh=0.95))
optimizer = dict(lr=1e-4, weight_decay=0.05)
scheduler = dict(warmup_epochs=5)  # included in train_cfg.epochs
train_dataloader = dict(batch_size=2)
train_cfg = dict(epochs=15, clip_grad_l2norm=1.0)
