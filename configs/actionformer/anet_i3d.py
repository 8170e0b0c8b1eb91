# ActivityNet-1.3, I3D features at 25 fps (reference configs/anet_i3d.yaml):
# data/anet_1.3/i3d_features/v_<video>.npy (T x 2048).
_base_ = ['../_base_/actionformer_anet.py']
_i3d_json = 'data/anet_1.3/annotations/anet1.3_i3d_filtered.json'
_i3d_data = dict(json_file=_i3d_json, feat_folder='data/anet_1.3/i3d_features', default_fps=25,
                 input_dim=2048)
train_dataset = _i3d_data
val_dataset = _i3d_data
eval = dict(gt_json=_i3d_json)
