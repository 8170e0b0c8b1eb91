# ActivityNet-1.3 videos re-encoded to at most 768 frames at 256x256
# (tools/data/anet/transform_videos.py), Video Swin-B with Kinetics-600 (ImageNet-22k)
# weights, centre crop 224: the template bank of configs/tallformer/anet_swin_b_768.py.
_base_ = ['./swin_b_thumos_15fps_256_crop224.py']
data = dict(root='data/anet_1.3/videos_768_256x256',
            ann_file='data/anet_1.3/annotations/anet1.3.json',
            subset='training',
            fps=None)  # each video keeps its own (reduced) frame rate
backbone = dict(pretrained='data/pretrained/swin_base_patch244_window877_kinetics600_22k.pth')
bank = dict(path='data/anet_1.3/membank/swin_b_768_crop224')
