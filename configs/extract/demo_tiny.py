# Synthetic demo videos (tools/data/make_synthetic_videos.py --size 64, 15 fps) -> bank of
# the tiny CPU backbone, centre crop 56. Used by the end-to-end demo (tools/demo.sh) together
# with configs/tallformer/demo_tiny.py, which must use the same backbone and crop.
data = dict(
    root='data/synthetic/videos',           # video files or frame folders named by video id
    ann_file='data/synthetic/annotations.json',
    subset=None,                            # None = every video; or 'training', ('a', 'b')
    backend='auto',
    video_ext=None,                         # None: <root>/<id>/ folder or <root>/<id>.*
    fps=15,                                 # frames are sampled at this rate
    resize=None,                            # (h, w) before cropping; None keeps the size
    crop_size=56,
    mean=(123.675, 116.28, 103.53),
    std=(58.395, 57.12, 57.375))
backbone = dict(type='VideoSwin', arch='demo', pretrained=None, drop_path_rate=0.0)
bank = dict(path='data/synthetic/membank_demo_tiny', dtype='float16')
extract = dict(chunk_size=32, chunks_per_item=4, num_workers=1, device='auto', amp=False,
               max_batch=None,
               # the random weights (pretrained=None) come from this seed: train_cfg.seed, so
               # the bank holds the features of the backbone training starts from
               init_seed=1234567891)
cpu_threads = 1
