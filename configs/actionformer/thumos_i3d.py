# THUMOS14, I3D features (reference configs/thumos_i3d.yaml; published avg mAP 66.8 @0.3:0.7).
_base_ = ['../_base_/actionformer_thumos14.py']
