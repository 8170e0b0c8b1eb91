# EPIC-Kitchens-100 with SlowFast features: data/epic_kitchens/features/<video>.npz (key
# 'feats', T x 2304); verb or noun annotations in data/epic_kitchens/annotations/.
# Experiment configs set json_file / num_classes for verbs or nouns.
_epic_common = dict(
    type='EpicKitchensFeatureDataset',
    json_file='data/epic_kitchens/annotations/epic_kitchens_100_verb.json',
    feat_folder='data/epic_kitchens/features',
    file_prefix=None,
    file_ext='.npz',
    feat_stride=16,
    num_frames=32,
    default_fps=30,
    downsample_rate=1,
    trunc_thresh=0.3,
    crop_ratio=[0.9, 1.0],
    max_seq_len=2304,
    input_dim=2304,
    num_classes=97,
    force_upsampling=False)
train_dataset = dict(_epic_common, split=['training'], is_training=True)
val_dataset = dict(_epic_common, split=['validation'], is_training=False)
eval = dict(gt_json='data/epic_kitchens/annotations/epic_kitchens_100_verb.json',
            subset='validation', tiou_thresholds=[0.1, 0.2, 0.3, 0.4, 0.5])
