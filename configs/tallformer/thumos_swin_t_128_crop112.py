# TALLFormer on THUMOS14 with Swin-T on 128x128 frames cropped to 112: a small setting that
# fits a single mid-range GPU. Bank from configs/extract/swin_t_thumos_15fps_128_crop112.py.
_base_ = ['./thumos_swin_b_256_crop224.py']
_data_root = 'data/thumos/'
model = dict(
    membank=dict(template='data/thumos/membank/swin_t_15fps_128_crop112'),
    backbone=dict(arch='tiny', frozen_stages=1, drop_path_rate=0.1,
                  pretrained='data/pretrained/swin_tiny_patch244_window877_kinetics400_1k.pth'))
train_dataset = dict(data_prefix=_data_root + 'frames_15fps_128x128/validation',
                     pipeline_cfg=dict(short_side=128, crop_size=112))
val_dataset = dict(data_prefix=_data_root + 'frames_15fps_128x128/test',
                   pipeline_cfg=dict(short_side=128, crop_size=112))
