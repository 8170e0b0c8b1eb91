# ActionFormer on ActivityNet-1.3 (reference configs/anet_tsp.yaml, anet_i3d.yaml): features
# resampled to 192 steps, class-agnostic detection fused with external video-level scores.
_base_ = ['models/actionformer.py', 'datasets/anet_tsp.py',
          'schedules/adamw_warmup_cosine.py', 'default_runtime.py']
model = dict(
    fpn_type='identity', max_buffer_len_factor=1.0,
    n_mha_win_size=[7, 7, 7, 7, 7, -1],  # 192 - 96 - 48 - 24 - 12 - 6
    n_head=4, embd_dim=256, fpn_dim=256, head_dim=256, use_abs_pe=True,
    train_cfg=dict(init_loss_norm=200, clip_grad_l2norm=1.0, cls_prior_prob=0.01,
                   center_sample='radius', center_sample_radius=1.5, label_smoothing=0.1,
                   droppath=0.1, loss_weight=2.0),
    test_cfg=dict(voting_thresh=0.9, pre_nms_topk=2000, max_seg_num=100, min_score=0.001,
                  multiclass_nms=False, nms_sigma=0.75, duration_thresh=0.001,
                  ext_score_file='data/anet_1.3/annotations/cuhk_val_simp_share.json'))
optimizer = dict(lr=1e-3, weight_decay=0.05)
scheduler = dict(warmup_epochs=5)  # included in train_cfg.epochs
train_dataloader = dict(batch_size=16)
train_cfg = dict(epochs=15, clip_grad_l2norm=1.0)
