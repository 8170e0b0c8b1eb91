# Memory bank of Video Swin-T features for your own videos (README "Use your own data",
# example b): python tools/data/extract_features.py --config configs/own_data/videos_extract.py
_base_ = ['./videos_settings.py']
data = dict(
    root=_base_._frames,
    ann_file=_base_._ann_file,
    subset='training',          # the bank serves training only
    backend='auto',
    video_ext=None,
    fps=_base_._fps,
    resize=None,                # the frames are already 128 pixels on the short side
    crop_size=_base_._crop_size,
    mean=(123.675, 116.28, 103.53),
    std=(58.395, 57.12, 57.375))
backbone = dict(type='VideoSwin', arch='tiny', drop_path_rate=0.0, pretrained=_base_._weights)
bank = dict(path=_base_._bank, dtype='float16')
extract = dict(chunk_size=32, chunks_per_item=8, num_workers=2, device='auto', amp=True,
               max_batch=16)
