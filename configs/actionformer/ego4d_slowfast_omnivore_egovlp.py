# Ego4D-MQ, SlowFast + Omnivore + EgoVLP (reference configs/ego4d_slowfast_omnivore_egovlp.yaml;
# published avg mAP 21.98): one 1x1 projection per feature type, then concatenated.
_base_ = ['../_base_/actionformer_ego4d.py']
_features = dict(feat_folder=['data/ego4d/slowfast_features', 'data/ego4d/omnivore_features',
                              'data/ego4d/egovlp_features'],
                 input_dim=[2304, 1536, 256], num_frames=32)
train_dataset = _features
val_dataset = _features
model = dict(n_head=16, embd_dim=[256, 384, 384], fpn_dim=1024, head_dim=1024)
