# Ego4D-MQ, Omnivore features (reference configs/ego4d_omnivore.yaml).
_base_ = ['../_base_/actionformer_ego4d.py']
_features = dict(feat_folder='data/ego4d/omnivore_features', input_dim=1536, num_frames=32)
train_dataset = _features
val_dataset = _features
