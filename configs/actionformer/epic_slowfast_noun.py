# EPIC-Kitchens-100 nouns, SlowFast features (reference configs/epic_slowfast_noun.yaml).
_base_ = ['../_base_/actionformer_epic.py']
_noun_json = 'data/epic_kitchens/annotations/epic_kitchens_100_noun.json'
_nouns = dict(json_file=_noun_json, num_classes=300)
train_dataset = _nouns
val_dataset = _nouns
eval = dict(gt_json=_noun_json)
model = dict(train_cfg=dict(label_smoothing=0.1))
