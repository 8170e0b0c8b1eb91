# Engine settings shared by every experiment (tools/trainval.py, tools/test.py); every key is
# checked (vedatad/engine/config_schema.py). Experiments set train_cfg.epochs: the total
# number of epochs, warm-up included, which the learning-rate schedule spans.
train_cfg = dict(
    ckpt_interval=5,          # checkpoint every N epochs and after the last one
    clip_grad_l2norm=-1,      # <= 0: no clipping
    ema=dict(decay=0.999),    # model EMA; the EMA weights are the ones tested
    log_interval=10,          # iterations between log lines
    seed=1234567891,
    amp=None,                 # None | 'bf16' | 'fp16' (CUDA only)
    max_nonfinite_steps=10,   # stop after this many consecutive NaN/inf losses
    lr_scale_with_world_size=True,   # lr x number of processes, as the reference does per GPU
    find_unused_parameters=False)
train_dataloader = dict(batch_size=2, num_workers=4, collate_fn='list_collate')
val_dataloader = dict(batch_size=1, num_workers=4, collate_fn='list_collate')
cpu_threads = None  # cap torch CPU threads (None: torch default)
device = None    # None: CUDA when available; 'cpu' forces CPU
work_dir = None  # None: workdir/<config name>
load_from = None  # initial weights (fine-tuning): a vedatad or official ActionFormer checkpoint
load_from_strict = True   # False: load what fits, list (and log) what was skipped
