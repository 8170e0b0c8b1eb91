# Ego4D-MQ, SlowFast features (reference configs/ego4d_slowfast.yaml): 7 pyramid levels.
_base_ = ['../_base_/actionformer_ego4d.py']
_features = dict(feat_folder='data/ego4d/slowfast_features', input_dim=2304, num_frames=32)
train_dataset = _features
val_dataset = _features
model = dict(
    backbone_arch=(2, 2, 6),
    regression_range=[(0, 4), (2, 8), (4, 16), (8, 32), (16, 64), (32, 128), (64, 10000)])
