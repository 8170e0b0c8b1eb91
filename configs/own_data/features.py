# ActionFormer on your own pre-extracted features (README "Use your own data", example a).
# The only thing to change is where the data is: set OWN_DATA (or edit the default below).
#   $OWN_DATA/annotations.json   ActivityNet-style JSON, splits 'training' and 'validation'
#   $OWN_DATA/features/<video_id>.npy   (T, C) per video (or .npz: set file_ext / npz_key)
# Number of classes, feature size and max_seq_len are taken from the data by the model.
# Features exported by tools/data/extract_features.py --export-npy carry features_info.json
# (stride, clip length, fps, size); for other features set feat_stride (frames between two
# steps) and num_frames (frames per step) below.
_base_ = ['../_base_/models/actionformer.py', '../_base_/schedules/adamw_warmup_cosine.py',
          '../_base_/default_runtime.py']
_root = '{{$OWN_DATA:data/own_data}}'
_ann_file = _root + '/annotations.json'
_data = dict(
    type='GenericFeatureDataset',
    json_file=_ann_file,
    feat_folder=_root + '/features',
    feat_stride=None,       # None: from features_info.json in the feature folder
    num_frames=None,        # None: from features_info.json
    default_fps=None,       # for videos without "fps" in the annotation
    max_seq_len=2304,       # training crop (steps); a multiple of 576 for this model
    trunc_thresh=0.5,
    crop_ratio=[0.9, 1.0])
train_dataset = dict(_data, split='training', is_training=True)
val_dataset = dict(_data, split='validation', is_training=False)
eval = dict(gt_json=_ann_file, subset='validation', tiou_thresholds=[0.3, 0.4, 0.5, 0.6, 0.7])
# the THUMOS14 architecture: local windows of 19 steps, 6 pyramid levels
model = dict(
    fpn_type='identity', max_buffer_len_factor=6.0, n_mha_win_size=19,
    train_cfg=dict(init_loss_norm=100, clip_grad_l2norm=1.0, cls_prior_prob=0.01,
                   center_sample='radius', center_sample_radius=1.5),
    test_cfg=dict(voting_thresh=0.7, pre_nms_topk=2000, max_seg_num=200, min_score=0.001,
                  multiclass_nms=True))
optimizer = dict(lr=1e-4, weight_decay=0.05)
scheduler = dict(warmup_epochs=5, epochs=30)
train_dataloader = dict(batch_size=2)
train_cfg = dict(epochs=35, clip_grad_l2norm=1.0)
work_dir = 'workdir/own_features'
