# EPIC-Kitchens-100 verbs, SlowFast features (reference configs/epic_slowfast_verb.yaml).
_base_ = ['../_base_/actionformer_epic.py']
