# THUMOS14 with I3D features: data/thumos/i3d_features/<video>.npy (T x 2048),
# data/thumos/annotations/thumos14.json. Trained on the validation videos, tested on test.
_thumos_common = dict(
    type='Thumos14FeatureDataset',
    json_file='data/thumos/annotations/thumos14.json',
    feat_folder='data/thumos/i3d_features',
    file_prefix=None,
    file_ext='.npy',
    feat_stride=4,
    num_frames=16,
    default_fps=None,
    downsample_rate=1,
    trunc_thresh=0.5,
    crop_ratio=[0.9, 1.0],
    max_seq_len=2304,
    input_dim=2048,
    num_classes=20,
    force_upsampling=False)
train_dataset = dict(_thumos_common, split=['validation'], is_training=True)
val_dataset = dict(_thumos_common, split=['test'], is_training=False)
eval = dict(gt_json='data/thumos/annotations/thumos14.json', subset='test',
            tiou_thresholds=[0.3, 0.4, 0.5, 0.6, 0.7])
