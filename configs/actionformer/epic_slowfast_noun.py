# EPIC-Kitchens-100 nouns, SlowFast features (reference configs/epic_slowfast_noun.yaml).
_base_ = ['../_base_/actionformer_epic.py']
noun_json = 'data/epic_kitchens/annotations/epic_kitchens_100_noun.json'
train_dataset = dict(json_file=noun_json, num_classes=300)
val_dataset = dict(json_file=noun_json, num_classes=300)
eval = dict(gt_json=noun_json)
model = dict(num_classes=300, train_cfg=dict(label_smoothing=0.1))
