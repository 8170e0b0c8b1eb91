# AdamW + linear warm-up + cosine, stepped per iteration (reference defaults). The schedule
# spans train_cfg.epochs (warm-up included): the only place the number of epochs is set.
optimizer = dict(type='AdamW', lr=1e-3, weight_decay=0.0, momentum=0.9)
scheduler = dict(
    type='cosine',      # 'cosine' | 'multistep'
    warmup=True,
    warmup_epochs=5,    # part of train_cfg.epochs
    steps=[],           # multistep milestones, in epochs after warm-up
    gamma=0.1)
