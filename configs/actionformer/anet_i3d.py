# ActivityNet-1.3, I3D features at 25 fps (reference configs/anet_i3d.yaml):
# data/anet_1.3/i3d_features/v_<video>.npy (T x 2048).
_base_ = ['../_base_/actionformer_anet.py']
i3d_json = 'data/anet_1.3/annotations/anet1.3_i3d_filtered.json'
i3d_data = dict(json_file=i3d_json, feat_folder='data/anet_1.3/i3d_features', default_fps=25,
                input_dim=2048)
train_dataset = i3d_data
val_dataset = i3d_data
eval = dict(gt_json=i3d_json)
model = dict(input_dim=2048)
