# Swin-T features of your own video files for the feature-based ActionFormer (README "Use
# your own data", example a from videos):
#   python tools/data/extract_features.py --config configs/own_data/features_extract.py \
#       --export-npy "$OWN_DATA/features"
# It reads the video files themselves, not frame folders, so that tools/infer.py can compute
# the same features for new videos and detect in one go. Every video is resized to 128 x 228
# (16:9; set your videos' shape) before the centre crop.
_base_ = ['./videos_extract.py']
_root = '{{$OWN_DATA:data/own_data}}'
data = dict(root=_root + '/videos', subset=None, resize=(128, 228))
bank = dict(path=_root + '/membank/swin_t_15fps_videos_crop112')
