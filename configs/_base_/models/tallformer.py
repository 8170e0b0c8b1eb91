# TALLFormer: Video Swin on 32-frame chunks + long-term memory bank + Temporal Consistency
# Module + the ActionFormer detector. Experiment configs set the backbone, window and data.
# tcm.max_len, detector.max_seq_len and detector.num_classes follow from the dataset (its
# window_size and labels; vedatad/engine/config_resolve.py) unless set. Which chunks of a
# training window are recomputed is a data-pipeline setting (train_dataset.pipeline_cfg:
# keep_ratio, chunk_sampling): only those chunks are decoded.
model = dict(
    type='TALLFormer',
    chunk_size=32,
    frames_per_row=2,             # Video Swin's temporal patch: one feature row per 2 frames
    membank=dict(
        template=None,            # bank filled by tools/data/extract_features.py
        path=None,                # working copy; None = <work_dir>/membank (shared
                                  # filesystem for multi-node runs)
        frozen=False),            # True: read the bank, never write it
    backbone=dict(type='VideoSwin', arch='base', frozen_stages=2, with_cp=True,
                  drop_path_rate=0.2, pretrained=None),
    tcm=dict(type='TemporalConsistencyModule', out_channels=512, num_reductions=2, depth=3,
             num_heads=16, drop_path=0.1),
    detector=dict(
        type='ActionFormer',
        backbone_type='convTransformer', fpn_type='identity',
        backbone_arch=(2, 2, 4), scale_factor=2,
        # one detector step = 8 frames (2 per Swin row x TCM stride 4)
        regression_range=[(0, 4), (4, 8), (8, 16), (16, 32), (32, 10000)],
        n_head=4, n_mha_win_size=-1,  # windows of a few dozen steps: global attention
        embd_kernel_size=3, embd_dim=512, embd_with_ln=True,
        fpn_dim=512, fpn_with_ln=True, fpn_start_level=0,
        head_dim=512, head_kernel_size=3, head_num_layers=3, head_with_ln=True,
        max_buffer_len_factor=1.0, use_abs_pe=False, use_rel_pe=False,
        train_cfg=dict(center_sample='radius', center_sample_radius=1.5, loss_weight=1.0,
                       cls_prior_prob=0.01, init_loss_norm=100, clip_grad_l2norm=1.0,
                       head_empty_cls=[], dropout=0.0, droppath=0.1, label_smoothing=0.0),
        test_cfg=dict(pre_nms_thresh=0.001, pre_nms_topk=2000, iou_threshold=0.1,
                      min_score=0.001, max_seg_num=200, nms_method='soft', nms_sigma=0.5,
                      duration_thresh=0.05, multiclass_nms=True, ext_score_file=None,
                      voting_thresh=0.7)))
