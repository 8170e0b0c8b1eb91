# THUMOS14 at 15 fps, frames 128x128, Video Swin-T (Kinetics-400 weights), centre crop 112:
# the light setting that fits small GPUs (template bank of
# configs/tallformer/thumos_swin_t_128_crop112.py).
_base_ = ['./swin_b_thumos_15fps_256_crop224.py']
data = dict(root='data/thumos/frames_15fps_128x128/validation', resize=(128, 128),
            crop_size=112)
backbone = dict(arch='tiny',
                pretrained='data/pretrained/swin_tiny_patch244_window877_kinetics400_1k.pth')
bank = dict(path='data/thumos/membank/swin_t_15fps_128_crop112')
extract = dict(max_batch=16)
