# ActivityNet-1.3 with TSP features: data/anet_1.3/tsp_features/v_<video>.npy (T x 512),
# annotations data/anet_1.3/annotations/anet1.3_tsp_filtered.json. Features are resampled to
# 192 steps; detection is class-agnostic and fused with the CUHK video classifier's scores.
_anet_common = dict(
    type='ActivityNetFeatureDataset',
    json_file='data/anet_1.3/annotations/anet1.3_tsp_filtered.json',
    feat_folder='data/anet_1.3/tsp_features',
    file_prefix='v_',
    file_ext='.npy',
    feat_stride=16,
    num_frames=16,
    default_fps=15,
    downsample_rate=1,
    trunc_thresh=0.5,
    crop_ratio=[0.9, 1.0],
    max_seq_len=192,
    input_dim=512,
    num_classes=1,
    force_upsampling=True)
train_dataset = dict(_anet_common, split=['training'], is_training=True)
val_dataset = dict(_anet_common, split=['validation'], is_training=False)
eval = dict(gt_json='data/anet_1.3/annotations/anet1.3_tsp_filtered.json', subset='validation',
            tiou_thresholds=[0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95])
