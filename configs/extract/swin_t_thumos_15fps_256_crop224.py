# THUMOS14 at 15 fps, frames 256x256, Video Swin-T (Kinetics-400 weights), centre crop 224.
_base_ = ['./swin_b_thumos_15fps_256_crop224.py']
backbone = dict(arch='tiny',
                pretrained='data/pretrained/swin_tiny_patch244_window877_kinetics400_1k.pth')
bank = dict(path='data/thumos/membank/swin_t_15fps_256_crop224')
