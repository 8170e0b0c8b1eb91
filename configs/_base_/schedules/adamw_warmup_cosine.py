# AdamW + linear warm-up + cosine, stepped per iteration (reference defaults).
optimizer = dict(type='AdamW', lr=1e-3, weight_decay=0.0, momentum=0.9)
scheduler = dict(
    type='cosine',      # 'cosine' | 'multistep'
    warmup=True,
    warmup_epochs=5,
    epochs=30,          # after warm-up; train_cfg.epochs = epochs + warmup_epochs
    steps=[],           # multistep milestones, in epochs after warm-up
    gamma=0.1)
