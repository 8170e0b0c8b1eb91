# ActivityNet-1.3, TSP features (reference configs/anet_tsp.yaml; published avg mAP 36.6).
_base_ = ['../_base_/actionformer_anet.py']
