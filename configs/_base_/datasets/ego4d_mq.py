# Ego4D moment queries: data/ego4d/{slowfast,omnivore,egovlp}_features/<clip>.npy,
# annotations data/ego4d/annotations/ego4d.json. Experiment configs choose the feature
# folders (concatenated on channels) and input_dim.
_ego4d_common = dict(
    type='Ego4DFeatureDataset',
    json_file='data/ego4d/annotations/ego4d.json',
    feat_folder='data/ego4d/slowfast_features',
    file_prefix=None,
    file_ext='.npy',
    feat_stride=16,
    num_frames=32,
    default_fps=30,
    downsample_rate=1,
    trunc_thresh=0.3,
    crop_ratio=[0.9, 1.0],
    max_seq_len=1024,
    input_dim=2304,
    num_classes=110,
    force_upsampling=False)
train_dataset = dict(_ego4d_common, split=['training'], is_training=True)
val_dataset = dict(_ego4d_common, split=['validation'], is_training=False)
eval = dict(gt_json='data/ego4d/annotations/ego4d.json', subset='validation',
            tiou_thresholds=[0.1, 0.2, 0.3, 0.4, 0.5])
