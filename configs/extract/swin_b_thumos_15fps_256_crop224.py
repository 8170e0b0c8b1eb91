# THUMOS14 at 15 fps, frames 256x256 (tools/data/extract_frames.py), Video Swin-B with
# Kinetics-400 (ImageNet-22k) weights, centre crop 224: the template bank of
# configs/tallformer/thumos_swin_b_256_crop224.py, which trains on the validation videos.
# Weights: the official swin_base_patch244_window877_kinetics400_22k.pth as released (or
# converted with tools/convert_vswin_ckpt.py; both load).
data = dict(
    root='data/thumos/frames_15fps_256x256/validation',
    ann_file='data/thumos/annotations/thumos14.json',
    subset='validation',                     # the training videos
    backend='auto',
    video_ext=None,
    fps=15,
    resize=(256, 256),                      # no-op for frames already at 256x256
    crop_size=224,
    mean=(123.675, 116.28, 103.53),
    std=(58.395, 57.12, 57.375))
backbone = dict(type='VideoSwin', arch='base', drop_path_rate=0.0,
                pretrained='data/pretrained/swin_base_patch244_window877_kinetics400_22k.pth')
bank = dict(path='data/thumos/membank/swin_b_15fps_256_crop224', dtype='float16')
extract = dict(chunk_size=32, chunks_per_item=8, num_workers=4, device='auto', amp=True,
               max_batch=8)
