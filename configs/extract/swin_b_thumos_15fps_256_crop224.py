# THUMOS14 at 15 fps, frames 256x256 (tools/data/extract_frames.py), Video Swin-B with
# Kinetics-600 (ImageNet-22k) weights, centre crop 224: the bank of the TALLFormer Swin-B
# THUMOS setting. Weights: the official swin_base_patch244_window877_kinetics600_22k.pth,
# converted with tools/convert_vswin_ckpt.py (the unconverted file also loads).
data = dict(
    root='data/thumos14/frames_15fps_256x256',
    ann_file='data/thumos14/annotations/thumos14.json',
    subset=('validation', 'test'),
    backend='auto',
    video_ext=None,
    fps=15,
    resize=(256, 256),                      # no-op for frames already at 256x256
    crop_size=224,
    mean=(123.675, 116.28, 103.53),
    std=(58.395, 57.12, 57.375))
backbone = dict(type='VideoSwin', arch='base', drop_path_rate=0.0,
                pretrained='data/pretrained/swin_base_patch244_window877_kinetics600_22k.pth')
bank = dict(path='data/thumos14/membank/swin_b_k600_15fps_256_crop224', dtype='float16')
extract = dict(chunk_size=32, chunks_per_item=8, num_workers=4, device='auto', amp=True,
               max_batch=8)
