# Ego4D-MQ, Omnivore + EgoVLP features concatenated (reference configs/ego4d_omnivore_egovlp.yaml).
_base_ = ['../_base_/actionformer_ego4d.py']
_features = dict(feat_folder=['data/ego4d/omnivore_features', 'data/ego4d/egovlp_features'],
                 input_dim=1792, num_frames=32)
train_dataset = _features
val_dataset = _features
model = dict(n_head=12, embd_dim=768, fpn_dim=768, head_dim=768)
