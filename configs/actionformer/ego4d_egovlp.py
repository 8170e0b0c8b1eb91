# Ego4D-MQ, EgoVLP features (reference configs/ego4d_egovlp.yaml): 16-frame clips.
_base_ = ['../_base_/actionformer_ego4d.py']
_features = dict(feat_folder='data/ego4d/egovlp_features', input_dim=256, num_frames=16)
train_dataset = _features
val_dataset = _features
model = dict(embd_dim=384, fpn_dim=384, head_dim=384)
